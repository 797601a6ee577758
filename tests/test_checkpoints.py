"""training/checkpoints.py on small checkpoints of plain variables (no networks): what a run's newest
checkpoint says before anything is built."""

from __future__ import annotations

import types

import pytest
import tensorflow as tf

from dcgan_tf import runs
from dcgan_tf.errors import UserError
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


def _stub_model(value: float):
    """What checkpoint_parts reads of a DCGAN, as plain variables holding `value` (no networks)."""
    def variable():
        return tf.Variable(value)

    seed = types.SimpleNamespace
    return types.SimpleNamespace(
        generator=variable(), discriminator=variable(), d_optimizer=variable(), g_optimizer=variable(),
        step=variable(), epoch=variable(), epoch_step=variable(), z_seed=seed(state=variable()),
        augment_seed=seed(state=variable()), ema_generator=variable(), r1_weight=variable(),
        lecam_anchors=variable(), augment_p=variable())


def test_a_file_of_an_earlier_version_restores_without_the_parts_added_since(tmp_path):
    old, new = _stub_model(1.0), _stub_model(2.0)
    old_z, new_z = tf.Variable(tf.fill([2, 3], 1.0)), tf.Variable(tf.fill([2, 3], 2.0))
    earlier = {name: part for name, part in checkpoints.checkpoint_parts(old, old_z).items()
               if name not in checkpoints._ADDED_PARTS}
    path = tf.train.CheckpointManager(tf.train.Checkpoint(**earlier), str(tmp_path), max_to_keep=2,
                                      checkpoint_name=runs.CHECKPOINT_PREFIX).save(checkpoint_number=4)
    assert checkpoints.restore_newest(new, new_z, [path]) == path
    values = {name: float(tf.reduce_mean(part)) for name, part in checkpoints.checkpoint_parts(new, new_z).items()}
    assert {name for name, value in values.items() if value == 2.0} == set(checkpoints._ADDED_PARTS) - {"dropout_seed"}
    assert all(value == 1.0 for name, value in values.items() if name not in checkpoints._ADDED_PARTS)

    # A part that is not one of the added ones is never silently left fresh: the restore refuses.
    del earlier["discriminator"]
    path = tf.train.CheckpointManager(tf.train.Checkpoint(**earlier), str(tmp_path / "less"), max_to_keep=2,
                                      checkpoint_name=runs.CHECKPOINT_PREFIX).save(checkpoint_number=4)
    with pytest.raises(UserError, match="cannot be"):
        checkpoints.restore_newest(_stub_model(3.0), tf.Variable(tf.fill([2, 3], 3.0)), [path])
