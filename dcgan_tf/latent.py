"""The latent space: drawing z."""

from __future__ import annotations

import keras

from dcgan_tf.config import Z_DISTRIBUTIONS


def sample_z(batch_size, z_dim: int, z_dist: str, seed=None):
    """z of shape [batch_size, z_dim]: uniform in [-1, 1] ("uniform_signed") or N(0, 1) ("normal01").

    `seed` is an int, a keras.random.SeedGenerator (stateful, checkpointable) or None.
    """
    shape = (batch_size, z_dim)
    if z_dist == "uniform_signed":
        return keras.random.uniform(shape, minval=-1.0, maxval=1.0, seed=seed)
    if z_dist == "normal01":
        return keras.random.normal(shape, seed=seed)
    raise ValueError(f"unknown z distribution {z_dist!r}; expected one of {Z_DISTRIBUTIONS}")
