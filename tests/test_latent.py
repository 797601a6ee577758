import numpy as np
import pytest

from dcgan_tf.model.latent import z_numpy, slerp, slerp_segments


def _angle(u, v):
    cos = np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v))
    return np.arccos(np.clip(cos, -1.0, 1.0))


@pytest.fixture
def pair():
    rng = np.random.default_rng(3)
    return rng.uniform(-1, 1, 16), rng.uniform(-1, 1, 16)


def test_end_points_are_the_inputs(pair):
    a, b = pair
    np.testing.assert_array_equal(slerp(a, b, 0.0), a)
    np.testing.assert_array_equal(slerp(a, b, 1.0), b)
    path = slerp(a, b, np.linspace(0, 1, 7))
    assert path.shape == (7, 16)
    np.testing.assert_array_equal(path[0], a)
    np.testing.assert_array_equal(path[-1], b)


def test_constant_angular_speed_along_the_great_circle(pair):
    a, b = pair
    path = slerp(a, b, np.linspace(0, 1, 11))
    steps = [_angle(path[i], path[i + 1]) for i in range(10)]
    np.testing.assert_allclose(steps, _angle(a, b) / 10, rtol=1e-6)
    # Every point lies in the plane of a and b: the least-squares fit on [a, b] leaves no residual.
    basis = np.stack([a, b], axis=1)
    coefficients, *_ = np.linalg.lstsq(basis, path.T, rcond=None)
    np.testing.assert_allclose(basis @ coefficients, path.T, atol=1e-9)
    # ... and the angle from a grows linearly: the shorter arc, no detour.
    np.testing.assert_allclose([_angle(a, p) for p in path], np.linspace(0, _angle(a, b), 11), atol=1e-6)


def test_equal_norms_stay_equal_and_other_norms_interpolate(pair):
    a, b = pair
    b_same = b / np.linalg.norm(b) * np.linalg.norm(a)
    ts = np.linspace(0, 1, 9)
    norms = np.linalg.norm(slerp(a, b_same, ts), axis=1)
    np.testing.assert_allclose(norms, np.linalg.norm(a), rtol=1e-9)
    # Linear interpolation would cut the corner: its midpoint is shorter.
    assert np.linalg.norm((a + b_same) / 2) < np.linalg.norm(a) * 0.999
    norms = np.linalg.norm(slerp(a, 3 * b, ts), axis=1)
    np.testing.assert_allclose(norms, (1 - ts) * np.linalg.norm(a) + ts * np.linalg.norm(3 * b), rtol=1e-9)


@pytest.mark.parametrize("b_of_a", [lambda a: 2.5 * a, lambda a: -a, lambda a: np.zeros_like(a)])
def test_parallel_opposite_or_zero_vectors_fall_back_to_linear(pair, b_of_a):
    a = pair[0]
    b = b_of_a(a)
    ts = np.linspace(0, 1, 5)
    result = slerp(a, b, ts)
    assert np.all(np.isfinite(result))
    np.testing.assert_allclose(result, (1 - ts[:, None]) * a + ts[:, None] * b, atol=1e-12)


def test_dtype_and_shape_checks():
    a = np.ones(4, np.float32)
    b = np.array([1, -1, 1, -1], np.float32)
    assert slerp(a, b, 0.5).dtype == np.float32 and slerp(a, b, 0.5).shape == (4,)
    with pytest.raises(ValueError, match="two vectors of one shape"):
        slerp(a, np.ones(5), 0.5)


def test_segments_join_consecutive_keys_and_close_the_loop():
    keys = z_numpy(3, 6, "normal01", seed=2)
    open_path = slerp_segments(keys, 4)
    closed = slerp_segments(keys, 4, closed=True)
    assert open_path.shape == (2, 5, 6) and closed.shape == (3, 5, 6)
    np.testing.assert_allclose(open_path[:, 0], keys[:2])
    np.testing.assert_allclose(open_path[:, -1], keys[1:])
    np.testing.assert_allclose(closed[2, 0], keys[2])
    np.testing.assert_allclose(closed[2, -1], keys[0])


def test_z_numpy_is_repeatable_and_prefix_stable():
    big = z_numpy(10, 5, "uniform_signed", seed=9)
    assert big.dtype == np.float32 and big.min() >= -1 and big.max() <= 1
    np.testing.assert_array_equal(z_numpy(1, 5, "uniform_signed", seed=9), big[:1])
    assert not np.array_equal(z_numpy(10, 5, "uniform_signed", seed=10), big)
    assert abs(z_numpy(4000, 5, "normal01", seed=1).std() - 1) < 0.05
