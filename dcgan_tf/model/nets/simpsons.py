"""The Simpsons DCGAN: 5 stride-2 layers of 5x5 kernels on each side.

Layer names follow the original program's variable scopes (g_h0_lin, g_bn0, g_h1, ..., d_h0_conv,
d_bn1, ..., d_h5_lin) so that its checkpoints map onto these models one to one.
"""

from __future__ import annotations

import math
from typing import List

import keras
from keras import layers

from dcgan_tf.model import conv
from dcgan_tf.model.batch_norm import BatchNormalization
from dcgan_tf.model import spectral_norm as spectral

NUM_LAYERS = 5  # Stride-2 layers on each side.
KERNEL = 5
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def weight_init():
    return keras.initializers.RandomNormal(stddev=0.02)


def conv_weight_init():
    # The original's conv2d used a truncated normal; everything else a plain normal.
    return keras.initializers.TruncatedNormal(stddev=0.02)


def batch_norm(name: str) -> BatchNormalization:
    return BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def layer_sizes(size: int, num_layers: int = NUM_LAYERS) -> List[int]:
    """[size, ceil(size/2), ceil(size/4), ...]: the spatial size after each stride-2 layer."""
    sizes = [size]
    for _ in range(num_layers):
        sizes.append(math.ceil(sizes[-1] / 2))
    return sizes


def min_output_size(num_layers: int = NUM_LAYERS) -> int:
    return 2 ** num_layers


def check_shape(height: int, width: int, c_dim: int):
    """Why this architecture cannot make height x width x c_dim images (a message), or None."""
    smallest = min_output_size()
    for name, value in (("output_height", height), ("output_width", width)):
        if value < smallest:
            return (f"--{name} {value} is too small for the simpsons architecture: its {NUM_LAYERS} stride-2 "
                    f"layers need at least {smallest} pixels; use --{name} {smallest} or more.")
    return None


def build(*, height: int, width: int, c_dim: int, z_dim: int, gf_dim: int, df_dim: int, d_dropout: float = 0.0,
          d_minibatch_std: bool = False, d_spectral_norm: bool = False, **_):
    """(generator, discriminator), not yet built."""
    return (Generator(output_height=height, output_width=width, c_dim=c_dim, gf_dim=gf_dim, z_dim=z_dim,
                      name="generator"),
            Discriminator(df_dim=df_dim, dropout=d_dropout, minibatch_std=d_minibatch_std,
                          spectral_norm=d_spectral_norm, name="discriminator"))


@keras.saving.register_keras_serializable(package="dcgan_tf", name="simpsons.Generator")
class Generator(keras.Model):
    """z [batch, z_dim] -> images [batch, H, W, c_dim] in [-1, 1]."""

    def __init__(self, output_height=128, output_width=128, c_dim=3, gf_dim=64, z_dim=100, **kwargs):
        super().__init__(**kwargs)
        self.output_height, self.output_width = output_height, output_width
        self.c_dim, self.gf_dim, self.z_dim = c_dim, gf_dim, z_dim
        hs, ws = layer_sizes(output_height), layer_sizes(output_width)
        top_channels = gf_dim * 2 ** (NUM_LAYERS - 1)
        self.g_h0_lin = layers.Dense(hs[-1] * ws[-1] * top_channels, kernel_initializer=weight_init(),
                                    name="g_h0_lin")
        self.reshape = layers.Reshape((hs[-1], ws[-1], top_channels))
        self.g_bn0 = batch_norm("g_bn0")
        # Layers are plain attributes (not lists) so tf.train.Checkpoint tracks every variable,
        # batch-norm statistics included, under the original's names.
        for i in range(1, NUM_LAYERS + 1):
            last = i == NUM_LAYERS
            out_h, out_w = hs[NUM_LAYERS - i], ws[NUM_LAYERS - i]
            in_h, in_w = hs[NUM_LAYERS - i + 1], ws[NUM_LAYERS - i + 1]
            setattr(self, f"g_h{i}", conv.Conv2DTranspose(
                c_dim if last else gf_dim * 2 ** (NUM_LAYERS - 1 - i), KERNEL, strides=2, padding="same",
                # "same" gives 2*in; one row less reaches the odd sizes that ceil() produced.
                output_padding=(out_h - (2 * in_h - 1), out_w - (2 * in_w - 1)),
                kernel_initializer=weight_init(), name=f"g_h{i}"))
            if not last:
                setattr(self, f"g_bn{i}", batch_norm(f"g_bn{i}"))

    @property
    def deconvs(self):
        return [getattr(self, f"g_h{i}") for i in range(1, NUM_LAYERS + 1)]

    @property
    def bns(self):
        return [getattr(self, f"g_bn{i}") for i in range(1, NUM_LAYERS)]

    def call(self, z, training=False):
        x = self.g_bn0(self.reshape(self.g_h0_lin(z)), training=training)
        x = keras.ops.relu(x)
        for deconv, bn in zip(self.deconvs, self.bns):
            x = keras.ops.relu(bn(deconv(x), training=training))
        return keras.ops.tanh(self.deconvs[-1](x))

    def get_config(self):
        return {**super().get_config(), "output_height": self.output_height,
                "output_width": self.output_width, "c_dim": self.c_dim, "gf_dim": self.gf_dim,
                "z_dim": self.z_dim}


@keras.saving.register_keras_serializable(package="dcgan_tf", name="simpsons.Discriminator")
class Discriminator(keras.Model):
    """images [batch, H, W, c_dim] in [-1, 1] -> one logit per image, [batch, 1]."""

    def __init__(self, df_dim=64, dropout=0.0, minibatch_std=False, spectral_norm=False, **kwargs):
        super().__init__(**kwargs)
        self.df_dim = df_dim
        # ProGAN's minibatch standard deviation: one more channel on the last features, the batch's
        # mean per-feature spread, so D can see a batch of fakes that are too alike (mode collapse).
        self.minibatch_std = bool(minibatch_std)
        # Dropout of the last features in training (keras-io's data-efficient GAN). Keras keeps the
        # seed's state out of D's weights, so the run's checkpoint saves it by name (training/
        # checkpoints.py) and a resumed run draws on. None when off: no state at all.
        self.dropout = float(dropout)
        self.dropout_seed = keras.random.SeedGenerator(name="dropout_seed") if self.dropout else None
        for i in range(NUM_LAYERS):
            setattr(self, f"d_h{i}_conv", conv.Conv2D(
                df_dim * 2 ** i, KERNEL, strides=2, padding="same",
                kernel_initializer=conv_weight_init(), name=f"d_h{i}_conv"))
            if i:
                setattr(self, f"d_bn{i}", batch_norm(f"d_bn{i}"))
        self.flatten = layers.Flatten()
        self.d_h5_lin = layers.Dense(1, kernel_initializer=weight_init(), name="d_h5_lin")
        # Spectral normalisation of every kernel (model/spectral_norm.py): one vector u a layer, named
        # after it (d_h0_conv_u, ..., d_h5_lin_u). Off: no such weights, the original's variables.
        self.spectral_norm = bool(spectral_norm)
        if self.spectral_norm:
            for layer in [*self.convs, self.d_h5_lin]:
                outputs = layer.units if isinstance(layer, layers.Dense) else layer.filters
                setattr(self, f"{layer.name}_u", spectral.add_u(self, f"{layer.name}_u", outputs))

    @property
    def convs(self):
        return [getattr(self, f"d_h{i}_conv") for i in range(NUM_LAYERS)]

    @property
    def bns(self):
        return [getattr(self, f"d_bn{i}") for i in range(1, NUM_LAYERS)]

    def call(self, images, training=False):
        x = keras.ops.leaky_relu(self._apply(self.convs[0], images, training), negative_slope=0.2)
        for layer, bn in zip(self.convs[1:], self.bns):
            x = keras.ops.leaky_relu(bn(self._apply(layer, x, training), training=training), negative_slope=0.2)
        if self.minibatch_std:
            x = with_minibatch_std(x)
        features = self.flatten(x)
        if training and self.dropout_seed is not None:
            features = keras.random.dropout(features, self.dropout, seed=self.dropout_seed)
        return self._apply(self.d_h5_lin, features, training)

    def _apply(self, layer, x, training):
        """layer(x), with its kernel spectrally normalised when D is."""
        if not self.spectral_norm:
            return layer(x)
        if not layer.built:
            layer.build(x.shape)
        kernel = spectral.normalized(layer.kernel, getattr(self, f"{layer.name}_u"), training)
        x, kernel = keras.ops.cast(x, layer.compute_dtype), keras.ops.cast(kernel, layer.compute_dtype)
        outputs = layer.convolution_op(x, kernel) if isinstance(layer, conv.Conv2D) else keras.ops.matmul(x, kernel)
        return keras.ops.add(outputs, keras.ops.cast(layer.bias, layer.compute_dtype))

    def get_config(self):
        return {**super().get_config(), "df_dim": self.df_dim, "dropout": self.dropout,
                "minibatch_std": self.minibatch_std, "spectral_norm": self.spectral_norm}


def with_minibatch_std(features, epsilon: float = 1e-8):
    """features [batch, H, W, C] with a channel C+1 that holds, for every image, the batch's standard
    deviation of each feature averaged over all features (Karras et al. 2018, over the whole batch);
    computed in float32."""
    values = keras.ops.cast(features, "float32")
    spread = keras.ops.mean(keras.ops.sqrt(keras.ops.var(values, axis=0) + epsilon))
    channel = keras.ops.broadcast_to(keras.ops.cast(spread, features.dtype),
                                     keras.ops.shape(features)[:-1] + (1,))
    return keras.ops.concatenate([features, channel], axis=-1)
