"""A quiet start: no TensorFlow C++ start-up lines unless asked for (--verbose, DCGAN_TF_VERBOSE=1),
--version, and the Quick start's first command fetching the images itself. Runs main.py as a user
would, in fresh processes (the start-up lines are only written once per process)."""

import functools
import http.server
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading

import pytest

from dcgan_tf import cli, quiet
from tests.conftest import MAIN, REPO, TINY_FLAGS, write_images

# What TensorFlow's C++ logging looks like ("I0000 00:00:1795857920.477871   30419 cudart_stub.cc:31] ...").
CPP_LINE = re.compile(r"^[EWIF]\d{4} ")
SHARED = os.environ.get("DCGAN_TF_SIMPSONS") or os.path.join(os.path.dirname(REPO), "shared", "data", "simpsons_64")


def _user_env(**extra):
    """The environment of a user who set nothing: no TensorFlow log level, no verbose switch."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", quiet.VERBOSE_ENV, "PYTHONPATH")}
    env.update(extra)
    return env


def _main(args, cwd, timeout=600, **env):
    return subprocess.run([sys.executable, MAIN, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=_user_env(**env))


def _cpp_lines(text):
    return [line for line in text.splitlines()
            if CPP_LINE.match(line) or "cuInit" in line or "oneDNN" in line or "absl::InitializeLog" in line]


def test_version():
    from dcgan_tf import __version__

    proc = _main(["--version"], cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"dcgan-tf {__version__}\n" and proc.stderr == ""
    assert cli.package_version() == __version__


def test_tiny_training_prints_no_cpp_lines(tmp_path):
    write_images(tmp_path / "data" / "faces", 4)
    proc = _main(["--train", "--dataset", "faces", "--epoch", "1", "--seed", "1", "--precision", "float32",
                  *TINY_FLAGS], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "dcgan_tf: trained 1 steps" in proc.stdout, proc.stdout[-2000:]
    assert _cpp_lines(proc.stdout + proc.stderr) == [], proc.stderr[-3000:]



def test_the_benchmarks_print_no_cpp_lines_either():
    # throughput.py imports TensorFlow at its top, so even --help loads it.
    proc = subprocess.run([sys.executable, os.path.join(REPO, "bench", "throughput.py"), "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env=_user_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "usage: throughput.py" in proc.stdout
    assert _cpp_lines(proc.stdout + proc.stderr) == [], proc.stderr[-3000:]

# The filter itself, on lines TensorFlow 2.21 writes on a machine without a GPU (no TensorFlow needed).
START_UP = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1795857920.477871   30419 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
I0000 00:00:1795857920.560914   30419 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions in performance-critical operations.
To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.
E0000 00:00:1795857925.779011   30419 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)
2025-09-17 14:44:05.157831: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] Could not find cuda drivers
"""
KEPT = """\
E0000 00:00:1795857925.779011   30419 file_system.cc:52] could not open /data/x: Permission denied
/work/main/dcgan_tf/cli.py:1: UserWarning: something the user should see
Traceback (most recent call last):
"""


def test_start_up_lines_are_dropped_and_everything_else_is_kept(capfd):
    def write():
        os.write(2, (START_UP + KEPT).encode())
        return 7

    assert quiet.without_start_up_lines(write) == 7
    out, err = capfd.readouterr()
    # The old-format line (an older TensorFlow) is no absl line: it is kept like any other text.
    assert err == START_UP.splitlines(keepends=True)[-1] + KEPT
    os.write(2, b"after\n")  # stderr is back where it was
    assert capfd.readouterr().err == "after\n"


def test_stderr_is_restored_when_the_import_fails(capfd):
    def fail():
        os.write(2, START_UP.encode() + b"real problem\n")
        raise ImportError("no")

    with pytest.raises(ImportError):
        quiet.without_start_up_lines(fail)
    assert capfd.readouterr().err.endswith("real problem\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_verbose_switches(monkeypatch):
    monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
    assert not cli._verbose()
    for value, verbose in (("1", True), ("yes", True), ("0", False), ("", False)):
        monkeypatch.setenv(quiet.VERBOSE_ENV, value)
        assert cli._verbose() is verbose, value


# --------------------------------------------------------------------------------------------------
# The Quick start's first command on a machine without the images: it fetches them (from a local
# server standing in for the original repository), trains, and prints no C++ lines; run again
# offline, the download step finds every file there with the right sum and fetches nothing.
# --------------------------------------------------------------------------------------------------
def _quick_start_command():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    found = re.findall(r"python main\.py [^\n&]*", quick)
    assert found, "no `python main.py` command in the Quick start"
    return shlex.split(found[0])[2:]


def test_quick_start_command_downloads_the_images(tmp_path):
    from dcgan_tf.data import download

    args = _quick_start_command()
    assert "--download" in args and "--train" in args
    if not all(os.path.isfile(os.path.join(SHARED, name)) for name in download.SIMPSONS_SHA256):
        pytest.skip("the shared copies of the Simpsons images are not here")
    served = tmp_path / "served"
    shutil.copytree(SHARED, served / "Simpsons_64", ignore=shutil.ignore_patterns("*.md"))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/Simpsons_64"
    work = tmp_path / "work"
    work.mkdir()
    try:
        proc = _main([*args, "--epoch", "1", "--seed", "1", "--precision", "float32", "--batch_size", "25",
                      "--output_height", "32", "--gf_dim", "4", "--df_dim", "4", "--z_dim", "8"],
                     cwd=work, **{download.URL_ENV: url})
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "100 image(s) downloaded and all 100 checked" in proc.stdout
    assert "trained 4 steps" in proc.stdout, proc.stdout[-2000:]
    assert _cpp_lines(proc.stdout + proc.stderr) == [], proc.stderr[-3000:]
    # Offline now (nothing listens there): the images are there with the right sums, nothing is fetched.
    proc = _main(["--download"], cwd=work, timeout=120, **{download.URL_ENV: url})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "0 image(s) downloaded and all 100 checked" in proc.stdout
