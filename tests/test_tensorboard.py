"""The real TensorBoard server shows a run's losses (read back through its HTTP data API)."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

from dcgan_tf.training import train
from tests.conftest import tiny_config


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read().decode())


def test_tensorboard_serves_the_loss_series(workdir):
    config = tiny_config(workdir, epoch=2)
    train.train(config, verbose=0)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", config.log_dir, "--host", "127.0.0.1",
         "--port", str(port), "--reload_interval", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        base = f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?"
        series = {}
        deadline = time.time() + 120
        while time.time() < deadline and len(series) < 2:
            time.sleep(1)
            for tag in ("d_loss", "g_loss"):
                try:
                    points = _get(base + urllib.parse.urlencode({"run": config.run_name, "tag": tag}))
                except Exception:
                    continue
                if len(points) == 4:
                    series[tag] = points
        assert set(series) == {"d_loss", "g_loss"}, server.poll()
        assert [p[1] for p in series["d_loss"]] == [1, 2, 3, 4]  # [wall_time, step, value]
        assert all(p[2] > 0 for p in series["d_loss"] + series["g_loss"])
        runs = _get(f"http://127.0.0.1:{port}/data/plugin/histograms/tags")
        assert {"z", "d", "d_"} <= set(runs[config.run_name])
        images = _get(f"http://127.0.0.1:{port}/data/plugin/images/tags")
        assert "G" in images[config.run_name]
    finally:
        server.terminate()
        server.wait(timeout=30)
