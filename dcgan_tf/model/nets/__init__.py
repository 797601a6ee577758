"""Network pairs by architecture name (--arch); the training model never branches on them.

Each architecture is a module with a Generator and a Discriminator (keras.Model subclasses;
discriminators return logits [batch, 1], generators tanh images) and two functions this registry
calls, so that a new architecture is one new module plus its line in REGISTRY:

- `check_shape(height, width, c_dim)`: why it cannot make such images (a message), or None;
- `build(*, height, width, c_dim, z_dim, gf_dim, df_dim, hidden_dim, g_leaky, d_dropout, d_minibatch_std,
  d_spectral_norm)`:
  (generator, discriminator), unbuilt; each takes the keywords it uses and ignores the rest (`**_`).

Their defaults (z size, learning rate, ...) are the presets in dcgan_tf.config.PRESETS, one entry per
name here.
"""

from __future__ import annotations

import contextlib
from typing import Optional, Tuple

import keras

from dcgan_tf.errors import UserError
from dcgan_tf.model.nets import art, classic, mlp, mnist, simpsons

REGISTRY = {"simpsons": simpsons, "mlp": mlp, "art": art, "mnist": mnist, "classic": classic}
ARCHITECTURES = tuple(REGISTRY)


def _module(arch: str):
    """The module of architecture `arch`; UserError for a name that is not one."""
    if arch not in REGISTRY:
        raise UserError(f"--arch must be one of {', '.join(ARCHITECTURES)}, got {arch!r}.")
    return REGISTRY[arch]


def check_shape(arch: str, height: int, width: int, c_dim: int) -> None:
    """Raises UserError where architecture `arch` cannot make height x width x c_dim images."""
    problem = _module(arch).check_shape(height, width, c_dim)
    if problem:
        raise UserError(problem)


def check_config(config) -> None:
    """check_shape for a RunConfig (the command line's adapter)."""
    check_shape(config.arch, config.output_height, config.output_width, config.c_dim)


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


def build(arch: str, *, height: int, width: int, c_dim: int, z_dim: int, gf_dim: int, df_dim: int,
          hidden_dim: int, g_leaky: bool = False, d_dropout: float = 0.0, d_minibatch_std: bool = False,
          d_spectral_norm: bool = False, precision: str = "float32", synchronized_bn: bool = False,
          with_discriminator: bool = True,
          draw_initial_weights: bool = True) -> Tuple[keras.Model, Optional[keras.Model]]:
    """(generator, discriminator) of architecture `arch` for images height x width x c_dim (c_dim
    known), both built, computing in `precision` (variables float32 in every precision).

    `synchronized_bn`: batch norm over the global batch of all replicas (for more than one replica).
    `with_discriminator=False`: (generator, None), without creating D's weights (a second of
    start-up at full width). `draw_initial_weights=False`: the weights start at zero instead of their
    random draws, for networks whose weights are set at once from elsewhere (the moving average of G,
    a copy of G: a third of a second at 128x128)."""
    with dtype_policy(precision):
        generator, discriminator = _module(arch).build(
            height=height, width=width, c_dim=c_dim, z_dim=z_dim, gf_dim=gf_dim, df_dim=df_dim,
            hidden_dim=hidden_dim, g_leaky=g_leaky, d_dropout=d_dropout, d_minibatch_std=d_minibatch_std,
            d_spectral_norm=d_spectral_norm)
        if not with_discriminator:
            discriminator = None
        for model in (generator, discriminator):
            if model is not None and synchronized_bn:
                synchronize_batch_norm(model)
            if model is not None and not draw_initial_weights:
                _start_at_zero(model)
        # One call on zeros creates every variable (inference mode: batch-norm statistics untouched).
        generator(keras.ops.zeros((1, z_dim)))
        if discriminator is not None:
            discriminator(keras.ops.zeros((1, height, width, c_dim)))
    return generator, discriminator


def _start_at_zero(model: keras.Model) -> None:
    """Makes every initializer of the unbuilt `model`'s layers zeros (layers take their initializers
    when they build, at the first call): no random draws for weights that are overwritten anyway."""
    for layer in model._flatten_layers(include_self=False):
        for name, value in list(vars(layer).items()):
            if name.endswith("_initializer") and isinstance(value, keras.initializers.Initializer):
                setattr(layer, name, keras.initializers.Zeros())


def build_networks(config, synchronized_bn: bool = False, with_discriminator: bool = True,
                   draw_initial_weights: bool = True) -> Tuple[keras.Model, Optional[keras.Model]]:
    """build() for a validated RunConfig whose c_dim and precision are settled (the training run's
    adapter; dcgan_tf/training/precision.py turns --precision auto into the machine's choice)."""
    if config.precision == "auto":
        raise ValueError("build_networks needs a settled precision; resolve --precision auto first "
                         "(dcgan_tf.training.precision.resolve)")
    precision = config.precision
    return build(config.arch, height=config.output_height, width=config.output_width, c_dim=config.c_dim,
                 z_dim=config.z_dim, gf_dim=config.gf_dim, df_dim=config.df_dim, hidden_dim=config.hidden_dim,
                 g_leaky=config.g_leaky, d_dropout=config.d_dropout, d_minibatch_std=config.d_minibatch_std,
                 d_spectral_norm=config.d_spectral_norm,
                 precision=precision, synchronized_bn=synchronized_bn, with_discriminator=with_discriminator,
                 draw_initial_weights=draw_initial_weights)
