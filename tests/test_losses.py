import numpy as np
import pytest
import tensorflow as tf

from dcgan_tf import losses


def _bce(labels, logits):
    p = 1 / (1 + np.exp(-logits))
    return float(np.mean(-(labels * np.log(p) + (1 - labels) * np.log(1 - p))))


def test_losses_are_sigmoid_cross_entropy_on_logits():
    real = np.array([[2.0], [-1.0], [0.5]], dtype=np.float32)
    fake = np.array([[-3.0], [0.0], [1.5]], dtype=np.float32)
    d_real, d_fake = losses.discriminator_losses(tf.constant(real), tf.constant(fake))
    assert float(d_real) == pytest.approx(_bce(1.0, real), rel=1e-5)
    assert float(d_fake) == pytest.approx(_bce(0.0, fake), rel=1e-5)
    assert float(losses.generator_loss(tf.constant(fake))) == pytest.approx(_bce(1.0, fake), rel=1e-5)


def test_losses_are_float32_and_stable_for_large_logits():
    logits = tf.constant([[80.0], [-80.0]], dtype=tf.bfloat16)
    value = losses.generator_loss(logits)
    assert value.dtype == tf.float32
    assert float(value) == pytest.approx(40.0, rel=1e-2)  # mean of 0 and 80
