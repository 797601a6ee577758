"""DiffAugment's operations (dcgan_tf/model/augment.py) and the --diffaug flag."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from dcgan_tf.model import augment
from dcgan_tf import cli
from dcgan_tf.errors import UserError

OPS = (augment.brightness, augment.saturation, augment.contrast, augment.translation, augment.cutout)


def _images(shape=(6, 32, 24, 3), seed=0):
    """Pixels in [0.1, 1] (no zeros, so zero-filled pixels can be told apart), non-square."""
    return tf.constant(np.random.default_rng(seed).uniform(0.1, 1.0, size=shape).astype("float32"))


def _apply(op, images, seed=5):
    return op(images, keras.random.SeedGenerator(seed)).numpy()


def _distinct(values):
    return len(np.unique(np.round(values, 5))) > 1


def test_brightness_adds_one_constant_per_image():
    x = _images()
    shift = _apply(augment.brightness, x) - x.numpy()
    per_image = shift.reshape(len(shift), -1)
    np.testing.assert_allclose(per_image, per_image[:, :1].repeat(per_image.shape[1], axis=1), atol=1e-6)
    assert np.all(np.abs(per_image[:, 0]) <= 0.5) and _distinct(per_image[:, 0])


def test_saturation_keeps_each_pixels_channel_mean_and_scales_its_deviation():
    x = _images().numpy()
    y = _apply(augment.saturation, tf.constant(x))
    np.testing.assert_allclose(y.mean(axis=-1), x.mean(axis=-1), atol=1e-5)
    dev_x = (x - x.mean(-1, keepdims=True)).reshape(len(x), -1)
    dev_y = (y - y.mean(-1, keepdims=True)).reshape(len(x), -1)
    factor = (dev_y * dev_x).sum(1) / (dev_x * dev_x).sum(1)  # one factor per image
    np.testing.assert_allclose(dev_y, dev_x * factor[:, None], atol=1e-5)
    assert np.all((factor >= 0) & (factor <= 2)) and _distinct(factor)
    gray = _images((3, 16, 20, 1))
    np.testing.assert_array_equal(_apply(augment.saturation, gray), gray.numpy())  # no-op on one channel


def test_contrast_keeps_each_images_mean_and_scales_its_deviation():
    x = _images().numpy()
    y = _apply(augment.contrast, tf.constant(x))
    np.testing.assert_allclose(y.mean(axis=(1, 2, 3)), x.mean(axis=(1, 2, 3)), atol=1e-5)
    dev_x = (x - x.mean(axis=(1, 2, 3), keepdims=True)).reshape(len(x), -1)
    dev_y = (y - y.mean(axis=(1, 2, 3), keepdims=True)).reshape(len(x), -1)
    factor = (dev_y * dev_x).sum(1) / (dev_x * dev_x).sum(1)
    np.testing.assert_allclose(dev_y, dev_x * factor[:, None], atol=1e-5)
    assert np.all((factor >= 0.5) & (factor <= 1.5)) and _distinct(factor)


def _shifted(image, dy, dx):
    """`image` moved down by dy and right by dx, zero-filled."""
    out = np.zeros_like(image)
    h, w = image.shape[:2]
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        image[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def test_translation_moves_each_image_by_whole_pixels_and_fills_zeros():
    x = _images().numpy()  # 32 x 24: offsets up to 4 rows and 3 columns
    y = _apply(augment.translation, tf.constant(x))
    assert y.shape == x.shape
    offsets = []
    for xi, yi in zip(x, y):
        found = [(dy, dx) for dy in range(-4, 5) for dx in range(-3, 4) if np.array_equal(_shifted(xi, dy, dx), yi)]
        assert len(found) == 1, found
        offsets.append(found[0])
    assert len(set(offsets)) > 1 and any(o != (0, 0) for o in offsets)


def test_cutout_zeroes_one_block_of_at_most_a_quarter_per_image():
    x = _images().numpy()  # 32 x 24: a 16 x 12 block, clipped at the edges
    y = _apply(augment.cutout, tf.constant(x))
    corners = []
    for xi, yi in zip(x, y):
        hole = np.all(yi == 0, axis=-1)
        rows, cols = np.flatnonzero(hole.any(axis=1)), np.flatnonzero(hole.any(axis=0))
        assert hole[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()  # one solid rectangle
        assert hole.sum() == len(rows) * len(cols)
        assert 8 <= len(rows) <= 16 and 6 <= len(cols) <= 12  # at least a quarter of the block remains
        assert 1 / 16 <= hole.mean() <= 1 / 4
        np.testing.assert_array_equal(yi[~hole], xi[~hole])
        corners.append((rows[0], cols[0]))
    assert len(set(corners)) > 1


def test_uniform_numbers_become_integers_uniform_over_their_range():
    # How translation's offsets and cutout's centres are drawn: every integer in [low, high) alike.
    values = tf.constant(np.linspace(0.0, 1.0, 1000, endpoint=False, dtype="float32"))
    got = augment._integers(values, -2, 3).numpy()
    assert got.shape == (1000, 1)
    assert dict(zip(*np.unique(got, return_counts=True))) == {-2: 200, -1: 200, 0: 200, 1: 200, 2: 200}
    assert augment._integers(tf.constant([np.nextafter(1.0, 0.0, dtype=np.float32)]), 0, 64).numpy()[0, 0] == 63


def test_same_seed_state_same_result_and_each_call_draws_afresh():
    x = _images()
    policy = augment.AUGMENTATIONS
    first = augment.diff_augment(x, policy, keras.random.SeedGenerator(9)).numpy()
    seed = keras.random.SeedGenerator(9)
    again = augment.diff_augment(x, policy, seed).numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(augment.diff_augment(x, policy, seed).numpy(), again)


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.__name__)
def test_gradients_reach_the_images_inside_tf_function(op):
    x = _images((4, 32, 24, 3))

    @tf.function
    def step(images, seed):
        with tf.GradientTape() as tape:
            tape.watch(images)
            out = op(images, seed)
            loss = tf.reduce_sum(out * out)
        return out, tape.gradient(loss, images)

    out, grad = step(x, keras.random.SeedGenerator(3))
    assert grad is not None and np.mean(grad.numpy() != 0) > 0.5
    # The compiled graph draws the same numbers as eager code from the same seed state.
    np.testing.assert_allclose(out.numpy(), _apply(op, x, seed=3), atol=1e-6)


def test_grayscale_and_non_square_images_keep_their_shape():
    for shape in ((2, 20, 28, 1), (2, 28, 20, 3)):
        out = augment.diff_augment(_images(shape), augment.AUGMENTATIONS, keras.random.SeedGenerator(1))
        assert out.shape == shape and np.all(np.isfinite(out.numpy()))


def test_empty_policy_returns_the_images_themselves():
    x = _images()
    assert augment.diff_augment(x, (), keras.random.SeedGenerator(1)) is x


def test_probability_decides_per_image_whether_an_augmentation_applies():
    x = _images(shape=(400, 8, 8, 3))
    seed = keras.random.SeedGenerator(2)

    def cut(probability):
        out = augment.diff_augment(x, ("cutout",), seed, probability=tf.constant(probability)).numpy()
        return np.any(out == 0.0, axis=(1, 2, 3))  # Which images have a hole.

    assert not cut(0.0).any()  # Probability 0: the images untouched.
    assert cut(1.0).all()
    share = cut(0.3).mean()  # Drawn per image: about 30% of 400 (+-4 standard deviations).
    assert 0.3 - 4 * 0.023 < share < 0.3 + 4 * 0.023
    # Each augmentation of a policy draws for itself: with two, the images that got one and not the
    # other are there too.
    both = augment.diff_augment(x, ("translation", "cutout"), seed, probability=tf.constant(0.5)).numpy()
    assert 0 < np.mean(np.all(both == x.numpy(), axis=(1, 2, 3))) < 0.5


def test_parse_diffaug():
    assert augment.parse_diffaug("color,translation,cutout") == ("color", "translation", "cutout")
    assert augment.parse_diffaug(" cutout , Color ") == ("cutout", "color")
    assert augment.parse_diffaug("") == () and augment.parse_diffaug(" ") == ()
    with pytest.raises(UserError) as caught:
        augment.parse_diffaug("color,flip")
    message = str(caught.value)
    assert "\n" not in message and "'flip'" in message
    assert all(name in message for name in augment.AUGMENTATIONS)


def test_bad_diffaug_flag_is_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.execute(["main.py", "--train", "--dataset", "faces", "--diffaug", "color,bogus"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("dcgan_tf: error:")]
    assert len(lines) == 1 and "--diffaug" in lines[0] and "'bogus'" in lines[0], err
    assert "Traceback" not in err and not (tmp_path / "checkpoints").exists()
