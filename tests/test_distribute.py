"""--strategy mirrored / multiworker: equal to one device, identical workers, chief-only files, a stop
on one worker ending all of them after the same step, workers without the chief's checkpoint refused,
a lost worker as one error line. Logical CPU devices and TF_CONFIG must be set before TensorFlow
starts, so the training runs in subprocesses, all started at once by one module fixture."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, TINY_FLAGS, assert_one_line_error, write_images
from dcgan_tf import runs

# Trains 2 steps of the tiny config through train.train under --strategy mirrored (--cpu_devices 2) and
# under the default strategy, with plain SGD in place of Adam: Adam's step hardly depends on the size of
# the gradient, SGD's is proportional to it, so a wrong loss scaling over the replicas shows in the
# weights. Dumps the weights before and after each step, each step's logs, the counters, the random
# state and the refusal of a batch that does not split over the replicas.
_MIRRORED = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
root, out = sys.argv[2], sys.argv[3]
import keras, numpy as np
from dcgan_tf.training import optimizers, train
from dcgan_tf.config import RunConfig
from dcgan_tf.errors import UserError

optimizers.FusedAdam = lambda learning_rate, **adam_options: keras.optimizers.SGD(learning_rate)

class Record(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights, self.logs = [], []
    def _snapshot(self):  # The default recipe: DiffAugment's draws and the average of G are covered too.
        net = self.model.generator.weights + self.model.discriminator.weights + self.model.ema_generator.weights
        self.weights.append([np.array(v.numpy()) for v in net])
    def on_train_begin(self, logs=None):
        self._snapshot()
    def on_train_batch_end(self, batch, logs=None):
        self._snapshot()
        self.logs.append([float(logs[k]) for k in sorted(logs)])

def config(strategy, **extra):
    values = dict(data_dir=os.path.join(root, "data"), dataset="faces", output_height=32, gf_dim=4, df_dim=4,
                  batch_size=4, z_dim=8, epoch=1, seed=1, sample_freq=2, ckpt_freq=2, learning_rate=1e-3,
                  strategy=strategy, cpu_devices=2, precision="float32")
    values.update({k: os.path.join(root, f"{k}_{strategy}") for k in ("checkpoint_dir", "sample_dir", "log_dir")})
    values.update(extra)
    return RunConfig.create(**values)

dump = {}
for name in ("mirrored", "default"):  # mirrored first: --cpu_devices must come before TF sets up devices.
    record = Record()
    result = train.train(config(name), verbose=0, extra_callbacks=[record])
    model = result.run.model
    dump[f"{name}/weights"] = np.array([np.concatenate([w.ravel() for w in step]) for step in record.weights])
    dump[f"{name}/logs"] = np.array(record.logs)
    dump[f"{name}/counters"] = np.array([int(model.step.numpy()), int(model.epoch.numpy())])
    dump[f"{name}/seed_state"] = np.asarray(model.z_seed.state.numpy())
    dump["sizes"] = np.array([w.size for w in record.weights[0]])
try:
    train.train(config("mirrored", batch_size=3, checkpoint_dir=os.path.join(root, "odd")), verbose=0)
    dump["odd_batch_error"] = np.array("no error")
except UserError as e:
    dump["odd_batch_error"] = np.array(str(e))
np.savez(out, **dump)
"""

# main.py's command line in this process, with a callback that dumps the weights after step 2 (written
# whole under its final name, so a reader never sees half a file).
_WORKER = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
out = sys.argv[2]
import keras, numpy as np
from dcgan_tf import cli
from dcgan_tf.training import train

class DumpAtStep2(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.step.numpy()) == 2:
            net = self.model.generator.weights + self.model.discriminator.weights
            np.save(out + ".tmp.npy", np.concatenate([np.ravel(v.numpy()) for v in net]))
            os.replace(out + ".tmp.npy", out)

plain = train.train
train.train = lambda config, verbose=1, extra_callbacks=(): plain(config, verbose, (*extra_callbacks, DumpAtStep2()))
sys.exit(cli.execute(["main.py", *sys.argv[3:]]))
"""



def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _tf_config(ports, index):
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def _start(args, folder, name, **env):
    """Popen with stdout and stderr in files (a pipe nobody reads could fill and stall training)."""
    env = {**{k: v for k, v in os.environ.items() if k != "TF_CONFIG"}, "TF_CPP_MIN_LOG_LEVEL": "2", **env}
    proc = subprocess.Popen(args, cwd=folder, env=env, stdout=open(folder / f"{name}.out", "w"),
                            stderr=open(folder / f"{name}.err", "w"))
    proc.err_path = folder / f"{name}.err"
    return proc


def _err(*procs):
    """Each process's exit status and whole stderr, less TensorFlow's start-up info lines."""
    def text(p):
        lines = p.err_path.read_text(errors="replace").splitlines()
        return "\n".join(l for l in lines if not l.startswith("I0000"))
    return "\n".join(f"--- exit {p.poll()}, stderr:\n{text(p)}" for p in procs)


def _start_workers(folder, name="worker"):
    """main.py --train on a two-worker cluster (on free ports) in `folder`, as worker 0 (the chief)
    and worker 1; their output in NAME0/NAME1.out and .err. The same command resumes the run."""
    ports = _free_ports(2)
    return [_start(
        [sys.executable, "-c", _WORKER, REPO, str(folder / f"weights{i}.npy"), "--train",
         "--dataset", "faces", *TINY_FLAGS, "--epoch", "10000", "--seed", "1", "--strategy", "multiworker",
         "--ckpt_freq", "2", "--sample_freq", "2",
         "--checkpoint_dir", f"ckpt{i}", "--sample_dir", f"samples{i}", "--log_dir", f"logs{i}"],
        folder, f"{name}{i}", TF_CONFIG=_tf_config(ports, i)) for i in range(2)]


def _newest_checkpoint_step(folder) -> int:
    newest = tf.train.latest_checkpoint(str(folder))
    return int(newest.rsplit("-", 1)[1]) if newest else 0


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    """Starts every training of this module at once: mirrored vs one device, and two workers."""
    root = tmp_path_factory.mktemp("distribute")
    for name in ("mirrored", "workers"):
        write_images(root / name / "data" / "faces", 8)
    started = {"mirrored": _start([sys.executable, "-c", _MIRRORED, REPO, str(root / "mirrored"),
                                   str(root / "mirrored" / "out.npz")], root / "mirrored", "mirrored")}
    started["workers"] = _start_workers(root / "workers")
    yield root, started
    for proc in [started["mirrored"], *started["workers"]]:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# First: its waits overlap the mirrored run.
def test_two_workers_train_alike_only_the_chief_writes_stop_together_and_a_dead_worker_stops_the_other(jobs):
    root, started = jobs
    chief, worker = started["workers"]
    folder = root / "workers"
    dumps = [folder / "weights0.npy", folder / "weights1.npy"]
    deadline = time.time() + 400
    while not all(d.exists() for d in dumps):
        assert chief.poll() is None and worker.poll() is None, _err(chief, worker)
        assert time.time() < deadline, "the two workers never reached step 2\n" + _err(chief, worker)
        time.sleep(0.5)
    np.testing.assert_array_equal(np.load(dumps[1]), np.load(dumps[0]))
    run = "faces_4_32_32_z8_gf4_df4"
    written = set(os.listdir(folder / "ckpt0" / run))  # The chief trains on while the test looks.
    assert {"checkpoint", "config.json"} <= written and any(f.endswith(".index") for f in written), written
    assert "train_00_0002.png" in os.listdir(folder / "samples0" / run)
    assert os.listdir(folder / "logs0" / run)
    # The other worker wrote nothing of its own.
    assert not any((folder / f"{kind}1").exists() for kind in ("ckpt", "samples", "logs"))

    # SIGTERM to the other worker alone: both end after the same step, and the chief saves it.
    worker.send_signal(signal.SIGTERM)
    for proc in (worker, chief):
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail("a worker still runs 120 s after SIGTERM reached one of them\n" + _err(chief, worker))
    assert chief.returncode == 0 and worker.returncode == 0, _err(chief, worker)
    said = [re.search(r"dcgan_tf: stopped by (.+) at step (\d+); ", (folder / f"worker{i}.out").read_text())
            for i in range(2)]
    assert all(said), _err(chief, worker)
    assert [s.group(1) for s in said] == ["another worker of the cluster", "SIGTERM"]
    assert "; checkpoint saved in " in said[0].string and "; the chief saved the checkpoint." in said[1].string
    stopped_at = int(said[0].group(2))
    assert int(said[1].group(2)) == stopped_at > 2 and _newest_checkpoint_step(folder / "ckpt0" / run) == stopped_at

    # Restarted while the other worker cannot read the chief's checkpoint (its own --checkpoint_dir, as
    # on another host): both refuse to start, in one line.
    started["workers"] = _start_workers(folder, "unshared")
    for proc in started["workers"]:
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail("workers without the same checkpoint still run after 120 s\n" + _err(*started["workers"]))
        err = proc.err_path.read_text(errors="replace")
        assert_one_line_error(subprocess.CompletedProcess([], proc.returncode, "", err),
                              f"different newest checkpoints (none, step {stopped_at}):", "--checkpoint_dir")

    # A copy whose newest checkpoint is damaged (copied in part): that worker would restore an older one
    # and train apart from the chief; both refuse instead, in one line.
    shutil.copytree(folder / "ckpt0", folder / "ckpt1")
    older = sorted(runs.checkpoint_step(p) for p in
                   tf.train.get_checkpoint_state(str(folder / "ckpt1" / run)).all_model_checkpoint_paths)[-2]
    for data in (folder / "ckpt1" / run).glob(f"ckpt-{stopped_at}.data-*"):
        data.write_bytes(data.read_bytes()[:100])
    started["workers"] = _start_workers(folder, "damaged")
    for proc in started["workers"]:
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail("workers with different restored checkpoints still run after 120 s\n"
                        + _err(*started["workers"]))
        err = proc.err_path.read_text(errors="replace")
        assert_one_line_error(subprocess.CompletedProcess([], proc.returncode, "", err),
                              f"restored different checkpoints (step {older}, step {stopped_at}):")
    assert "is damaged and was skipped" in started["workers"][1].err_path.read_text(errors="replace")

    # With the chief's run folder copied to it whole, the same commands resume the run. Killed
    # mid-training, a worker is missed by the chief through its heartbeats
    # (distribute.HEARTBEAT_TIMEOUT_S), far sooner than the default --worker_timeout.
    shutil.rmtree(folder / "ckpt1")
    shutil.copytree(folder / "ckpt0", folder / "ckpt1")
    chief, worker = started["workers"] = _start_workers(folder, "resumed")
    deadline = time.time() + 300
    while _newest_checkpoint_step(folder / "ckpt0" / run) <= stopped_at:
        assert chief.poll() is None and worker.poll() is None, _err(chief, worker)
        assert time.time() < deadline, "the resumed workers saved no new checkpoint\n" + _err(chief, worker)
        time.sleep(0.5)
    assert f"/ckpt-{stopped_at} (epoch " in (folder / "resumed0.out").read_text()  # The start line's "resumed from".
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    try:
        chief.wait(timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("the chief still runs 90 s after its peer died\n" + _err(chief))
    err = chief.err_path.read_text(errors="replace")
    line = assert_one_line_error(subprocess.CompletedProcess([], chief.returncode, "", err),
                                 "a worker of the cluster stopped", "restart the same command on every worker")
    assert "ckpt-" in line  # Names the newest checkpoint to resume from.


def test_mirrored_over_two_devices_equals_one_device(jobs):
    root, started = jobs
    proc = started["mirrored"]
    proc.wait(timeout=400)
    assert proc.returncode == 0, _err(proc)
    dump = np.load(root / "mirrored" / "out.npz")
    np.testing.assert_array_equal(dump["mirrored/counters"], [2, 1])
    for key in ("counters", "seed_state"):
        np.testing.assert_array_equal(dump[f"mirrored/{key}"], dump[f"default/{key}"])
    np.testing.assert_allclose(dump["mirrored/logs"], dump["default/logs"], rtol=1e-4, atol=1e-6)
    one, two = dump["default/weights"], dump["mirrored/weights"]
    np.testing.assert_array_equal(two[0], one[0])  # The same initial weights.
    # Each step's change of every weight (SGD: the learning rate times the global batch's gradient),
    # relative to the largest change of its variable; batch-norm statistics included.
    bounds = np.cumsum(dump["sizes"])[:-1]
    for step in (1, 2):
        for i, (a, b) in enumerate(zip(np.split(two[step] - two[0], bounds), np.split(one[step] - one[0], bounds))):
            scale = np.abs(b).max() + 1e-3 * np.abs(one[step] - one[0]).max()
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-3 * scale, err_msg=f"step {step}, variable {i}")
    assert "does not split evenly over the 2 replicas" in str(dump["odd_batch_error"])


def test_multiworker_without_tf_config_is_one_line(tmp_path, monkeypatch, capsys):
    from dcgan_tf import cli

    monkeypatch.delenv("TF_CONFIG", raising=False)
    write_images(tmp_path / "data" / "faces", 4)
    monkeypatch.chdir(tmp_path)
    code = cli.execute(["main.py", "--train", "--dataset", "faces", *TINY_FLAGS, "--strategy", "multiworker"])
    err = capsys.readouterr().err
    assert_one_line_error(subprocess.CompletedProcess([], code, "", err), "TF_CONFIG", "--strategy multiworker")
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("text, fragment", [
    ("{not json", "not valid JSON"),
    ('{"cluster": {"worker": ["a:1"]}}', "needs a \"cluster\" and a \"task\""),
    ('{"cluster": {"worker": ["a:1", "b"]}, "task": {"type": "worker", "index": 0}}', "host:port"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', "is not in the cluster"),
])
def test_malformed_tf_config_is_refused(text, fragment):
    from dcgan_tf.training import distribute
    from dcgan_tf.errors import UserError

    with pytest.raises(UserError, match=fragment) as caught:
        distribute.parse_tf_config(text)
    assert "\n" not in str(caught.value)


def test_chief_is_worker_zero_unless_a_chief_is_named():
    from dcgan_tf.training import distribute

    two = {"worker": ["a:1", "b:1"]}
    assert distribute.is_chief_task("worker", 0, two)
    assert not distribute.is_chief_task("worker", 1, two)
    named = {"chief": ["c:1"], **two}
    assert distribute.is_chief_task("chief", 0, named)
    assert not distribute.is_chief_task("worker", 0, named)


def test_global_batch_must_split_over_the_replicas():
    from dcgan_tf.training import distribute
    from dcgan_tf.errors import UserError

    distribute.check_global_batch(8, 4)
    with pytest.raises(UserError, match="--batch_size 6 or 8"):
        distribute.check_global_batch(6 + 1, 2)
