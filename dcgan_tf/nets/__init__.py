"""Network pairs by architecture name (--arch); the training model never branches on them."""

from __future__ import annotations

from typing import Tuple

import keras

from dcgan_tf.errors import UserError
from dcgan_tf.nets import simpsons

ARCHITECTURES = ("simpsons",)


def check_config(config) -> None:
    """Raises UserError where the architecture cannot make the asked-for images."""
    if config.arch not in ARCHITECTURES:
        raise UserError(f"--arch must be one of {', '.join(ARCHITECTURES)}, got {config.arch!r}.")
    smallest = simpsons.min_output_size()
    for name in ("output_height", "output_width"):
        if getattr(config, name) < smallest:
            raise UserError(
                f"--{name} {getattr(config, name)} is too small for the {config.arch} architecture: its "
                f"{simpsons.NUM_LAYERS} stride-2 layers need at least {smallest} pixels; use --{name} "
                f"{smallest} or more.")


def build_networks(config) -> Tuple[keras.Model, keras.Model]:
    """(generator, discriminator) for a validated config whose c_dim is known, both built."""
    generator = simpsons.Generator(
        output_height=config.output_height, output_width=config.output_width, c_dim=config.c_dim,
        gf_dim=config.gf_dim, z_dim=config.z_dim, name="generator")
    discriminator = simpsons.Discriminator(df_dim=config.df_dim, name="discriminator")
    # One call on zeros creates every variable (inference mode: batch-norm statistics untouched).
    generator(keras.ops.zeros((1, config.z_dim)))
    discriminator(keras.ops.zeros((1, config.output_height, config.output_width, config.c_dim)))
    return generator, discriminator
