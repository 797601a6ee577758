"""FID and KID from Inception features (numpy and scipy only).

FID (Frechet Inception Distance) is the Frechet distance between two Gaussians fitted to the
features: |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)). KID (Kernel Inception Distance) is the
unbiased squared MMD with the kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets; unlike
FID it has no bias from the sample size, so it suits the few hundred images of a small dataset.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

from dcgan_tf.errors import UserError

# Added to both covariance diagonals when their product's square root is not finite (singular
# covariances, e.g. fewer images than feature dimensions).
SQRTM_EPS = 1e-6
# Largest imaginary part on the square root's diagonal that is still rounding noise.
MAX_IMAGINARY = 1e-3


def _features_2d(features, what: str) -> np.ndarray:
    features = np.asarray(features, np.float64)
    if features.ndim != 2:
        raise UserError(f"{what} must be a (count, dimensions) array, got shape {features.shape}")
    return features


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of (N, d) features; the covariance is unbiased (N - 1), as in the
    reference FID code."""
    features = _features_2d(features, "features")
    if len(features) < 2:
        raise UserError(f"FID needs at least 2 images per set, got {len(features)}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        # A singular product is expected with few images; the caller checks and regularises the result.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        return scipy.linalg.sqrtm(matrix)


def _imaginary_part(matrix: np.ndarray) -> float:
    return float(np.abs(np.diagonal(matrix).imag).max()) if np.iscomplexobj(matrix) else 0.0


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = SQRTM_EPS) -> float:
    """The Frechet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise UserError(f"FID statistics do not match: means {mu1.shape} and {mu2.shape}, covariances "
                        f"{sigma1.shape} and {sigma2.shape}")
    covmean = _sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all() or _imaginary_part(covmean) > MAX_IMAGINARY:
        # Fewer images than feature dimensions make the covariances singular: regularise, as is standard.
        offset = np.eye(len(mu1)) * eps
        covmean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        largest = np.abs(np.diagonal(covmean).imag).max()
        if largest > MAX_IMAGINARY:
            raise UserError(f"FID's matrix square root has an imaginary part of {largest:.3g}: the "
                            f"covariances are too degenerate; use more images")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid_from_features(features1, features2) -> float:
    """FID between two (N, d) feature sets."""
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


def kid_from_features(features1, features2, num_subsets: int = 100, max_subset_size: int = 1000,
                      seed: int = 0) -> tuple[float, float]:
    """(mean, std) over `num_subsets` random subsets of the unbiased MMD^2 with the cubic
    polynomial kernel; each subset draws min(max_subset_size, N1, N2) features from each set
    without replacement."""
    x_all = _features_2d(features1, "features1")
    y_all = _features_2d(features2, "features2")
    if x_all.shape[1] != y_all.shape[1]:
        raise UserError(f"KID feature sets differ in dimensions: {x_all.shape[1]} and {y_all.shape[1]}")
    m = min(max_subset_size, len(x_all), len(y_all))
    if m < 2:
        raise UserError(f"KID needs subsets of at least 2 images, got {m}")
    if num_subsets < 1:
        raise UserError(f"KID needs at least one subset, got {num_subsets}")
    d = x_all.shape[1]
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets)
    for i in range(num_subsets):
        x = x_all[rng.choice(len(x_all), m, replace=False)]
        y = y_all[rng.choice(len(y_all), m, replace=False)]
        k_xx = (x @ x.T / d + 1.0) ** 3
        k_yy = (y @ y.T / d + 1.0) ** 3
        k_xy = (x @ y.T / d + 1.0) ** 3
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        values[i] = within - 2.0 * k_xy.sum() / (m * m)
    return float(values.mean()), float(values.std())
