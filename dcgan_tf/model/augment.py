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


def _uniforms(images, count: int, seed):
    """[batch, count] U(0, 1) numbers for this replica's images: one draw for the global batch from the
    random state every replica shares, this replica's rows kept. One draw for all the numbers of a
    call keeps the traced step small (each draw is about twenty graph ops)."""
    batch = tf.shape(images)[0]
    draw = keras.random.uniform((batch * replicas.num_replicas(), count), seed=seed)
    return replicas.replica_slice(draw, batch)


def _per_image(values, images, low: float, high: float):
    """U(0, 1) numbers, one per image, as U(low, high) shaped to broadcast over the image's pixels."""
    return tf.reshape(tf.cast(values * (high - low) + low, images.dtype), [-1, 1, 1, 1])


def _brightness(images, u):
    return images + _per_image(u[0], images, -0.5, 0.5)


def _saturation(images, u):
    mean = tf.reduce_mean(images, axis=-1, keepdims=True)
    return (images - mean) * _per_image(u[0], images, 0.0, 2.0) + mean


def _contrast(images, u):
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    return (images - mean) * _per_image(u[0], images, 0.5, 1.5) + mean


def _color(images, u):
    return _contrast(_saturation(_brightness(images, u[0:1]), u[1:2]), u[2:3])


def _static_size(images, axis: int) -> int:
    size = images.shape[axis]
    if size is None:
        raise ValueError(f"DiffAugment needs images of known height and width, got shape {images.shape}")
    return int(size)


def _integers(values, low: int, high: int):
    """U(0, 1) numbers as integers uniform in [low, high), shaped [batch, 1]."""
    return tf.reshape(tf.cast(values * (high - low), tf.int32) + low, [-1, 1])  # The cast rounds down.


def _shift(images, axis: int, limit: int, values):
    """Moves each image by its own integer offset in [-limit, limit] along `axis` (1: rows, 2:
    columns), filling with zeros. A gather, so gradients flow back to the pixels that moved."""
    size = _static_size(images, axis)
    source = tf.range(size) - _integers(values, -limit, limit + 1)  # output i shows input i - offset
    moved = tf.gather(images, tf.clip_by_value(source, 0, size - 1), axis=axis, batch_dims=1)
    inside = (source >= 0) & (source < size)
    inside = tf.reshape(inside, [-1, size, 1, 1] if axis == 1 else [-1, 1, size, 1])
    return tf.where(inside, moved, tf.zeros_like(moved))


def _translation(images, u, ratio: float = 0.125):
    images = _shift(images, 1, int(_static_size(images, 1) * ratio), u[0])
    return _shift(images, 2, int(_static_size(images, 2) * ratio), u[1])


def _band(images, axis: int, ratio: float, values):
    """Per image, a [batch, size] mask of a run of `ratio * size` indices around a random centre,
    clipped at the edges."""
    size = _static_size(images, axis)
    length = max(1, int(size * ratio))
    start = _integers(values, 0, size) - length // 2
    index = tf.range(size)
    return (index >= start) & (index < start + length)


def _cutout(images, u, ratio: float = 0.5):
    rows, cols = _band(images, 1, ratio, u[0]), _band(images, 2, ratio, u[1])
    hole = (tf.reshape(rows, [-1, _static_size(images, 1), 1, 1])
            & tf.reshape(cols, [-1, 1, _static_size(images, 2), 1]))
    return tf.where(hole, tf.zeros_like(images), images)


# Each augmentation: (how many U(0, 1) numbers it takes per image, the function that applies them).
_OPS = {"brightness": (1, _brightness), "saturation": (1, _saturation), "contrast": (1, _contrast),
        "color": (3, _color), "translation": (2, _translation), "cutout": (2, _cutout)}


def _with_own_draw(name: str, images, seed):
    """The augmentation `name` alone, with numbers of its own drawn from `seed`."""
    count, apply = _OPS[name]
    return apply(images, tf.unstack(_uniforms(images, count, seed), num=count, axis=1))


def brightness(images, seed):
    """Adds U(-0.5, 0.5) to every pixel of an image (one draw per image)."""
    return _with_own_draw("brightness", images, seed)


def saturation(images, seed):
    """Scales each pixel's deviation from its own channel mean by U(0, 2) (one draw per image);
    a no-op on one-channel images, whose pixels equal their channel mean."""
    return _with_own_draw("saturation", images, seed)


def contrast(images, seed):
    """Scales each image's deviation from its mean (over all pixels and channels) by U(0.5, 1.5)."""
    return _with_own_draw("contrast", images, seed)


def color(images, seed):
    """The paper's colour policy: brightness, then saturation, then contrast."""
    return _with_own_draw("color", images, seed)


def translation(images, seed):
    """Shifts each image by whole pixels, up to 1/8 of its height and of its width in each direction,
    drawn per image; the uncovered border is zero."""
    return _with_own_draw("translation", images, seed)


def cutout(images, seed):
    """Zeroes a half-height x half-width rectangle (a quarter of the image at most) centred on a random
    pixel of each image, clipped at the edges."""
    return _with_own_draw("cutout", images, seed)


def diff_augment(images, policy, seed, probability=None):
    """Applies the augmentations named in `policy` (a tuple from parse_diffaug) in order, each with
    fresh random numbers (one draw from `seed` for all of them); an empty policy returns `images`
    itself. With a `probability` (a scalar in [0, 1], e.g. a variable that adapts as training goes),
    each augmentation reaches each image with that probability, drawn per image and augmentation
    (StyleGAN2-ADA's way); without one, every image gets every augmentation."""
    if not policy:
        return images
    for name in policy:
        if name not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {name!r}; expected one of {AUGMENTATIONS}")
    with tf.name_scope("diff_augment"):
        # Each augmentation's numbers, then (with a probability) the number that decides whether it applies.
        chooses = probability is not None
        total = sum(_OPS[name][0] + chooses for name in policy)
        values = tf.unstack(_uniforms(images, total, seed), num=total, axis=1)
        for name in policy:
            count, apply = _OPS[name]
            augmented = apply(images, values[:count])
            if chooses:
                chosen = values[count] < tf.cast(probability, values[count].dtype)
                images = tf.where(tf.reshape(chosen, [-1, 1, 1, 1]), augmented, images)
            else:
                images = augmented
            values = values[count + chooses:]
    return images
