"""The classic 64x64 DCGAN (its source program's version 1; PyTorch's DCGAN layout), 4x4 kernels.

G: z as a 1x1 map -> transposed conv 8gf to 4x4 (valid), then stride-2 transposed convs 4gf (8x8),
2gf (16x16), gf (32x32), each followed by BN + ReLU, and a last one to c_dim at 64x64 with tanh.
`leaky` (--g_leaky, the source program's version 2) uses LeakyReLU(0.2) instead of ReLU in G.
D: 5 convs: df (32x32), 2df, 4df, 8df (4x4) with LeakyReLU(0.2), batch norm on all but the first
and the last; the last is a 4x4 valid conv to one logit (the source program's sigmoid lives in the loss).
No biases before batch norm, as in the source program's layout.
"""

from __future__ import annotations

import keras
from keras import layers

from dcgan_tf.model import conv

from dcgan_tf.model.nets.simpsons import batch_norm, weight_init

SIZE = 64
KERNEL = 4
NEGATIVE_SLOPE = 0.2


def check_shape(height: int, width: int, c_dim: int):
    """Why this architecture cannot make height x width x c_dim images (a message), or None
    (c_dim 0: not known yet, taken from the data)."""
    if (height, width) != (SIZE, SIZE) or c_dim not in (0, 1, 3):
        return (f"the classic architecture makes only {SIZE}x{SIZE} images with 1 or 3 channels, not "
                f"{height}x{width} with --c_dim {c_dim}; use --output_height {SIZE} without --output_width, "
                f"or another --arch.")
    return None


def build(*, c_dim: int, z_dim: int, gf_dim: int, df_dim: int, g_leaky: bool = False, **_):
    """(generator, discriminator), not yet built."""
    return (Generator(c_dim=c_dim, gf_dim=gf_dim, z_dim=z_dim, leaky=g_leaky, name="generator"),
            Discriminator(df_dim=df_dim, name="discriminator"))


@keras.saving.register_keras_serializable(package="dcgan_tf", name="classic.Generator")
class Generator(keras.Model):
    """z [batch, z_dim] -> images [batch, 64, 64, c_dim] in [-1, 1]."""

    def __init__(self, c_dim=3, gf_dim=64, z_dim=100, leaky=False, **kwargs):
        super().__init__(**kwargs)
        self.c_dim, self.gf_dim, self.z_dim, self.leaky = c_dim, gf_dim, z_dim, leaky
        self.reshape = layers.Reshape((1, 1, z_dim))
        self.g_h0 = conv.Conv2DTranspose(gf_dim * 8, KERNEL, strides=1, padding="valid", use_bias=False,
                                           kernel_initializer=weight_init(), name="g_h0")
        self.g_bn0 = batch_norm("g_bn0")
        for i, mult in enumerate((4, 2, 1), start=1):
            setattr(self, f"g_h{i}", conv.Conv2DTranspose(
                gf_dim * mult, KERNEL, strides=2, padding="same", use_bias=False,
                kernel_initializer=weight_init(), name=f"g_h{i}"))
            setattr(self, f"g_bn{i}", batch_norm(f"g_bn{i}"))
        self.g_h4 = conv.Conv2DTranspose(c_dim, KERNEL, strides=2, padding="same", use_bias=False,
                                           kernel_initializer=weight_init(), name="g_h4")

    def _act(self, x):
        return keras.ops.leaky_relu(x, negative_slope=NEGATIVE_SLOPE) if self.leaky else keras.ops.relu(x)

    def call(self, z, training=False):
        x = self.reshape(z)
        for i in range(4):
            x = self._act(getattr(self, f"g_bn{i}")(getattr(self, f"g_h{i}")(x), training=training))
        return keras.ops.tanh(self.g_h4(x))

    def get_config(self):
        return {**super().get_config(), "c_dim": self.c_dim, "gf_dim": self.gf_dim, "z_dim": self.z_dim,
                "leaky": self.leaky}


@keras.saving.register_keras_serializable(package="dcgan_tf", name="classic.Discriminator")
class Discriminator(keras.Model):
    """images [batch, 64, 64, c_dim] -> one logit per image, [batch, 1]."""

    def __init__(self, df_dim=64, **kwargs):
        super().__init__(**kwargs)
        self.df_dim = df_dim
        for i, mult in enumerate((1, 2, 4, 8)):
            setattr(self, f"d_h{i}_conv", conv.Conv2D(
                df_dim * mult, KERNEL, strides=2, padding="same", use_bias=False,
                kernel_initializer=weight_init(), name=f"d_h{i}_conv"))
            if i:
                setattr(self, f"d_bn{i}", batch_norm(f"d_bn{i}"))
        self.d_h4_conv = conv.Conv2D(1, KERNEL, strides=1, padding="valid", use_bias=False,
                                       kernel_initializer=weight_init(), name="d_h4_conv")
        self.flatten = layers.Flatten()

    def call(self, images, training=False):
        x = keras.ops.leaky_relu(self.d_h0_conv(images), negative_slope=NEGATIVE_SLOPE)
        for i in range(1, 4):
            x = keras.ops.leaky_relu(getattr(self, f"d_bn{i}")(getattr(self, f"d_h{i}_conv")(x), training=training),
                                     negative_slope=NEGATIVE_SLOPE)
        return self.flatten(self.d_h4_conv(x))

    def get_config(self):
        return {**super().get_config(), "df_dim": self.df_dim}
