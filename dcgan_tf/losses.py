"""GAN losses on logits (sigmoid cross-entropy), as plain functions."""

from __future__ import annotations

import tensorflow as tf


def sigmoid_cross_entropy(labels, logits):
    """Mean sigmoid cross-entropy; computed in float32 whatever the logits' dtype."""
    logits = tf.cast(logits, tf.float32)
    labels = tf.cast(labels, tf.float32)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


def discriminator_losses(real_logits, fake_logits):
    """(d_loss_real, d_loss_fake): real images labelled 1, generated images labelled 0."""
    return (sigmoid_cross_entropy(tf.ones_like(real_logits), real_logits),
            sigmoid_cross_entropy(tf.zeros_like(fake_logits), fake_logits))


def generator_loss(fake_logits):
    """The non-saturating generator loss: generated images labelled 1."""
    return sigmoid_cross_entropy(tf.ones_like(fake_logits), fake_logits)
