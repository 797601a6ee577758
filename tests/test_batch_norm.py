"""dcgan_tf/model/batch_norm.py: the fused training pass gives Keras's values, gradients (R1's second
order too) and moving statistics, and Keras's own code keeps the cases it does not cover."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from dcgan_tf.model import nets
from dcgan_tf.model.batch_norm import BatchNormalization


def _pair(input_shape, policy="float32", **kwargs):
    """Keras's layer and ours with the same random weights and moving statistics."""
    reference = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, dtype=policy, **kwargs)
    layer = BatchNormalization(momentum=0.9, epsilon=1e-5, dtype=policy, **kwargs)
    reference.build(input_shape)
    layer.build(input_shape)
    rng = np.random.default_rng(3)
    layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.get_weights()])
    reference.set_weights(layer.get_weights())
    return reference, layer


def _training_pass(layer, x):
    """Output, gradients of a non-linear loss (input, gamma, beta), the gradient of the input
    gradient's squared norm with respect to gamma (R1's second order), and the moving statistics."""
    x = tf.constant(x)
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) ** 3)
        input_grad, gamma_grad, beta_grad = inner.gradient(loss, [x, layer.gamma, layer.beta])
        penalty = tf.reduce_sum(input_grad ** 2)
    second_order = outer.gradient(penalty, layer.gamma)
    return [y, input_grad, gamma_grad, beta_grad, second_order, layer.moving_mean, layer.moving_variance]


def _assert_close(theirs, ours, rtol):
    for a, b in zip(theirs, ours):
        a, b = (np.asarray(tf.cast(t, tf.float32)) for t in (a, b))
        np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol * np.abs(a).max())


def _op_types(layer, shape, training):
    function = tf.function(lambda x: layer(x, training=training))
    return {op.type for op in function.get_concrete_function(tf.TensorSpec(shape, tf.float32)).graph.get_operations()}


@pytest.mark.parametrize("shape", [(6, 5, 5, 8), (7, 8)])
@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_the_training_pass_matches_keras(shape, policy):
    reference, layer = _pair(shape, policy)
    x = np.random.default_rng(0).normal(2.0, 3.0, shape).astype("float32")
    ours = _training_pass(layer, x)
    assert ours[0].dtype == reference.compute_dtype
    _assert_close(_training_pass(reference, x), ours, rtol=1e-5)
    assert "FusedBatchNormV3" in _op_types(layer, shape, training=True)


def test_a_batch_of_unknown_size_updates_the_moving_statistics_as_keras():
    shape = (6, 5, 5, 8)
    x = tf.constant(np.random.default_rng(2).normal(2.0, 3.0, shape).astype("float32"))
    reference, layer = _pair(shape)
    for each in (reference, layer):
        traced = tf.function(lambda images, each=each: each(images, training=True))
        traced.get_concrete_function(tf.TensorSpec((None,) + shape[1:], tf.float32))(x)
    _assert_close([reference.moving_mean, reference.moving_variance], [layer.moving_mean, layer.moving_variance],
                  rtol=1e-5)


def test_inference_and_synchronized_batch_norm_stay_keras_own():
    shape = (4, 3, 3, 2)
    reference, layer = _pair(shape)
    x = np.random.default_rng(1).normal(size=shape).astype("float32")
    np.testing.assert_allclose(layer(x, training=False), reference(x, training=False), rtol=1e-6)
    assert "FusedBatchNormV3" not in _op_types(layer, shape, training=False)
    layer.synchronized = True
    assert "FusedBatchNormV3" not in _op_types(layer, shape, training=True)


def test_the_networks_normalise_with_the_fused_layer():
    generator, discriminator = nets.build("simpsons", height=32, width=32, c_dim=3, z_dim=8, gf_dim=4, df_dim=4,
                                          hidden_dim=16)
    norms = [layer for model in (generator, discriminator) for layer in model.layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 9 and all(isinstance(layer, BatchNormalization) for layer in norms)
