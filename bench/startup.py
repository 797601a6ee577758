"""Start-up benchmark: seconds from the command to the first finished training step, and `--help`.

    python bench/startup.py                          # this checkout, 3 launches
    python bench/startup.py --baseline ../old        # and another checkout, launches alternating

Each launch is a fresh `python main.py --train --crop --dataset <copy>` on a folder of exactly one
batch of the data (so every epoch is one step and prints one line), `--epoch 3`, new run folders
under a temporary directory. The time of each "Epoch N" line is taken as it arrives on the pipe:
start-up = command to the first line (imports, data, building, tracing, the first step), step = the
time between later lines, exit = from the last line of output to the process's end. `--baseline
PATH` runs the same command in another checkout (e.g. a `git worktree` of an older commit) turn
about with this one, so a busy machine slows both alike; the ratio of the medians is the figure.
`--baseline_pythonpath DIR` puts DIR first on the baseline's import path, e.g. to launch it with the
dependency versions it had (`pip install --target DIR ml_dtypes==0.7.0`). `--help` is timed the same
way (median of the launches).
Not a test: run it by hand, on a quiet machine for absolute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # frames, beside this file
import frames  # noqa: E402
from dcgan_tf.training.precision import cpu_info  # noqa: E402  (no TensorFlow: the launches import it)


def one_batch_folder(source: str, batch: int, work: str) -> str:
    """A dataset folder under `work` holding the first `batch` images of `source` (one step per epoch)."""
    names = sorted(n for n in os.listdir(source) if n.lower().endswith((".png", ".jpg", ".jpeg")))[:batch]
    if len(names) < batch:
        raise SystemExit(f"{source} has {len(names)} images; the start-up run needs {batch}")
    folder = os.path.join(work, "data", "startup")
    os.makedirs(folder, exist_ok=True)
    for name in names:
        shutil.copy(os.path.join(source, name), folder)
    return os.path.join(work, "data")


def launch_env(pythonpath: str = "") -> dict:
    """This process's environment, with `pythonpath` (a folder) first on the import path if given."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, env.get("PYTHONPATH", "")) if p)
    return env


def time_training(repo: str, data_dir: str, run_dir: str, flags, pythonpath: str = "") -> dict:
    """One launch of main.py --train in `repo`: seconds to each epoch line, and the exit. `pythonpath`:
    a folder put first on the launch's import path."""
    shutil.rmtree(run_dir, ignore_errors=True)
    command = [sys.executable, "main.py", "--train", "--crop", "--dataset", "startup", "--data_dir", data_dir,
               "--epoch", "3", "--sample_freq", "1000", "--checkpoint_dir", os.path.join(run_dir, "checkpoints"),
               "--sample_dir", os.path.join(run_dir, "samples"), "--log_dir", os.path.join(run_dir, "logs"),
               *flags]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=launch_env(pythonpath))
    lines, output, last_output = [], [], 0.0
    for line in process.stdout:
        output.append(line)
        last_output = time.perf_counter() - start
        if line.startswith("Epoch "):
            lines.append(last_output)
    process.wait()
    exit_s = time.perf_counter() - start
    if process.returncode != 0 or len(lines) < 2:
        raise SystemExit(f"training in {repo} failed (exit {process.returncode}):\n" + "".join(output[-20:]))
    return {"first_step_s": lines[0], "step_s": statistics.median(b - a for a, b in zip(lines, lines[1:])),
            "exit_s": exit_s, "exit_after_output_s": exit_s - last_output}


def time_help(repo: str, pythonpath: str = "") -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "main.py", "--help"], cwd=repo, stdout=subprocess.DEVNULL, check=True,
                   env=launch_env(pythonpath))
    return time.perf_counter() - start


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--baseline", default="", help="another checkout to compare with (its main.py)")
    p.add_argument("--baseline_pythonpath", default="",
                   help="a folder first on the baseline's import path, e.g. other versions of its dependencies "
                        "(pip install --target DIR ml_dtypes==0.7.0)")
    p.add_argument("--launches", type=int, default=3, help="launches of each checkout")
    p.add_argument("--data", default=frames.default_frames(), help="image folder (one batch of it is used)")
    p.add_argument("--batch", type=int, default=25)
    p.add_argument("--flags", default="--output_height 64",
                   help="more main.py flags, e.g. '--output_height 128' or '--gf_dim 16 --df_dim 16'")
    p.add_argument("--out", default="", help="JSON path for the figures")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    checkouts = {"this": REPO}
    if args.baseline:
        checkouts["baseline"] = os.path.abspath(args.baseline)
    flags = args.flags.split() + ["--batch_size", str(args.batch)]
    results = {name: [] for name in checkouts}
    helps = {name: [] for name in checkouts}
    with tempfile.TemporaryDirectory() as work:
        data_dir = one_batch_folder(args.data, args.batch, work)
        for launch in range(args.launches):
            for name, repo in checkouts.items():
                pythonpath = args.baseline_pythonpath if name == "baseline" else ""
                figures = time_training(repo, data_dir, os.path.join(work, name), flags, pythonpath=pythonpath)
                helps[name].append(time_help(repo, pythonpath=pythonpath))
                results[name].append(figures)
                print(f"{name} launch {launch + 1}: first step at {figures['first_step_s']:.1f} s, then "
                      f"{figures['step_s']:.2f} s/step, exit at {figures['exit_s']:.1f} s "
                      f"({figures['exit_after_output_s']:.2f} s after its last line); --help "
                      f"{helps[name][-1]:.2f} s", flush=True)
    summary = {name: {"first_step_s": statistics.median(r["first_step_s"] for r in runs),
                      "step_s": statistics.median(r["step_s"] for r in runs),
                      "start_up_s": statistics.median(r["first_step_s"] - r["step_s"] for r in runs),
                      "exit_after_output_s": statistics.median(r["exit_after_output_s"] for r in runs),
                      "help_s": statistics.median(helps[name]), "launches": runs}
               for name, runs in results.items()}
    for name, s in summary.items():
        print(f"{name}: command to first finished step {s['first_step_s']:.1f} s (of it one step "
              f"{s['step_s']:.2f} s, start-up {s['start_up_s']:.1f} s); exit {s['exit_after_output_s']:.2f} s "
              f"after the last line; --help {s['help_s']:.2f} s")
    if "baseline" in summary:
        ratio = summary["this"]["first_step_s"] / summary["baseline"]["first_step_s"]
        print(f"this / baseline, command to first step: {ratio:.2f}")
        summary["ratio_first_step"] = ratio
    cpu, cpu_flags = cpu_info()
    summary["machine"] = {"cpu": cpu, "cpu_flags": cpu_flags, "python": platform.python_version(),
                          "main_flags": args.flags, "baseline_pythonpath": args.baseline_pythonpath}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
