"""What a checkpoint holds, and restoring it with errors a user can act on."""

from __future__ import annotations

import tensorflow as tf

from dcgan_tf.errors import UserError


def make_checkpoint(model, sample_z) -> tf.train.Checkpoint:
    """Both networks, both optimizers, the step and epoch counters, the z random state and the
    fixed sample z: everything an exact resume needs."""
    return tf.train.Checkpoint(
        generator=model.generator, discriminator=model.discriminator,
        d_optimizer=model.d_optimizer, g_optimizer=model.g_optimizer,
        step=model.step, epoch=model.epoch, z_seed=model.z_seed.state, sample_z=sample_z)


def make_manager(checkpoint: tf.train.Checkpoint, folder: str, max_to_keep: int):
    return tf.train.CheckpointManager(checkpoint, folder, max_to_keep=max_to_keep, checkpoint_name="ckpt")


def restore(checkpoint: tf.train.Checkpoint, path: str, *, partial: bool = False) -> None:
    """Restores `path` into already-built objects; UserError if it does not fit them.

    `partial` allows a checkpoint holding more than `checkpoint` asks for (e.g. the generator alone).
    """
    try:
        status = checkpoint.restore(path)
        if partial:
            status.expect_partial()
        status.assert_existing_objects_matched()
    except (tf.errors.OpError, AssertionError, ValueError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"checkpoint {path} cannot be loaded into this model ({first_line[:300]}); it may be damaged "
            f"or made with other options: check the run's config.json, or use another --checkpoint_dir."
        ) from None
