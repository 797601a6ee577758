"""The optimizers of a run: Adam whose update of each variable is TensorFlow's fused ApplyAdam kernel.

Keras's Adam builds its update from about a dozen element-wise ops per variable. The maths of
TensorFlow's ResourceApplyAdam kernel is the same (m += (g - m)(1 - b1), v += (g^2 - v)(1 - b2),
var -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)), in one op: the train step traces in
less time (three optimizer updates per step, each over every weight), and each step runs fewer
ops. The slots (momentums, velocities) are Keras's own, so checkpoints are the same either way.
Under a strategy with several replicas, and for AMSGrad, the update is Keras's.
"""

from __future__ import annotations

import keras
import tensorflow as tf


class FusedAdam(keras.optimizers.Adam):
    """keras.optimizers.Adam with each variable's update done by one ResourceApplyAdam op. The
    scalars the updates share (beta powers, learning rate, epsilon) are made once per update of all
    the variables, not once per variable: a dozen fewer graph ops a variable (16 -> 4)."""

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # Keras's update of all the variables, once per apply (its per-variable update_step is not used).
        if self.amsgrad or tf.distribute.get_strategy().num_replicas_in_sync > 1:
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        scalars = {}
        for gradient, variable in zip(grads, trainable_variables):
            dtype = tf.as_dtype(variable.dtype)
            if dtype not in scalars:
                scalars[dtype] = self._shared_scalars(dtype, learning_rate)
            self._apply_fused(gradient, variable, scalars[dtype])

    def _shared_scalars(self, dtype, learning_rate) -> dict:
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        return dict(beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
                    lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
                    epsilon=tf.cast(self.epsilon, dtype))

    def _apply_fused(self, gradient, variable, scalars: dict):
        index = self._get_variable_index(variable)
        return tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(self._momentums[index]), v=_handle(self._velocities[index]),
            grad=tf.cast(gradient, scalars["lr"].dtype), **scalars)


def _handle(variable):
    """The resource handle of a Keras variable or a tf.Variable."""
    return (variable.value if isinstance(variable, keras.Variable) else variable).handle


def make_optimizer(learning_rate: float, beta1: float, beta2: float, precision: str) -> keras.optimizers.Optimizer:
    """Adam with the run's settings; under mixed_float16 wrapped for dynamic loss scaling, so small
    float16 gradients do not underflow (bfloat16 has float32's range and needs none)."""
    optimizer = FusedAdam(learning_rate, beta_1=beta1, beta_2=beta2)
    if precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
