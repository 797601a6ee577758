"""BatchNormalization whose training pass is TensorFlow's fused kernel.

Keras's BatchNormalization builds a training pass from separate moments, scale and shift ops and
their gradients (36 graph ops a layer at the train step's shapes); TensorFlow's FusedBatchNormV3 and
its gradient are one kernel each way. Measured on a 2-core AMD EPYC with AVX512_BF16, forward and
backward of the 64x64 full-width networks' batch-norm shapes at batch 25 (summed over eight shapes,
float32 and bfloat16 alike): 37-39 ms with Keras's ops, 15-16 ms fused. Fewer ops also trace sooner.

Same variables, names and results (to rounding) as keras.layers.BatchNormalization: the batch is
normalised by its own mean and biased variance, and the moving statistics take Keras's update. The
kernel returns the variance with Bessel's correction, which that update does not use, so it is
taken off again. Inference, masks, synchronized batch norm (several replicas) and renormalisation
stay Keras's own code, as does any axis but the last.
"""

from __future__ import annotations

import keras
import tensorflow as tf


class BatchNormalization(keras.layers.BatchNormalization):
    """keras.layers.BatchNormalization with a fused training pass (see the module's docstring)."""

    def call(self, inputs, training=None, mask=None):
        rank = len(inputs.shape)
        fused = (training and self.trainable and mask is None and not self.synchronized and not self.renorm
                 and rank in (2, 4) and self.axis in (-1, rank - 1))
        if not fused:
            return super().call(inputs, training=training, mask=mask)
        x = inputs if inputs.dtype in (tf.float32, tf.bfloat16, tf.float16) else tf.cast(inputs, tf.float32)
        if rank == 2:
            x = x[:, None, None, :]
        channels = x.shape[-1]
        scale = self.gamma if self.scale else tf.ones([channels], tf.float32)
        offset = self.beta if self.center else tf.zeros([channels], tf.float32)
        empty = tf.zeros([0], tf.float32)  # With exponential_avg_factor 1 it takes no running statistics.
        outputs, mean, corrected_variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=tf.cast(scale, tf.float32), offset=tf.cast(offset, tf.float32), mean=empty,
            variance=empty, epsilon=self.epsilon, exponential_avg_factor=1.0, data_format="NHWC",
            is_training=True)
        # The kernel multiplies the variance by n / max(n - 1, 1); Keras averages the biased one.
        if x.shape[:-1].is_fully_defined():  # Known in the train step: fewer graph ops to trace.
            count = x.shape[:-1].num_elements()
            variance = corrected_variance * (max(count - 1, 1) / count)
        else:
            count = tf.cast(tf.size(x), tf.float32) / channels
            variance = corrected_variance * tf.maximum(count - 1.0, 1.0) / count
        # Keras's update, m * momentum + value * (1 - momentum), as one subtraction.
        for moving, value in ((self.moving_mean, mean), (self.moving_variance, variance)):
            moving.assign_sub((moving - value) * (1.0 - self.momentum))
        if rank == 2:
            outputs = outputs[:, 0, 0, :]
        return tf.cast(outputs, self.compute_dtype)
