"""DiffAugment (Zhao et al. 2020): random, differentiable augmentation of every image D sees.

On a few hundred images the discriminator memorises the training set and its loss collapses. Showing
it only augmented images, real and generated alike (in D's update and in G's), keeps it from
memorising them without teaching G to make augmented images, because the augmentation is
differentiable and G's gradients pass through it.

Every function takes NHWC float images in [-1, 1] and a `keras.random.SeedGenerator` (or an int), draws
its parameters per image, and is built from TensorFlow ops, so it runs inside a compiled train step.
Under several replicas the parameters are drawn for the global batch and each replica takes its own
rows (as z is), so the batch is augmented as on one device.
"""

from __future__ import annotations

import keras
import tensorflow as tf

# The policy is parsed with the flags, before TensorFlow is imported: see config.py.
from dcgan_tf.model import replicas
from dcgan_tf.config import AUGMENTATIONS, parse_diffaug

__all__ = ["AUGMENTATIONS", "parse_diffaug", "diff_augment", "brightness", "saturation", "contrast", "color",
           "translation", "cutout"]


def _global_draw(images, draw):
    """`draw(n)` ([n, ...] random values) for this replica's images: drawn for the global batch from the
    random state every replica shares, this replica's rows kept."""
    batch = tf.shape(images)[0]
    return replicas.replica_slice(draw(batch * replicas.num_replicas()), batch)


def _per_image(images, low: float, high: float, seed):
    """One U(low, high) number per image, shaped to broadcast over its pixels."""
    draw = _global_draw(images, lambda n: keras.random.uniform((n, 1, 1, 1), minval=low, maxval=high, seed=seed))
    return tf.cast(draw, images.dtype)


def brightness(images, seed):
    """Adds U(-0.5, 0.5) to every pixel of an image (one draw per image)."""
    return images + _per_image(images, -0.5, 0.5, seed)


def saturation(images, seed):
    """Scales each pixel's deviation from its own channel mean by U(0, 2) (one draw per image);
    a no-op on one-channel images, whose pixels equal their channel mean."""
    mean = tf.reduce_mean(images, axis=-1, keepdims=True)
    return (images - mean) * _per_image(images, 0.0, 2.0, seed) + mean


def contrast(images, seed):
    """Scales each image's deviation from its mean (over all pixels and channels) by U(0.5, 1.5)."""
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    return (images - mean) * _per_image(images, 0.5, 1.5, seed) + mean


def color(images, seed):
    """The paper's colour policy: brightness, then saturation, then contrast."""
    return contrast(saturation(brightness(images, seed), seed), seed)


def _static_size(images, axis: int) -> int:
    size = images.shape[axis]
    if size is None:
        raise ValueError(f"DiffAugment needs images of known height and width, got shape {images.shape}")
    return int(size)


def _shift(images, axis: int, limit: int, seed):
    """Moves each image by its own integer offset in [-limit, limit] along `axis` (1: rows, 2:
    columns), filling with zeros. A gather, so gradients flow back to the pixels that moved."""
    size = _static_size(images, axis)
    offset = _global_draw(images, lambda n: keras.random.randint((n, 1), -limit, limit + 1, seed=seed))
    source = tf.range(size)[tf.newaxis, :] - tf.cast(offset, tf.int32)  # output i shows input i - offset
    moved = tf.gather(images, tf.clip_by_value(source, 0, size - 1), axis=axis, batch_dims=1)
    inside = (source >= 0) & (source < size)
    inside = inside[:, :, tf.newaxis, tf.newaxis] if axis == 1 else inside[:, tf.newaxis, :, tf.newaxis]
    return tf.where(inside, moved, tf.zeros_like(moved))


def translation(images, seed, ratio: float = 0.125):
    """Shifts each image by whole pixels, up to `ratio` (1/8) of its height and of its width in
    each direction, drawn per image; the uncovered border is zero."""
    images = _shift(images, 1, int(_static_size(images, 1) * ratio), seed)
    return _shift(images, 2, int(_static_size(images, 2) * ratio), seed)


def _band(images, axis: int, ratio: float, seed):
    """Per image, a [batch, size] mask of a run of `ratio * size` indices around a random centre,
    clipped at the edges."""
    size = _static_size(images, axis)
    length = max(1, int(size * ratio))
    centre = _global_draw(images, lambda n: keras.random.randint((n, 1), 0, size, seed=seed))
    start = tf.cast(centre, tf.int32) - length // 2
    index = tf.range(size)[tf.newaxis, :]
    return (index >= start) & (index < start + length)


def cutout(images, seed, ratio: float = 0.5):
    """Zeroes a `ratio * height` x `ratio * width` rectangle (half by half: a quarter of the image
    at most) centred on a random pixel of each image, clipped at the edges."""
    rows, cols = _band(images, 1, ratio, seed), _band(images, 2, ratio, seed)
    hole = rows[:, :, tf.newaxis, tf.newaxis] & cols[:, tf.newaxis, :, tf.newaxis]
    return tf.where(hole, tf.zeros_like(images), images)


_OPS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(images, policy, seed, probability=None):
    """Applies the augmentations named in `policy` (a tuple from parse_diffaug) in order, each with
    fresh random draws from `seed`; an empty policy returns `images` itself. With a `probability`
    (a scalar in [0, 1], e.g. a variable that adapts as training goes), each augmentation reaches
    each image with that probability, drawn per image and augmentation (StyleGAN2-ADA's way);
    without one, every image gets every augmentation."""
    if not policy:
        return images
    with tf.name_scope("diff_augment"):
        for name in policy:
            if name not in _OPS:
                raise ValueError(f"unknown augmentation {name!r}; expected one of {AUGMENTATIONS}")
            augmented = _OPS[name](images, seed)
            if probability is None:
                images = augmented
            else:
                chosen = _per_image(images, 0.0, 1.0, seed) < tf.cast(probability, images.dtype)
                images = tf.where(chosen, augmented, images)
    return images
