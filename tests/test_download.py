"""--download against a local HTTP server on 127.0.0.1 (nothing is fetched from the internet)."""

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading

import pytest

from dcgan_tf import cli
from dcgan_tf.data import download
from dcgan_tf.errors import UserError
from tests.conftest import REPO

SHARED = os.environ.get("DCGAN_TF_SIMPSONS") or os.path.join(os.path.dirname(REPO), "shared", "data", "simpsons_64")
HAVE_IMAGES = all(os.path.isfile(os.path.join(SHARED, n)) for n in download.SIMPSONS_SHA256)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """(served folder, base URL, list of requested paths)."""
    served = tmp_path / "served"
    served.mkdir()
    requested = []

    class Handler(_Quiet):
        def do_GET(self):
            requested.append(self.path)
            return super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{httpd.server_address[1]}/Simpsons_64", requested
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_table_names_the_original_files():
    expected = [f"{i}.jpg" for i in range(104) if i not in (49, 63, 74, 88)]
    assert list(download.SIMPSONS_SHA256) == expected
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in download.SIMPSONS_SHA256.values())
    assert len(set(download.SIMPSONS_SHA256.values())) == 100
    assert download.COMMIT in download.DEFAULT_BASE_URL and "neelindap/DCGAN-tensorflow" in download.DEFAULT_BASE_URL


@pytest.mark.skipif(not HAVE_IMAGES, reason="the shared copies of the Simpsons images are not here")
def test_download_checks_every_file_and_keeps_good_ones(tmp_path, server):
    served, url, requested = server
    shutil.copytree(SHARED, served / "Simpsons_64", ignore=shutil.ignore_patterns("*.md"))
    target = tmp_path / "data" / "simpsons_64"
    paths = download.download_simpsons(str(target), url, log=None)
    assert len(paths) == 100 and sorted(os.listdir(target)) == sorted(download.SIMPSONS_SHA256)
    assert all(download.sha256_of(p) == download.SIMPSONS_SHA256[os.path.basename(p)] for p in paths)
    assert len(requested) == 100
    # A second run fetches nothing: the files are there with the right sums.
    download.download_simpsons(str(target), url, log=None)
    assert len(requested) == 100


def test_a_file_with_the_wrong_sum_is_refused_and_deleted(tmp_path, server):
    served, url, _ = server
    (served / "Simpsons_64").mkdir()
    (served / "Simpsons_64" / "0.jpg").write_bytes(b"not the original frame")
    target = tmp_path / "data" / "simpsons_64"
    with pytest.raises(UserError, match=r"refused .*/0\.jpg: its SHA-256 is") as e:
        download.download_simpsons(str(target), url, log=None)
    assert "\n" not in str(e.value)
    assert os.listdir(target) == []  # nothing of it kept, no temporary files left


def test_a_missing_file_is_a_user_error(tmp_path, server):
    _, url, _ = server
    with pytest.raises(UserError, match=r"cannot download .*/0\.jpg .*--download_url"):
        download.download_simpsons(str(tmp_path / "out"), url, log=None)
    assert os.listdir(tmp_path / "out") == []


@pytest.mark.skipif(not HAVE_IMAGES, reason="the shared copies of the Simpsons images are not here")
def test_download_flag_through_the_command_line_with_the_env_url(tmp_path, server, monkeypatch, capsys):
    served, url, _ = server
    shutil.copytree(SHARED, served / "Simpsons_64", ignore=shutil.ignore_patterns("*.md"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(download.URL_ENV, url)
    assert cli.execute(["main.py", "--download"]) == 0
    assert "100 image(s) downloaded and all 100 checked in data/simpsons_64" in capsys.readouterr().out
    assert len(os.listdir(tmp_path / "data" / "simpsons_64")) == 100
    # A wrong file on the server: one error line, exit status 2.
    (tmp_path / "data" / "simpsons_64" / "5.jpg").write_bytes(b"damaged")
    (served / "Simpsons_64" / "5.jpg").write_bytes(b"tampered")
    assert cli.execute(["main.py", "--download", "--download_url", url]) == 2
    err = capsys.readouterr().err
    assert err.count("dcgan_tf: error:") == 1 and "refused" in err and "5.jpg" in err
    # The tampered download was deleted; the local file was not overwritten with it.
    assert (tmp_path / "data" / "simpsons_64" / "5.jpg").read_bytes() == b"damaged"
    assert all(n.endswith(".jpg") for n in os.listdir(tmp_path / "data" / "simpsons_64"))  # No partial file.


def test_the_training_data_path_imports_no_network_code():
    # The pipeline needs download.FOLDER only; urllib comes in when a download runs.
    code = "import sys; import dcgan_tf.data.pipeline; print('urllib.request' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
