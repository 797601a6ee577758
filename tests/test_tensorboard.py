"""The real TensorBoard server shows a run's summaries (read back through its HTTP data API): the loss
series, and the tags in the groups its Time Series view makes of them."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from dcgan_tf.training import train
from tests.conftest import tiny_config, write_images


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read().decode())


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A tiny run trained for 4 steps, one FID/KID measurement written as --eval_freq writes it, and
    TensorBoard serving its logs: (config, base URL)."""
    import tensorflow as tf

    from dcgan_tf.quality import evaluate

    workdir = tmp_path_factory.mktemp("tensorboard")
    write_images(workdir / "data" / "faces", 8)
    config = tiny_config(workdir, epoch=2)
    train.train(config, verbose=0)
    writer = tf.summary.create_file_writer(config.run_log_dir)
    evaluate.write_summaries(writer, {"fid": 300.0, "kid": 0.3, "kid_std": 0.01}, step=4)
    writer.close()
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", config.log_dir, "--host", "127.0.0.1",
         "--port", str(port), "--reload_interval", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        yield config, f"http://127.0.0.1:{port}/data/plugin"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for(fetch, ready, timeout=120):
    """fetch() until ready(result) (the server loads the logs in the background); the last result."""
    deadline, result = time.time() + timeout, None
    while time.time() < deadline:
        try:
            result = fetch()
            if ready(result):
                return result
        except Exception:  # noqa: BLE001 -- not up yet
            pass
        time.sleep(1)
    return result


def test_tensorboard_serves_the_loss_series(served):
    config, base = served

    def series():
        found = {}
        for tag in ("loss/d_loss", "loss/g_loss"):
            points = _get(f"{base}/scalars/scalars?" + urllib.parse.urlencode({"run": config.run, "tag": tag}))
            if len(points) == 4:
                found[tag] = points
        return found

    found = _wait_for(series, lambda found: len(found) == 2)
    assert set(found) == {"loss/d_loss", "loss/g_loss"}
    assert [p[1] for p in found["loss/d_loss"]] == [1, 2, 3, 4]  # [wall_time, step, value]
    assert all(p[2] > 0 for p in found["loss/d_loss"] + found["loss/g_loss"])
    histograms = _get(f"{base}/histograms/tags")
    assert {"z", "probability/d", "probability/d_"} <= set(histograms[config.run])
    images = _get(f"{base}/images/tags")
    assert "samples/G" in images[config.run]


def test_tensorboard_groups_the_scalars_by_what_they_measure(served):
    """The Time Series view groups cards by the tag's part before the first "/" and opens the first
    two groups in tag order: losses together, D's outputs together, the measurements together,
    each tag ending in the original's name."""
    config, base = served
    tags = _wait_for(lambda: _get(f"{base}/timeseries/tags"),
                     lambda tags: len(tags["scalars"]["runTagInfo"].get(config.run, [])) == 9)
    scalars = set(tags["scalars"]["runTagInfo"][config.run])
    histograms = set(tags["histograms"]["runTagInfo"][config.run])
    images = set(tags["images"]["tagRunSampledInfo"])
    groups = {}
    for tag in scalars | histograms | images:
        groups.setdefault(tag.split("/", 1)[0], set()).add(tag.split("/", 1)[-1])
    assert groups == {"loss": {"d_loss", "d_loss_real", "d_loss_fake", "g_loss"},
                      "probability": {"d_x", "d_g_z", "d", "d_"},  # D(x), D(G(z)): means and histograms
                      "eval": {"fid", "kid", "kid_std"}, "z": {"z"}, "samples": {"G"}}
    assert all("/" in tag for tag in scalars)  # No scalar is a group of its own.
    # TensorBoard's order of groups ("/" before letters, capitals before small letters).
    order = list(dict.fromkeys(t.split("/", 1)[0] for t in sorted(scalars | histograms | images,
                                                                   key=lambda t: t.replace("/", "\0"))))
    # The first two (the ones TensorBoard opens) are the measurements and the losses.
    assert order == ["eval", "loss", "probability", "samples", "z"]
