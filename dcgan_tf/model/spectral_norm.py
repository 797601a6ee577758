"""Spectral normalisation of a layer's kernel (Miyato et al. 2018, "Spectral normalization for
generative adversarial networks").

The kernel, seen as a [fan_in, outputs] matrix W, is used as W / sigma, sigma its largest singular
value, which bounds how fast the layer's output can change with its input. sigma is estimated by one
step of the power iteration a call, from the vector u of the step before (a non-trainable weight of
the network, saved with it): over the training's steps the estimate converges, as W changes slowly.
Gradients flow through sigma; u and its partner v are constants to them (as in the paper).
"""

from __future__ import annotations

import keras
from keras import ops

EPSILON = 1e-12


def _unit(vector):
    return vector / ops.maximum(ops.sqrt(ops.sum(ops.square(vector))), EPSILON)


def add_u(layer: keras.layers.Layer, name: str, outputs: int):
    """The power iteration's vector u [1, outputs] for a kernel of `outputs` columns, a non-trainable
    weight of `layer` (random start, as the paper's)."""
    return layer.add_weight(shape=(1, outputs), initializer=keras.initializers.RandomNormal(stddev=1.0),
                            trainable=False, name=name)


def normalized(kernel, u, training: bool):
    """`kernel` (any shape, outputs last) divided by its estimated largest singular value, in the
    kernel's dtype (the estimate in float32). In training u moves to the new estimate; in inference
    it is only read, so inference never changes the network."""
    weights = ops.cast(kernel, "float32")
    matrix = ops.reshape(weights, (-1, kernel.shape[-1]))
    v = ops.stop_gradient(_unit(ops.matmul(u, ops.transpose(matrix))))  # [1, fan_in]
    u_next = ops.stop_gradient(_unit(ops.matmul(v, matrix)))  # [1, outputs]
    sigma = ops.sum(ops.matmul(v, matrix) * u_next)
    if training:
        u.assign(u_next)
    return ops.cast(weights / sigma, kernel.dtype)
