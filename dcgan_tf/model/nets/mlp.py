"""The MLP GAN: two hidden dense layers on each side.

G: z -> hidden -> hidden -> H*W*C (tanh), reshaped to an image. D: the flattened image -> hidden ->
hidden -> 1 logit. LeakyReLU(0.2) after every hidden layer. Any image size (its source program used 28x28x1
for MNIST and 128x128x3 for art).
"""

from __future__ import annotations

import keras
from keras import layers

from dcgan_tf.model.nets.simpsons import weight_init

NEGATIVE_SLOPE = 0.2


def check_shape(height: int, width: int, c_dim: int):
    """Any image size and channel count: never a message."""
    return None


def build(*, height: int, width: int, c_dim: int, z_dim: int, hidden_dim: int, **_):
    """(generator, discriminator), not yet built."""
    return (Generator(output_height=height, output_width=width, c_dim=c_dim, hidden_dim=hidden_dim, z_dim=z_dim,
                      name="generator"),
            Discriminator(hidden_dim=hidden_dim, name="discriminator"))


@keras.saving.register_keras_serializable(package="dcgan_tf", name="mlp.Generator")
class Generator(keras.Model):
    """z [batch, z_dim] -> images [batch, H, W, c_dim] in [-1, 1]."""

    def __init__(self, output_height=28, output_width=28, c_dim=1, hidden_dim=256, z_dim=64, **kwargs):
        super().__init__(**kwargs)
        self.output_height, self.output_width, self.c_dim = output_height, output_width, c_dim
        self.hidden_dim, self.z_dim = hidden_dim, z_dim
        self.g_h0_lin = layers.Dense(hidden_dim, kernel_initializer=weight_init(), name="g_h0_lin")
        self.g_h1_lin = layers.Dense(hidden_dim, kernel_initializer=weight_init(), name="g_h1_lin")
        self.g_h2_lin = layers.Dense(output_height * output_width * c_dim, kernel_initializer=weight_init(),
                                     name="g_h2_lin")
        self.reshape = layers.Reshape((output_height, output_width, c_dim))

    def call(self, z, training=False):
        x = keras.ops.leaky_relu(self.g_h0_lin(z), negative_slope=NEGATIVE_SLOPE)
        x = keras.ops.leaky_relu(self.g_h1_lin(x), negative_slope=NEGATIVE_SLOPE)
        return keras.ops.tanh(self.reshape(self.g_h2_lin(x)))

    def get_config(self):
        return {**super().get_config(), "output_height": self.output_height, "output_width": self.output_width,
                "c_dim": self.c_dim, "hidden_dim": self.hidden_dim, "z_dim": self.z_dim}


@keras.saving.register_keras_serializable(package="dcgan_tf", name="mlp.Discriminator")
class Discriminator(keras.Model):
    """images [batch, H, W, c_dim] -> one logit per image, [batch, 1]."""

    def __init__(self, hidden_dim=256, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.flatten = layers.Flatten()
        self.d_h0_lin = layers.Dense(hidden_dim, kernel_initializer=weight_init(), name="d_h0_lin")
        self.d_h1_lin = layers.Dense(hidden_dim, kernel_initializer=weight_init(), name="d_h1_lin")
        self.d_h2_lin = layers.Dense(1, kernel_initializer=weight_init(), name="d_h2_lin")

    def call(self, images, training=False):
        x = keras.ops.leaky_relu(self.d_h0_lin(self.flatten(images)), negative_slope=NEGATIVE_SLOPE)
        x = keras.ops.leaky_relu(self.d_h1_lin(x), negative_slope=NEGATIVE_SLOPE)
        return self.d_h2_lin(x)

    def get_config(self):
        return {**super().get_config(), "hidden_dim": self.hidden_dim}
