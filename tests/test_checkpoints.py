"""training/checkpoints.py on small checkpoints of plain variables (no networks): what a run's newest
checkpoint says before anything is built."""

from __future__ import annotations

import tensorflow as tf

from dcgan_tf import runs
from dcgan_tf.training import checkpoints


def _save(folder, epoch: int, step: int) -> str:
    checkpoint = tf.train.Checkpoint(epoch=tf.Variable(epoch, dtype=tf.int64), step=tf.Variable(step, dtype=tf.int64))
    manager = tf.train.CheckpointManager(checkpoint, str(folder), max_to_keep=3,
                                         checkpoint_name=runs.CHECKPOINT_PREFIX)
    return manager.save(checkpoint_number=step)


def test_saved_epoch_reads_the_newest_checkpoints_counter(tmp_path):
    assert checkpoints.saved_epoch(str(tmp_path / "none")) is None
    assert checkpoints.saved_epoch(str(tmp_path)) is None
    _save(tmp_path, epoch=2, step=8)
    newest = _save(tmp_path, epoch=3, step=12)
    assert checkpoints.saved_epoch(str(tmp_path)) == 3
    # A damaged newest file reads as unknown (the full restore then reports it or falls back).
    with open(newest + ".index", "wb") as f:
        f.write(b"not an index")
    assert checkpoints.saved_epoch(str(tmp_path)) is None
