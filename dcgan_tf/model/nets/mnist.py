"""The small 28x28x1 DCGAN (its source program follows TensorFlow's DCGAN tutorial), 5x5 kernels, LeakyReLU.

D (the source program's table): conv 64 at 28x28, conv 128 at 14x14, flatten, dense 512, dense to one logit.
G (the source program's table): dense to 7x7x256, transposed convs to 128 at 14x14 and 64 at 28x28, then a
stride-1 transposed conv to 1 channel with tanh. Batch norm after G's dense and transposed convs, as
in the tutorial the source program is based on (the source program's table does not list normalisation). Widths scale
with gf_dim / df_dim (64 = the source program's).
"""

from __future__ import annotations

import keras
from keras import layers

from dcgan_tf.model import conv

from dcgan_tf.model.nets.simpsons import batch_norm, weight_init

SIZE = 28
KERNEL = 5
NEGATIVE_SLOPE = 0.2


def check_shape(height: int, width: int, c_dim: int):
    """Why this architecture cannot make height x width x c_dim images (a message), or None."""
    if (height, width) != (SIZE, SIZE) or c_dim != 1:
        return (f"the mnist architecture makes only {SIZE}x{SIZE} images with 1 channel, not "
                f"{height}x{width} with --c_dim {c_dim}; use --output_height {SIZE} without --output_width "
                f"and --c_dim 1.")
    return None


def build(*, c_dim: int, z_dim: int, gf_dim: int, df_dim: int, hidden_dim: int, **_):
    """(generator, discriminator), not yet built."""
    return (Generator(c_dim=c_dim, gf_dim=gf_dim, z_dim=z_dim, name="generator"),
            Discriminator(df_dim=df_dim, hidden_dim=hidden_dim, name="discriminator"))


def _lrelu(x):
    return keras.ops.leaky_relu(x, negative_slope=NEGATIVE_SLOPE)


@keras.saving.register_keras_serializable(package="dcgan_tf", name="mnist.Generator")
class Generator(keras.Model):
    """z [batch, z_dim] -> images [batch, 28, 28, c_dim] in [-1, 1]."""

    def __init__(self, c_dim=1, gf_dim=64, z_dim=100, **kwargs):
        super().__init__(**kwargs)
        self.c_dim, self.gf_dim, self.z_dim = c_dim, gf_dim, z_dim
        self.g_h0_lin = layers.Dense(7 * 7 * gf_dim * 4, kernel_initializer=weight_init(), name="g_h0_lin")
        self.reshape = layers.Reshape((7, 7, gf_dim * 4))
        self.g_bn0 = batch_norm("g_bn0")
        self.g_h1 = conv.Conv2DTranspose(gf_dim * 2, KERNEL, strides=2, padding="same",
                                           kernel_initializer=weight_init(), name="g_h1")
        self.g_bn1 = batch_norm("g_bn1")
        self.g_h2 = conv.Conv2DTranspose(gf_dim, KERNEL, strides=2, padding="same",
                                           kernel_initializer=weight_init(), name="g_h2")
        self.g_bn2 = batch_norm("g_bn2")
        self.g_h3 = conv.Conv2DTranspose(c_dim, KERNEL, strides=1, padding="same",
                                           kernel_initializer=weight_init(), name="g_h3")

    def call(self, z, training=False):
        x = _lrelu(self.g_bn0(self.reshape(self.g_h0_lin(z)), training=training))
        x = _lrelu(self.g_bn1(self.g_h1(x), training=training))
        x = _lrelu(self.g_bn2(self.g_h2(x), training=training))
        return keras.ops.tanh(self.g_h3(x))

    def get_config(self):
        return {**super().get_config(), "c_dim": self.c_dim, "gf_dim": self.gf_dim, "z_dim": self.z_dim}


@keras.saving.register_keras_serializable(package="dcgan_tf", name="mnist.Discriminator")
class Discriminator(keras.Model):
    """images [batch, 28, 28, c_dim] -> one logit per image, [batch, 1]."""

    def __init__(self, df_dim=64, hidden_dim=512, **kwargs):
        super().__init__(**kwargs)
        self.df_dim, self.hidden_dim = df_dim, hidden_dim
        self.d_h0_conv = conv.Conv2D(df_dim, KERNEL, strides=1, padding="same",
                                       kernel_initializer=weight_init(), name="d_h0_conv")
        self.d_h1_conv = conv.Conv2D(df_dim * 2, KERNEL, strides=2, padding="same",
                                       kernel_initializer=weight_init(), name="d_h1_conv")
        self.flatten = layers.Flatten()
        self.d_h2_lin = layers.Dense(hidden_dim, kernel_initializer=weight_init(), name="d_h2_lin")
        self.d_h3_lin = layers.Dense(1, kernel_initializer=weight_init(), name="d_h3_lin")

    def call(self, images, training=False):
        x = _lrelu(self.d_h0_conv(images))
        x = _lrelu(self.d_h1_conv(x))
        x = _lrelu(self.d_h2_lin(self.flatten(x)))
        return self.d_h3_lin(x)

    def get_config(self):
        return {**super().get_config(), "df_dim": self.df_dim, "hidden_dim": self.hidden_dim}
