import numpy as np
import pytest
import tensorflow as tf

from dcgan_tf.model import losses


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


# --------------------------------------------------------------------------------------------------
# D's labels: soft labels and swapping (seeds 001 and 004)
# --------------------------------------------------------------------------------------------------
import keras  # noqa: E402


def test_default_labels_are_exactly_one_and_zero():
    real, fake = losses.discriminator_labels((64, 1))
    assert np.array_equal(real.numpy(), np.ones((64, 1), np.float32))
    assert np.array_equal(fake.numpy(), np.zeros((64, 1), np.float32))


def test_soft_labels_are_drawn_per_sample_inside_their_ranges():
    seed = keras.random.SeedGenerator(7)
    real, fake = losses.discriminator_labels((4000, 1), (0.9, 1.1), (0.0, 0.2), seed=seed)
    real, fake = real.numpy(), fake.numpy()
    assert real.min() >= 0.9 and real.max() <= 1.1 and fake.min() >= 0.0 and fake.max() <= 0.2
    assert real.std() > 0.05 and fake.std() > 0.05  # per sample, not one value for the batch
    assert real.mean() == pytest.approx(1.0, abs=0.01) and fake.mean() == pytest.approx(0.1, abs=0.01)


def test_seed_004_v2_ranges():
    real, fake = losses.discriminator_labels((2000, 1), (0.7, 1.0), (0.0, 0.3), seed=keras.random.SeedGenerator(1))
    assert 0.7 <= real.numpy().min() and real.numpy().max() <= 1.0
    assert 0.0 <= fake.numpy().min() and fake.numpy().max() <= 0.3


def test_label_flip_swaps_the_pair_for_about_that_fraction():
    seed = keras.random.SeedGenerator(3)
    real, fake = losses.discriminator_labels((20000, 1), flip_prob=0.03, seed=seed)
    real, fake = real.numpy(), fake.numpy()
    flipped = real == 0.0
    assert np.array_equal(flipped, fake == 1.0)  # the same samples swapped on both sides
    assert set(np.unique(real)) == {0.0, 1.0}
    assert flipped.mean() == pytest.approx(0.03, abs=0.006)


def test_swap_labels_with_probability_one_and_zero():
    real, fake = tf.fill((5, 1), 0.95), tf.fill((5, 1), 0.1)
    r, f = losses.swap_labels(real, fake, 1.0, seed=keras.random.SeedGenerator(0))
    assert np.allclose(r.numpy(), 0.1) and np.allclose(f.numpy(), 0.95)
    r, f = losses.swap_labels(real, fake, 0.0)
    assert r is real and f is fake


def test_discriminator_losses_use_given_labels():
    real = np.array([[2.0], [-1.0]], dtype=np.float32)
    fake = np.array([[-3.0], [0.5]], dtype=np.float32)
    labels_r = np.array([[0.9], [1.1]], dtype=np.float32)
    labels_f = np.array([[0.2], [0.0]], dtype=np.float32)
    d_real, d_fake = losses.discriminator_losses(tf.constant(real), tf.constant(fake), tf.constant(labels_r),
                                                 tf.constant(labels_f))
    assert float(d_real) == pytest.approx(_bce(labels_r, real), rel=1e-5)
    assert float(d_fake) == pytest.approx(_bce(labels_f, fake), rel=1e-5)


def test_r1_penalty_is_the_mean_squared_gradient_norm():
    # D(x) = sum(w * x) per image: its gradient with respect to each image is w, so R1 is |w|^2.
    w = tf.constant(np.arange(12, dtype="float32").reshape(1, 2, 2, 3) / 10)
    x = tf.random.uniform((5, 2, 2, 3))
    with tf.GradientTape() as tape:
        tape.watch(x)
        logit_sum = tf.reduce_sum(w * x)
    penalty = losses.r1_penalty(tape.gradient(logit_sum, x))
    assert float(penalty) == pytest.approx(float(tf.reduce_sum(w * w)), rel=1e-6)


def test_adaptive_r1_weight_steps_towards_the_side_of_the_target_and_stays_in_0_1():
    def after(weight, d_x, target=0.9, adjust_steps=500):
        return float(losses.adapted_weight(weight, d_x, target, adjust_steps))

    assert after(0.0, 0.95) == pytest.approx(1 / 500)  # D too sure of the real images: weight up.
    assert after(0.5, 0.80) == pytest.approx(0.5 - 1 / 500)  # Below the target: down.
    assert after(0.0, 0.50) == 0.0 and after(1.0, 0.99) == 1.0  # Clipped to [0, 1].
    weight = 0.0
    for _ in range(10):
        weight = after(weight, 0.95, adjust_steps=10)
    assert weight == pytest.approx(1.0)  # adjust_steps steps on one side take it from 0 to 1.


def test_lecam_penalty_is_one_sided_and_squared_against_the_other_sides_anchor():
    real = tf.constant([[2.0], [0.0]])
    fake = tf.constant([[-1.0], [1.0]])
    # Real logits above the fake anchor (-0.5) count: (2.5^2 + 0.5^2) / 2; fake logits below the real
    # anchor (0.5) count: (1.5^2 + 0) / 2.
    expected = (2.5 ** 2 + 0.5 ** 2) / 2 + 1.5 ** 2 / 2
    assert float(losses.lecam_penalty(real, fake, 0.5, -0.5)) == pytest.approx(expected)
    # Reals at or below where the fakes have been and fakes at or above where the reals have been: nothing.
    assert float(losses.lecam_penalty(tf.constant([[-1.0]]), tf.constant([[1.0]]), 0.5, -0.5)) == 0.0


def test_lecam_anchors_move_one_hundredth_of_the_way_to_the_steps_mean_logits():
    anchors = losses.moved_anchors(tf.constant([1.0, -1.0]), 3.0, -5.0)
    np.testing.assert_allclose(anchors.numpy(), [1.0 + 0.01 * 2.0, -1.0 + 0.01 * -4.0], rtol=1e-6)
    anchors = tf.zeros([2])
    for _ in range(1000):
        anchors = losses.moved_anchors(anchors, 2.0, -1.0)
    np.testing.assert_allclose(anchors.numpy(), [2.0, -1.0], rtol=1e-4)


def test_consistency_penalty_is_the_mean_squared_difference_of_the_logits():
    logits = tf.constant([[1.0], [-2.0]])
    assert float(losses.consistency_penalty(logits, tf.constant([[0.0], [1.0]]))) == pytest.approx((1 + 9) / 2)
    assert float(losses.consistency_penalty(logits, logits)) == 0.0
    # bfloat16 logits (mixed precision) give a float32 penalty.
    assert losses.consistency_penalty(tf.cast(logits, tf.bfloat16), logits).dtype == tf.float32


def test_faded_weight_is_full_for_half_the_steps_then_falls_linearly_to_zero():
    weights = [float(losses.faded_weight(0.3, step, 8)) for step in range(11)]
    np.testing.assert_allclose(weights, [0.3] * 5 + [0.225, 0.15, 0.075, 0.0, 0.0, 0.0], rtol=1e-6, atol=1e-9)
    assert float(losses.faded_weight(0.3, 10**6, 0)) == pytest.approx(0.3)  # 0: never faded
    assert float(losses.faded_weight(0.3, tf.constant(6, tf.int64), 8)) == pytest.approx(0.15)


# --------------------------------------------------------------------------------------------------
# Top-k training of G


@pytest.mark.parametrize("epoch, final, expected", [
    (0, 0.5, 25),      # the whole batch at the start
    (1, 0.5, 25),      # 0.99 * 25 = 24.75, rounded up
    (10, 0.5, 23),     # 0.99**10 * 25 = 22.6
    (68, 0.5, 13),     # 0.99**68 = 0.505: 12.6 -> 13
    (500, 0.5, 13),    # the floor: half of 25, rounded up
    (500, 0.01, 1),    # never fewer than one image
    (3, 1.0, 25),      # a final fraction of 1 keeps every image
])
def test_topk_count_shrinks_by_epoch_to_the_final_fraction(epoch, final, expected):
    assert int(losses.topk_count(25, tf.constant(epoch, tf.int64), final)) == expected


def test_best_rated_keeps_the_highest_logits_and_only_their_gradient():
    logits = tf.Variable([[0.5], [-2.0], [3.0], [1.0]], dtype=tf.float32)
    with tf.GradientTape() as tape:
        kept = losses.best_rated(logits, 2)
        loss = losses.generator_loss(kept)
    assert sorted(kept.numpy().ravel().tolist()) == [1.0, 3.0] and kept.shape == (2, 1)
    assert float(loss) == pytest.approx(_bce(1.0, np.array([1.0, 3.0])), rel=1e-5)
    gradient = tape.gradient(loss, logits).numpy().ravel()
    assert gradient[0] == 0 and gradient[1] == 0 and gradient[2] < 0 and gradient[3] < 0
    # bfloat16 logits (mixed precision) come out float32.
    assert losses.best_rated(tf.constant([[1.0], [2.0]], tf.bfloat16), 1).dtype == tf.float32
