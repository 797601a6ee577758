"""The latent space: drawing z, and walking between z vectors (slerp)."""

from __future__ import annotations

import keras

from dcgan_tf.config import Z_DISTRIBUTIONS


def z_tensor(batch_size, z_dim: int, z_dist: str, seed=None):
    """z as a tensor of shape [batch_size, z_dim], drawn with keras.random: uniform in [-1, 1]
    ("uniform_signed") or N(0, 1) ("normal01"). For training: it works inside the compiled step.

    `seed` is an int, a keras.random.SeedGenerator (stateful, checkpointable) or None.
    """
    shape = (batch_size, z_dim)
    if z_dist == "uniform_signed":
        return keras.random.uniform(shape, minval=-1.0, maxval=1.0, seed=seed)
    if z_dist == "normal01":
        return keras.random.normal(shape, seed=seed)
    raise ValueError(f"unknown z distribution {z_dist!r}; expected one of {Z_DISTRIBUTIONS}")


def z_numpy(count: int, z_dim: int, z_dist: str, seed=None):
    """z as a NumPy array of shape [count, z_dim], for using a trained model (not for training).

    Rows come one after another from one stream, so the same seed gives the same first rows
    whatever `count` is: image 0 of `--generate 1 --seed 5` is image 0 of `--generate 16 --seed 5`.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    if z_dist == "uniform_signed":
        return rng.uniform(-1.0, 1.0, size=(count, z_dim)).astype("float32")
    if z_dist == "normal01":
        return rng.standard_normal(size=(count, z_dim)).astype("float32")
    raise ValueError(f"unknown z distribution {z_dist!r}; expected one of {Z_DISTRIBUTIONS}")


def slerp(a, b, t, eps: float = 1e-7):
    """Spherical linear interpolation from vector `a` (t = 0) to vector `b` (t = 1).

    The direction turns at constant angular speed in the plane of `a` and `b`, along the shorter
    great-circle arc, while the length goes linearly from |a| to |b| (so vectors of equal length
    stay at that length). Where the direction is undefined (a or b zero, or a and b parallel or
    opposite) it falls back to linear interpolation. `t` is a number (result [z_dim]) or a 1-D
    sequence (result [len(t), z_dim]); the ends are exactly a and b.
    """
    import numpy as np

    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"slerp needs two vectors of one shape, got {a.shape} and {b.shape}")
    out_dtype = np.result_type(a.dtype, b.dtype, np.float32)
    scalar = np.ndim(t) == 0
    ts = np.atleast_1d(np.asarray(t, dtype=np.float64))[:, None]
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norm_a, norm_b = np.linalg.norm(a64), np.linalg.norm(b64)
    linear = (1.0 - ts) * a64 + ts * b64
    if norm_a < eps or norm_b < eps:
        result = linear
    else:
        unit_a, unit_b = a64 / norm_a, b64 / norm_b
        omega = np.arccos(np.clip(np.dot(unit_a, unit_b), -1.0, 1.0))
        sin_omega = np.sin(omega)
        if sin_omega < eps:  # (Anti)parallel: no unique plane to turn in.
            result = linear
        else:
            direction = (np.sin((1.0 - ts) * omega) * unit_a + np.sin(ts * omega) * unit_b) / sin_omega
            result = ((1.0 - ts) * norm_a + ts * norm_b) * direction
    result = np.where(ts == 0.0, a64, np.where(ts == 1.0, b64, result)).astype(out_dtype)
    return result[0] if scalar else result


def slerp_segments(keys, steps: int, closed: bool = False):
    """Slerp between consecutive key vectors: [segments, steps + 1, z_dim], each segment from one key
    to the next with both ends included. `closed` adds the segment from the last key to the first."""
    import numpy as np

    keys = np.asarray(keys)
    if keys.ndim != 2 or len(keys) < 2:
        raise ValueError(f"need at least two key vectors as [count, z_dim], got shape {keys.shape}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    ends = list(range(1, len(keys))) + ([0] if closed else [])
    ts = np.linspace(0.0, 1.0, steps + 1)
    return np.stack([slerp(keys[i - 1], keys[i], ts) for i in ends])  # keys[-1] -> keys[0] when closed
