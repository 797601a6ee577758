"""FID and KID maths on small random feature arrays, checked against direct numpy computations."""

import numpy as np
import pytest

from dcgan_tf.errors import UserError
from dcgan_tf.quality.metrics import (feature_statistics, fid_from_features, frechet_distance,
                              kid_from_features)


def _features(n, d, seed, shift=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)  # correlated dimensions
    return rng.normal(size=(n, d)) @ mixing * scale + shift


def _fid_by_eigen(f1, f2):
    """tr((S1 S2)^(1/2)) as tr((S1^(1/2) S2 S1^(1/2))^(1/2)), both symmetric: eigenvalues only."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    w, v = np.linalg.eigh(s1)
    s1_half = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(s1_half @ s2 @ s1_half)
    return ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(inner, 0, None)).sum()


def _kid_by_loops(x, y):
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, one pair at a time."""
    m, d = len(x), x.shape[1]
    k = lambda a, b: (float(np.dot(a, b)) / d + 1.0) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return (xx + yy) / (m * (m - 1)) - 2 * xy / (m * m)


def test_statistics_are_mean_and_unbiased_covariance():
    f = _features(30, 4, seed=0)
    mu, sigma = feature_statistics(f)
    centred = f - f.mean(0)
    np.testing.assert_allclose(mu, f.sum(0) / 30)
    np.testing.assert_allclose(sigma, centred.T @ centred / 29)


def test_fid_of_a_set_with_itself_is_zero():
    f = _features(200, 16, seed=1)
    fid = fid_from_features(f, f)
    assert abs(fid) < 1e-9 * np.trace(np.cov(f, rowvar=False))


@pytest.mark.parametrize("n", [300, 10])  # 10 < 16 dimensions: singular covariances
def test_fid_matches_eigendecomposition(n):
    f1 = _features(n, 16, seed=2)
    f2 = _features(n, 16, seed=3, shift=0.3, scale=1.5)
    expected = _fid_by_eigen(f1, f2)
    assert expected > 1.0
    assert fid_from_features(f1, f2) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_of_diagonal_gaussians_has_its_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_retries_with_eps_on_the_diagonals_when_the_root_is_not_finite(monkeypatch):
    import scipy.linalg

    from dcgan_tf.quality import metrics

    real_sqrtm, seen = scipy.linalg.sqrtm, []

    def flaky_sqrtm(matrix):  # fails like scipy does on a numerically singular product
        seen.append(matrix.copy())
        return np.full_like(matrix, np.inf) if len(seen) == 1 else real_sqrtm(matrix)

    monkeypatch.setattr(metrics.scipy.linalg, "sqrtm", flaky_sqrtm)
    var1, var2 = np.array([1.0, 4.0]), np.array([9.0, 1.0])
    fid = metrics.frechet_distance(np.zeros(2), np.diag(var1), np.zeros(2), np.diag(var2), eps=1e-2)
    np.testing.assert_allclose(seen[1], np.diag((var1 + 1e-2) * (var2 + 1e-2)))
    expected = var1.sum() + var2.sum() - 2 * np.sqrt((var1 + 1e-2) * (var2 + 1e-2)).sum()
    assert fid == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_refuses_a_complex_square_root_and_mismatched_shapes():
    # S1 S2 = -I has no real square root: not rounding noise, so it is an error.
    with pytest.raises(UserError) as err:
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), -np.eye(3))
    assert "imaginary" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError, match="do not match"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(UserError, match="at least 2"):
        fid_from_features(np.ones((1, 3)), np.ones((5, 3)))


def test_kid_of_whole_sets_matches_double_loop_and_has_no_spread():
    x, y = _features(7, 3, seed=4), _features(7, 3, seed=5, shift=0.5)
    mean, std = kid_from_features(x, y, num_subsets=4, max_subset_size=50)
    # Every subset is the whole of both sets (7 < 50), only reordered: the same MMD each time.
    assert mean == pytest.approx(_kid_by_loops(x, y), rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_kid_subsets_are_clipped_to_the_smaller_set_and_drawn_from_the_seed():
    x, y = _features(12, 3, seed=6), _features(9, 3, seed=7, shift=0.5)
    for max_size, size in ((100, 9), (4, 4)):
        mean, std = kid_from_features(x, y, num_subsets=5, max_subset_size=max_size, seed=3)
        rng = np.random.default_rng(3)
        values = []
        for _ in range(5):
            xi = rng.choice(12, size, replace=False)
            yi = rng.choice(9, size, replace=False)
            values.append(_kid_by_loops(x[xi], y[yi]))
        assert mean == pytest.approx(np.mean(values), rel=1e-10)
        assert std == pytest.approx(np.std(values), rel=1e-8)
        assert std > 0


def test_kid_is_near_zero_for_one_distribution_and_positive_for_a_shifted_one():
    a, b = _features(400, 8, seed=8), _features(400, 8, seed=9)
    same = np.random.default_rng(10).permutation(np.concatenate([a, b]))
    shifted = _features(400, 8, seed=11, shift=0.5)
    kid_same, std_same = kid_from_features(same[:400], same[400:], num_subsets=20, max_subset_size=200)
    kid_shift, std_shift = kid_from_features(a, shifted, num_subsets=20, max_subset_size=200)
    assert kid_shift > 10 * std_shift > 0
    assert abs(kid_same) < 3 * std_same + 1e-3 * kid_shift
    assert kid_shift > 50 * abs(kid_same)


def test_kid_refuses_unusable_input():
    with pytest.raises(UserError, match="at least 2"):
        kid_from_features(np.ones((1, 3)), np.ones((5, 3)))
    with pytest.raises(UserError, match="dimensions"):
        kid_from_features(np.ones((4, 3)), np.ones((4, 2)))
