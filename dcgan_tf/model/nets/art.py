"""The art DCGAN (its source program is in PyTorch): 4x4 kernels, stride 2, padding 1 ("same"), LeakyReLU(0.2).

D: conv df (no batch norm) + LeakyReLU, then conv + BN + LeakyReLU blocks doubling the filters (held
at 4*df in the middle), the last at 8*df (1024 at the source program's df 128), down to 4x4; then dense to one
logit. G mirrors it: dense z -> 4x4x(8*gf), BN + LeakyReLU, transposed convs halving back to gf,
each with BN + LeakyReLU, then a transposed conv to c_dim with tanh.

The number of stride-2 layers follows the size: log2(size) - 2 (4 at 64x64, 6 at 256x256, where the
filters are the source program's 128, 256, 512, 512, 512, 1024). Square sizes that are powers of two >= 16.
"""

from __future__ import annotations

from typing import List

import keras
from keras import layers

from dcgan_tf.model import conv

from dcgan_tf.model.nets.simpsons import batch_norm, weight_init

KERNEL = 4
NEGATIVE_SLOPE = 0.2


def num_layers(size: int) -> int:
    return size.bit_length() - 3  # log2(size) - 2 for powers of two.


def supports(size: int) -> bool:
    return size >= 16 and size & (size - 1) == 0


def check_shape(height: int, width: int, c_dim: int):
    """Why this architecture cannot make height x width x c_dim images (a message), or None."""
    if height != width or not supports(height):
        return (f"the art architecture makes square images whose size is a power of two of at least 16 "
                f"(e.g. 64 or 256), not {height}x{width}; use --output_height 64 or 256 (and no --output_width).")
    return None


def build(*, height: int, width: int, c_dim: int, z_dim: int, gf_dim: int, df_dim: int, **_):
    """(generator, discriminator), not yet built."""
    return (Generator(output_height=height, output_width=width, c_dim=c_dim, gf_dim=gf_dim, z_dim=z_dim,
                      name="generator"),
            Discriminator(input_size=height, df_dim=df_dim, name="discriminator"))


def d_filters(size: int, df_dim: int) -> List[int]:
    """Filters of D's convs: df, 2df, 4df, 4df, ..., 8df (the source program at df 128: 128 256 512 512 512 1024)."""
    n = num_layers(size)
    return [df_dim * min(2 ** i, 4) for i in range(n - 1)] + [df_dim * 8]


@keras.saving.register_keras_serializable(package="dcgan_tf", name="art.Generator")
class Generator(keras.Model):
    """z [batch, z_dim] -> images [batch, size, size, c_dim] in [-1, 1]."""

    def __init__(self, output_height=64, output_width=64, c_dim=3, gf_dim=128, z_dim=200, **kwargs):
        super().__init__(**kwargs)
        self.output_height, self.output_width = output_height, output_width
        self.c_dim, self.gf_dim, self.z_dim = c_dim, gf_dim, z_dim
        self.num_layers = num_layers(output_height)
        filters = d_filters(output_height, gf_dim)[::-1]  # 8gf, ..., gf
        self.g_h0_lin = layers.Dense(4 * 4 * filters[0], kernel_initializer=weight_init(), name="g_h0_lin")
        self.reshape = layers.Reshape((4, 4, filters[0]))
        self.g_bn0 = batch_norm("g_bn0")
        for i in range(1, self.num_layers + 1):
            last = i == self.num_layers
            setattr(self, f"g_h{i}", conv.Conv2DTranspose(
                c_dim if last else filters[i], KERNEL, strides=2, padding="same",
                kernel_initializer=weight_init(), name=f"g_h{i}"))
            if not last:
                setattr(self, f"g_bn{i}", batch_norm(f"g_bn{i}"))

    @property
    def deconvs(self):
        return [getattr(self, f"g_h{i}") for i in range(1, self.num_layers + 1)]

    @property
    def bns(self):
        return [getattr(self, f"g_bn{i}") for i in range(self.num_layers)]

    def call(self, z, training=False):
        x = self.reshape(self.g_h0_lin(z))
        for bn, deconv in zip(self.bns, self.deconvs):
            x = deconv(keras.ops.leaky_relu(bn(x, training=training), negative_slope=NEGATIVE_SLOPE))
        return keras.ops.tanh(x)

    def get_config(self):
        return {**super().get_config(), "output_height": self.output_height, "output_width": self.output_width,
                "c_dim": self.c_dim, "gf_dim": self.gf_dim, "z_dim": self.z_dim}


@keras.saving.register_keras_serializable(package="dcgan_tf", name="art.Discriminator")
class Discriminator(keras.Model):
    """images [batch, size, size, c_dim] -> one logit per image, [batch, 1]."""

    def __init__(self, input_size=64, df_dim=128, **kwargs):
        super().__init__(**kwargs)
        self.input_size, self.df_dim = input_size, df_dim
        self.num_layers = num_layers(input_size)
        for i, filters in enumerate(d_filters(input_size, df_dim)):
            setattr(self, f"d_h{i}_conv", conv.Conv2D(filters, KERNEL, strides=2, padding="same",
                                                        kernel_initializer=weight_init(), name=f"d_h{i}_conv"))
            if i:
                setattr(self, f"d_bn{i}", batch_norm(f"d_bn{i}"))
        self.flatten = layers.Flatten()
        self.d_out_lin = layers.Dense(1, kernel_initializer=weight_init(), name="d_out_lin")

    @property
    def convs(self):
        return [getattr(self, f"d_h{i}_conv") for i in range(self.num_layers)]

    @property
    def bns(self):
        return [getattr(self, f"d_bn{i}") for i in range(1, self.num_layers)]

    def call(self, images, training=False):
        x = keras.ops.leaky_relu(self.convs[0](images), negative_slope=NEGATIVE_SLOPE)
        for layer, bn in zip(self.convs[1:], self.bns):
            x = keras.ops.leaky_relu(bn(layer(x), training=training), negative_slope=NEGATIVE_SLOPE)
        return self.d_out_lin(self.flatten(x))

    def get_config(self):
        return {**super().get_config(), "input_size": self.input_size, "df_dim": self.df_dim}
