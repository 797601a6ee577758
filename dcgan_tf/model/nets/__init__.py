"""Network pairs by architecture name (--arch); the training model never branches on them.

Each architecture is a module with a Generator and a Discriminator (keras.Model subclasses;
discriminators return logits [batch, 1], generators tanh images). Their defaults (z size, learning
rate, ...) are the presets in dcgan_tf.config.PRESETS, one entry per name here.
"""

from __future__ import annotations

import contextlib
from typing import Tuple

import keras

from dcgan_tf.errors import UserError
from dcgan_tf.model.nets import art, classic, mlp, mnist, simpsons

REGISTRY = {"simpsons": simpsons, "mlp": mlp, "art": art, "mnist": mnist, "classic": classic}
ARCHITECTURES = tuple(REGISTRY)


def _sizes(config) -> str:
    return f"{config.output_height}x{config.output_width}"


def check_config(config) -> None:
    """Raises UserError where the architecture cannot make the asked-for images."""
    if config.arch not in ARCHITECTURES:
        raise UserError(f"--arch must be one of {', '.join(ARCHITECTURES)}, got {config.arch!r}.")
    h, w = config.output_height, config.output_width
    if config.arch == "simpsons":
        smallest = simpsons.min_output_size()
        for name in ("output_height", "output_width"):
            if getattr(config, name) < smallest:
                raise UserError(
                    f"--{name} {getattr(config, name)} is too small for the {config.arch} architecture: its "
                    f"{simpsons.NUM_LAYERS} stride-2 layers need at least {smallest} pixels; use --{name} "
                    f"{smallest} or more.")
    elif config.arch == "art":
        if h != w or not art.supports(h):
            raise UserError(
                f"the art architecture makes square images whose size is a power of two of at least 16 "
                f"(e.g. 64 or 256), not {_sizes(config)}; use --output_height 64 or 256 (and no --output_width).")
    elif config.arch in ("mnist", "classic"):
        size = REGISTRY[config.arch].SIZE
        channels = "1 channel" if config.arch == "mnist" else "1 or 3 channels"
        allowed = (1,) if config.arch == "mnist" else (0, 1, 3)
        if (h, w) != (size, size) or config.c_dim not in allowed:
            raise UserError(
                f"the {config.arch} architecture makes only {size}x{size} images with {channels}, not "
                f"{_sizes(config)} with --c_dim {config.c_dim}; use --output_height {size} without "
                f"--output_width" + (" and --c_dim 1." if config.arch == "mnist" else ", or another --arch."))


def synchronize_batch_norm(model: keras.Model) -> None:
    """Makes every BatchNormalization layer of `model` compute its batch statistics over all replicas
    of a tf.distribute strategy, so several replicas normalise as one device would."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
        elif isinstance(layer, keras.Model):
            synchronize_batch_norm(layer)


@contextlib.contextmanager
def dtype_policy(name: str):
    """Makes `name` Keras's global dtype policy only inside the block: layers take the policy when
    they are created, so nothing built outside (metrics, optimizers, other models) is affected."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_networks(config, synchronized_bn: bool = False) -> Tuple[keras.Model, keras.Model]:
    """(generator, discriminator) for a validated config whose c_dim is known, both built, computing
    in `config.precision` (variables float32 in every precision).

    `synchronized_bn`: batch norm over the global batch of all replicas (for more than one replica)."""
    with dtype_policy(config.precision):
        return _build_networks(config, synchronized_bn)


def _build_networks(config, synchronized_bn: bool) -> Tuple[keras.Model, keras.Model]:
    arch, h, w, c = config.arch, config.output_height, config.output_width, config.c_dim
    if arch == "simpsons":
        generator = simpsons.Generator(output_height=h, output_width=w, c_dim=c, gf_dim=config.gf_dim,
                                       z_dim=config.z_dim, name="generator")
        discriminator = simpsons.Discriminator(df_dim=config.df_dim, name="discriminator")
    elif arch == "mlp":
        generator = mlp.Generator(output_height=h, output_width=w, c_dim=c, hidden_dim=config.hidden_dim,
                                  z_dim=config.z_dim, name="generator")
        discriminator = mlp.Discriminator(hidden_dim=config.hidden_dim, name="discriminator")
    elif arch == "art":
        generator = art.Generator(output_height=h, output_width=w, c_dim=c, gf_dim=config.gf_dim,
                                  z_dim=config.z_dim, name="generator")
        discriminator = art.Discriminator(input_size=h, df_dim=config.df_dim, name="discriminator")
    elif arch == "mnist":
        generator = mnist.Generator(c_dim=c, gf_dim=config.gf_dim, z_dim=config.z_dim, name="generator")
        discriminator = mnist.Discriminator(df_dim=config.df_dim, hidden_dim=config.hidden_dim,
                                            name="discriminator")
    elif arch == "classic":
        generator = classic.Generator(c_dim=c, gf_dim=config.gf_dim, z_dim=config.z_dim,
                                      leaky=config.g_leaky, name="generator")
        discriminator = classic.Discriminator(df_dim=config.df_dim, name="discriminator")
    else:
        raise UserError(f"--arch must be one of {', '.join(ARCHITECTURES)}, got {arch!r}.")
    if synchronized_bn:
        synchronize_batch_norm(generator)
        synchronize_batch_norm(discriminator)
    # One call on zeros creates every variable (inference mode: batch-norm statistics untouched).
    generator(keras.ops.zeros((1, config.z_dim)))
    discriminator(keras.ops.zeros((1, h, w, c)))
    return generator, discriminator
