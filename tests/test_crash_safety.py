"""Training survives SIGKILL at random moments, including in the middle of checkpoint writes."""

import concurrent.futures
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

from tests.conftest import MAIN, write_images

KILLS = 12  # 6 per run, 3 of them aimed at a checkpoint write
CKPT_FREQ = 2
RUN = "faces_4_32_32_z8_gf16_df16"


def _start(workdir, extra=()):
    args = [sys.executable, MAIN, "--train", "--dataset", "faces", "--output_height", "32", "--gf_dim", "16",
            "--df_dim", "16", "--batch_size", "4", "--z_dim", "8", "--epoch", "100000", "--seed", "5",
            "--sample_freq", "1", "--ckpt_freq", str(CKPT_FREQ), "--max_to_keep", "3", *extra]
    return subprocess.Popen(args, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def _done_steps(sample_dir):
    """Steps that finished: with --sample_freq 1 each writes its grid before its checkpoint."""
    return sorted(_grids(sample_dir))


def _newest_number(ckpt_dir):
    """N of the newest published ckpt-N (its step), 0 when none."""
    path = tf.train.latest_checkpoint(ckpt_dir)
    return int(path.rsplit("-", 1)[1]) if path else 0


def _read_newest(ckpt_dir):
    path = tf.train.latest_checkpoint(ckpt_dir)
    if path is None:
        return None
    reader = tf.train.load_checkpoint(path)
    values = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}  # every tensor reads
    get = lambda prefix: values[f"{prefix}/.ATTRIBUTES/VARIABLE_VALUE"]
    # The moving average of G (the default recipe) is in every checkpoint, whole.
    average = [v for name, v in values.items() if name.startswith("ema_generator/")]
    assert average and all(np.isfinite(v).all() for v in average)
    return {"step": int(get("step")), "epoch": int(get("epoch")), "sample_z": get("sample_z"),
            "d_iter": int(get("d_optimizer/_iterations")), "g_iter": int(get("g_optimizer/_iterations"))}


def _wait(predicate, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.001)
    return False


def _mtime(path):
    try:
        return os.path.getmtime(path)
    except FileNotFoundError:  # A grid's temporary file renamed away meanwhile.
        return 0.0


def _grids(sample_dir):
    """{step: mtime} of the finished grids (not their temporary files)."""
    if not os.path.isdir(sample_dir):
        return {}
    return {int(n[-8:-4]): _mtime(os.path.join(sample_dir, n)) for n in os.listdir(sample_dir)
            if n.startswith("train_") and n.endswith(".png")}


def _sample_written_since(sample_dir, since):
    """True once a grid file was written after `since` (a time.time() value)."""
    return any(t > since for t in _grids(sample_dir).values())


def _kill_sequence(workdir, kills, seed):
    """Starts training `kills` times and SIGKILLs it each time; checks the checkpoints after each."""
    write_images(workdir / "data" / "faces", 8)
    ckpt_dir, sample_dir = workdir / "checkpoints" / RUN, workdir / "samples" / RUN
    rng = random.Random(seed)
    previous, first_sample_z, during_write = None, None, 0
    for kill in range(kills):
        started = time.time()
        proc = _start(workdir)
        # Wait until this process has finished a step of its own, so the kill lands in training.
        assert _wait(lambda: _sample_written_since(sample_dir, started) or proc.poll() is not None, 180)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        if kill % 2:
            # Aim at a checkpoint write: kill as soon as its temporary folder appears.
            temp = lambda: any(n.endswith("_temp") for n in os.listdir(ckpt_dir)) if os.path.isdir(ckpt_dir) else False
            if _wait(temp, 10):
                during_write += 1
        else:
            # A random moment after this process saved progress of its own, so that the runs move on
            # however slow a step is (the default recipe's step, on a busy machine).
            before = previous["step"] if previous else 0
            _wait(lambda: _newest_number(ckpt_dir) > before or proc.poll() is not None, 180)
            time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()

        newest = _read_newest(ckpt_dir)
        done = _done_steps(sample_dir)
        if newest is None:  # killed before the first checkpoint
            assert done[-1] <= CKPT_FREQ
            continue
        assert done[-1] - newest["step"] <= CKPT_FREQ, (done[-1], newest["step"])
        assert newest["d_iter"] == newest["step"] and newest["g_iter"] == 2 * newest["step"]
        assert 2 * newest["epoch"] <= newest["step"]  # 8 images, batch 4: 2 steps an epoch
        if first_sample_z is None:
            first_sample_z = newest["sample_z"]
        np.testing.assert_array_equal(newest["sample_z"], first_sample_z)
        if previous is not None:
            assert newest["step"] >= previous["step"] and newest["epoch"] >= previous["epoch"]
        previous = newest
    return previous, during_write


def test_sigkill_never_corrupts_or_loses_more_than_ckpt_freq_steps(tmp_path):
    # Two independent runs side by side (one per core), KILLS kills in all.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda i: _kill_sequence(tmp_path / f"run{i}", KILLS // 2, seed=i), range(2)))
    assert sum(during for _, during in results) >= 4, results
    assert all(last is not None and last["step"] >= 3 for last, _ in results)  # training moved on

    # A last run resumes, is stopped politely, and says so.
    workdir, (previous, _) = tmp_path / "run0", results[0]
    ckpt_dir, sample_dir = workdir / "checkpoints" / RUN, workdir / "samples" / RUN
    started = time.time()
    proc = _start(workdir)
    assert _wait(lambda: _sample_written_since(sample_dir, started), 180)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert f"resumed from {os.path.join('checkpoints', RUN, 'ckpt-' + str(previous['step']))}" in out
    assert "stopped by SIGTERM" in out and "Run the same command to resume" in out
    final = _read_newest(ckpt_dir)
    mine = [step for step, t in _grids(sample_dir).items() if t > started]
    assert final["step"] == max(mine)  # the polite stop saved the last step it made
    assert not [n for n in os.listdir(ckpt_dir) if n.endswith("_temp")]  # leftovers cleaned on start
