"""One writer per run (dcgan_tf/training/runlock.py): a second --train stops at once; a killed holder frees the run."""

import os
import signal
import subprocess
import sys
import time

import pytest

from dcgan_tf.training import train
from dcgan_tf.errors import UserError
from dcgan_tf.training import runlock
from dcgan_tf.training.runlock import RunLock
from tests.conftest import REPO, tiny_config

HOLD = ("import sys, time; sys.path.insert(0, sys.argv[2]); from dcgan_tf.training.runlock import RunLock; "
        "lock = RunLock(sys.argv[1], 'r').acquire(); print('held', flush=True); time.sleep(120)")


def _holder(folder):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), REPO], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_writer_gets_one_line_naming_the_holder_and_a_killed_holder_frees_the_run(tmp_path):
    assert runlock.holder(str(tmp_path)) is None  # never trained: no lock file
    holder = _holder(tmp_path)
    try:
        with pytest.raises(UserError, match=rf"being trained by process {holder.pid} on \S+ \(since .*only one --train"):
            RunLock(str(tmp_path), "r").acquire()
        # --runs asks without taking the run from its holder.
        assert runlock.holder(str(tmp_path)).startswith(f"process {holder.pid} on ")
        assert runlock.holder(str(tmp_path)).startswith(f"process {holder.pid} on ")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert runlock.holder(str(tmp_path)) is None  # the lock file stays; nobody holds it
    with RunLock(str(tmp_path), "r"):  # The kernel released it: no stale lock.
        with pytest.raises(UserError, match=f"process {os.getpid()} "):
            RunLock(str(tmp_path), "r").acquire()
    RunLock(str(tmp_path), "r").acquire().release()


def test_a_listing_asking_for_an_instant_does_not_refuse_a_train(tmp_path):
    import fcntl
    import threading

    RunLock(str(tmp_path), "r").acquire().release()  # the lock file exists, as after any training
    asking = open(tmp_path / ".lock", encoding="utf-8")
    fcntl.flock(asking, fcntl.LOCK_SH | fcntl.LOCK_NB)  # holder()'s shared lock, let go 30 ms later
    threading.Timer(0.03, asking.close).start()
    RunLock(str(tmp_path), "r").acquire().release()


def test_train_refuses_a_held_run_before_any_work_and_releases_it_when_done(workdir):
    config = tiny_config(workdir)
    holder = _holder(config.run_checkpoint_dir)
    try:
        started = time.time()
        with pytest.raises(UserError, match="run faces_4_32_32_z8_gf4_df4 is being trained by process"):
            train.train(config, verbose=0)
        assert not [n for n in os.listdir(config.run_checkpoint_dir) if n.startswith("ckpt")]
        assert not os.path.exists(os.path.join(config.run_checkpoint_dir, "config.json"))
        assert time.time() - started < 30
    finally:
        holder.kill()
        holder.wait()
    result = train.train(config, verbose=0)
    assert result.steps_run == 2
    RunLock(config.run_checkpoint_dir, "r").acquire().release()  # Free again after training.


def test_read_only_actions_work_while_the_run_is_held(workdir):
    from dcgan_tf import cli

    config = tiny_config(workdir)
    step = int(train.train(config, verbose=0).run.model.step.numpy())
    holder = _holder(config.run_checkpoint_dir)  # As if a --train of the run were going on.
    try:
        status = cli.execute(["main.py", "--dataset", "faces", "--data_dir", str(workdir / "data"),
                              "--checkpoint_dir", config.checkpoint_dir, "--sample_dir", config.sample_dir,
                              "--generate", "2", "--seed", "1"])
        assert status == 0
        assert sorted(os.listdir(os.path.join(config.run_sample_dir, f"step{step}", "generate_s1"))) == ["0000.png", "0001.png"]
    finally:
        holder.kill()
        holder.wait()
