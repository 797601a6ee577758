"""An exponential moving average (EMA) of the generator's weights.

Averaging G's weights over the last few hundred steps smooths out the oscillation of adversarial
training: the averaged generator makes better images than the live one once training has settled, and
it is what grids, sampling, evaluation and export use by default (as in Progressive GAN, StyleGAN and
BigGAN).

Ramp-up: the average's window, 1 / (1 - decay) steps, grows with the steps so far, as
1 + rampup * (1 + step), until it reaches the asked decay's. Early on it is short, so the average
follows the live weights instead of keeping the random start for thousands of steps. The default,
0.05, is StyleGAN2-ADA's; 1/9 is the num_updates rule of TensorFlow's ExponentialMovingAverage,
(1 + step) / (10 + step).

Batch norm: the averaged generator's moving mean and variance are not averaged. After each update
the averaged generator runs once in training mode on the step's z, so its batch-norm layers track
the statistics of its own activations (what inference-mode batch norm needs), not those of the live
weights.
"""

from __future__ import annotations

import tensorflow as tf

from dcgan_tf.config import EMA_RAMPUP as DEFAULT_RAMPUP


def decay_at(step, decay: float, rampup: float = DEFAULT_RAMPUP):
    """The decay used for the update after `step` (0, 1, ...) earlier updates, ramped up:
    min(decay, (1 + step) / (1 + step + 1 / rampup))."""
    step = tf.cast(step, tf.float32)
    return tf.minimum(tf.constant(decay, tf.float32), (1.0 + step) / (1.0 + step + 1.0 / rampup))


def move_towards(averages, values, decay) -> None:
    """average <- decay * average + (1 - decay) * value, for each pair."""
    for average, value in zip(averages, values):
        average.assign(average + (1.0 - decay) * (tf.cast(value, average.dtype) - average))


def copy_weights(target, source) -> None:
    """Sets every weight of `target` (trainable and batch-norm statistics) to `source`'s."""
    for t, s in zip(target.weights, source.weights):
        t.assign(s)
