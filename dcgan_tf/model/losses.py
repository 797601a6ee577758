"""GAN losses on logits (sigmoid cross-entropy) and the discriminator's labels, as plain functions.

Labels: by default real images are labelled exactly 1 and generated ones exactly 0. The stabilising
tricks of seeds 001 and 004 are soft labels (each image's label drawn from a range, e.g. real
U(0.9, 1.1) and fake U(0, 0.2)) and label swapping (for a fraction of the images, the real and the
fake label trade places).
"""

from __future__ import annotations

import keras
import tensorflow as tf


def sigmoid_cross_entropy(labels, logits):
    """Mean sigmoid cross-entropy; computed in float32 whatever the logits' dtype."""
    logits = tf.cast(logits, tf.float32)
    labels = tf.cast(labels, tf.float32)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


def label_range(shape, low: float, high: float, seed=None):
    """float32 labels of `shape`, each drawn from U(low, high); exactly `low` everywhere when low == high
    (no random numbers drawn then)."""
    if low == high:
        return tf.fill(shape, tf.constant(low, tf.float32))
    return keras.random.uniform(shape, minval=low, maxval=high, dtype="float32", seed=seed)


def swap_labels(real_labels, fake_labels, flip_prob: float, seed=None):
    """(real, fake) labels with the pair of each sample swapped with probability `flip_prob` (one draw
    per sample, shared by the real and the fake label of that index, as the art DCGAN's source program did)."""
    if flip_prob <= 0:
        return real_labels, fake_labels
    flip = keras.random.uniform(tf.shape(real_labels), dtype="float32", seed=seed) < flip_prob
    return tf.where(flip, fake_labels, real_labels), tf.where(flip, real_labels, fake_labels)


def discriminator_labels(shape, real_range=(1.0, 1.0), fake_range=(0.0, 0.0), flip_prob: float = 0.0,
                         seed=None):
    """D's (real_labels, fake_labels), both of `shape` ([batch, 1]): soft labels from the two ranges,
    then swapped per sample with probability `flip_prob`."""
    real = label_range(shape, real_range[0], real_range[1], seed=seed)
    fake = label_range(shape, fake_range[0], fake_range[1], seed=seed)
    return swap_labels(real, fake, flip_prob, seed=seed)


def discriminator_losses(real_logits, fake_logits, real_labels=None, fake_labels=None):
    """(d_loss_real, d_loss_fake): real images labelled 1, generated images labelled 0, unless other
    labels (from discriminator_labels) are given."""
    if real_labels is None:
        real_labels = tf.ones_like(real_logits)
    if fake_labels is None:
        fake_labels = tf.zeros_like(fake_logits)
    return (sigmoid_cross_entropy(real_labels, real_logits),
            sigmoid_cross_entropy(fake_labels, fake_logits))


def generator_loss(fake_logits):
    """The non-saturating generator loss: generated images labelled 1."""
    return sigmoid_cross_entropy(tf.ones_like(fake_logits), fake_logits)


def r1_penalty(input_gradients):
    """R1 (Mescheder et al. 2018): the mean over images of |grad_x D(x)|^2, from the gradients of the real
    logits' sum with respect to the real images D saw; the caller weights it by gamma / 2."""
    squares = tf.square(tf.cast(input_gradients, tf.float32))
    return tf.reduce_mean(tf.reduce_sum(squares, axis=tf.range(1, tf.rank(squares))))


# Steps an adaptive weight (R1's, DiffAugment's probability) takes to go from 0 to 1 (or back) while
# D(x) stays on one side of its target.
ADJUST_STEPS = 500


def adapted_weight(weight, d_x_mean, target: float, adjust_steps: int = ADJUST_STEPS):
    """An adaptive weight after a step (the R1 penalty's, or the probability of DiffAugment's
    augmentations): one 1/adjust_steps up when the batch's mean D(x) was above `target` (D is
    growing sure of the training images, the sign of memorising them that StyleGAN2-ADA steers its
    augmentation by), one down when below, kept in [0, 1]."""
    direction = tf.sign(tf.cast(d_x_mean, tf.float32) - target)
    return tf.clip_by_value(tf.convert_to_tensor(weight, tf.float32) + direction / adjust_steps, 0.0, 1.0)


# Decay of the LeCam anchors: moving averages of D's mean logits over about the last 100 steps.
LECAM_DECAY = 0.99


def lecam_penalty(real_logits, fake_logits, real_anchor, fake_anchor):
    """LeCam (Tseng et al. 2021): E[relu(D(x) - a_fake)^2] + E[relu(a_real - D(G(z)))^2] on logits, where
    a_real and a_fake are moving averages of D's mean logits for real and generated images. It pulls
    D's outputs for the real images towards where the fakes have been, and the fakes' towards where the
    reals have been, so that D cannot grow ever surer of a few training images; the caller weights it."""
    real_logits = tf.cast(real_logits, tf.float32)
    fake_logits = tf.cast(fake_logits, tf.float32)
    return (tf.reduce_mean(tf.square(tf.nn.relu(real_logits - fake_anchor)))
            + tf.reduce_mean(tf.square(tf.nn.relu(real_anchor - fake_logits))))


def moved_anchors(anchors, real_logit_mean, fake_logit_mean, decay: float = LECAM_DECAY):
    """The LeCam anchors [a_real, a_fake] after a step whose mean logits were the given ones."""
    means = tf.stack([tf.cast(real_logit_mean, tf.float32), tf.cast(fake_logit_mean, tf.float32)])
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    return anchors + (1.0 - decay) * (means - anchors)


def consistency_penalty(logits, other_logits):
    """bCR (Zhao et al. 2021): the mean squared difference of D's logits for two augmentations of the
    same images, so that D cannot tell the images apart by what an augmentation changed; the caller
    weights it (10 in the paper, for real and generated images alike)."""
    return tf.reduce_mean(tf.square(tf.cast(logits, tf.float32) - tf.cast(other_logits, tf.float32)))


def faded_weight(weight: float, step, until: int):
    """`weight` at `step` (0, 1, ...) when faded out by step `until`: the full weight for the first
    half of the steps, then falling linearly to 0 at `until`, and 0 after it; `until` 0: the full
    weight at every step."""
    if until <= 0:
        return tf.constant(weight, tf.float32)
    fraction = tf.clip_by_value(2.0 - 2.0 * tf.cast(step, tf.float32) / until, 0.0, 1.0)
    return weight * fraction


# Top-k training's shrink of the kept fraction per epoch (Sinha et al. 2020's gamma).
TOPK_DECAY = 0.99


def topk_count(batch_size, epoch, final_fraction: float, decay: float = TOPK_DECAY):
    """How many of a batch's generated images a top-k G update learns from (Sinha et al. 2020): all
    of them at epoch 0, then the fraction decay**epoch, never below `final_fraction`; at least one."""
    batch = tf.cast(batch_size, tf.float32)
    fraction = tf.maximum(tf.pow(decay, tf.cast(epoch, tf.float32)), final_fraction)
    # Rounded up, less a hair: 0.5 of 26 is 13 even where float32 makes the product 13.000001.
    count = tf.cast(tf.math.ceil(fraction * batch - 1e-4), tf.int32)
    return tf.clip_by_value(count, 1, tf.cast(batch_size, tf.int32))


def best_rated(fake_logits, count):
    """The `count` highest of D's logits for the generated images (float32, shape [count, 1]): the
    images D finds most real, the only ones a top-k G update learns from; the rest get no gradient."""
    flat = tf.reshape(tf.cast(fake_logits, tf.float32), [-1])
    return tf.math.top_k(flat, k=count, sorted=False).values[:, None]
