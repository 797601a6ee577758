"""Image quality as numbers: FID and KID of a generator against the real images.

Features come from the standard FID Inception-v3 network (inception.py); the maths is in
metrics.py. Evaluations within a run are comparable: the generated images always come from the
same z (drawn from the run's seed), and the real images' features are computed once and kept next
to the run's checkpoints. Every evaluation is appended to `quality.json` in the run's checkpoint
folder, or beside a --saved_model (and, for a run, written to TensorBoard by the caller).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from typing import Callable, Optional

import numpy as np

from dcgan_tf.quality import metrics
from dcgan_tf.data.pipeline import to_pixels
from dcgan_tf.errors import UserError
from dcgan_tf.runs import (BEST_DIR, REAL_FEATURES_FILE, atomic_path, measurements_after_best,
                           patience_spent, update_quality)
from dcgan_tf.model.latent import z_numpy

GENERATE_BATCH = 50

# (images uint8 [n, H, W, C], label: what they are, for progress lines) -> features [n, d]
FeaturesFn = Callable[..., np.ndarray]


def select_real(images: np.ndarray, max_count: int, seed: int) -> np.ndarray:
    """At most `max_count` of the real images, a subset fixed by `seed` (all of them when fewer)."""
    if len(images) <= max_count:
        return images
    rng = np.random.default_rng(seed)
    return images[np.sort(rng.choice(len(images), size=max_count, replace=False))]


def images_digest(images: np.ndarray) -> str:
    """Names a set of uint8 images by content, so cached features are never used for other images."""
    h = hashlib.sha1(str(images.shape).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    return h.hexdigest()


def real_features(features_fn: FeaturesFn, images: np.ndarray, cache_folder: Optional[str] = None) -> np.ndarray:
    """Features of the real images (uint8), read from `cache_folder` when computed there before for
    exactly these images."""
    digest = images_digest(images)
    path = os.path.join(cache_folder, REAL_FEATURES_FILE) if cache_folder else None
    if path and os.path.exists(path):
        try:
            with np.load(path) as cached:
                if str(cached["digest"]) == digest:
                    return cached["features"]
        except (OSError, ValueError, KeyError):
            pass  # A damaged cache is recomputed and replaced.
    features = np.asarray(features_fn(images, label=f"{len(images)} real images"), dtype=np.float64)
    if path:
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, features=features, digest=np.array(digest))
    return features


def generated_pixels(generate_fn: Callable[[np.ndarray], np.ndarray], z: np.ndarray,
                     batch_size: int = GENERATE_BATCH) -> np.ndarray:
    """The generator's images of `z` as uint8 pixels, made in batches."""
    return np.concatenate([to_pixels(np.asarray(generate_fn(z[i:i + batch_size]), dtype=np.float32))
                           for i in range(0, len(z), batch_size)])


@dataclasses.dataclass(frozen=True)
class Evaluator:
    """Measures a generator against fixed real features with a fixed set of z."""

    features_fn: FeaturesFn
    real: np.ndarray  # Features of the real images.
    z: np.ndarray  # The z of the generated images, the same at every evaluation.
    kid_subsets: int = 100

    def evaluate(self, generate_fn: Callable[[np.ndarray], np.ndarray]) -> dict:
        """{fid, kid, kid_std, num_real, num_fake, seconds} of the generator `generate_fn` (z -> images
        in [-1, 1])."""
        started = time.time()
        fake = np.asarray(self.features_fn(generated_pixels(generate_fn, self.z),
                                           label=f"{len(self.z)} generated images"), dtype=np.float64)
        kid, kid_std = metrics.kid_from_features(self.real, fake, num_subsets=self.kid_subsets)
        return {"fid": float(metrics.fid_from_features(self.real, fake)), "kid": float(kid),
                "kid_std": float(kid_std), "num_real": int(len(self.real)), "num_fake": int(len(fake)),
                "seconds": round(time.time() - started, 3)}


def inception_features_fn(weights: str = "", progress: bool = True) -> FeaturesFn:
    """The standard FID network as a features function (one clear error when its weights are missing)."""
    from dcgan_tf.quality import inception

    network = inception.load_fid_network(weights)
    return lambda images, label="": inception.compute_features(network, images, progress=progress, label=label)


def make_evaluator(real_images: np.ndarray, features_fn: FeaturesFn, *, z_dim: int, z_dist: str, samples: int,
                   seed: int, dataset: str = "the dataset", cache_folder: Optional[str] = None) -> Evaluator:
    """An Evaluator for a run: up to `samples` real images (a subset fixed by `seed`) and `samples`
    generated ones from z fixed by `seed`."""
    if len(real_images) < 2:
        raise UserError(f"FID and KID need at least 2 real images; {dataset} has {len(real_images)}.")
    real = real_features(features_fn, select_real(real_images, samples, seed), cache_folder)
    # Its own seed, apart from the training z and the sample grid's z.
    z = z_numpy(samples, z_dim, z_dist, seed=seed + 2)
    return Evaluator(features_fn=features_fn, real=real, z=z)


# ---------------------------------------------------------------------------------------------------
# quality.json (its reading and writing: runs.py)

def append_evaluation(folder: str, record: dict) -> dict:
    """Adds one evaluation to the folder's quality.json; returns the whole record."""
    return update_quality(folder, lambda quality: quality["evaluations"].append(record))


def is_better(value: float, best: Optional[dict], metric: str) -> bool:
    """Lower FID and KID are better; the first finite value always is."""
    if not np.isfinite(value):
        return False
    return best is None or best.get("metric") != metric or value < float(best["value"])


def ended_early(quality: dict, metric: str, patience: int) -> Optional[str]:
    """Why a training with --patience ends, from its quality.json: `patience` or more measurements
    (distinct steps) came after its kept best of `metric`; None while fewer have, or without a best."""
    if not patience_spent(quality, metric, patience):
        return None
    best, since = quality["best"], measurements_after_best(quality)
    return (f"{metric.upper()} has not improved in {since} measurements since step {best['step']} "
            f"({metric.upper()} {best['value']:.4f}, kept as the run's best checkpoint; --from_best uses it)")


def write_summaries(summary_writer, record: dict, step: int) -> None:
    """The record's measurements as scalars eval/fid, eval/kid, ...: one group in TensorBoard, beside
    training's loss/ and probability/ groups (dcgan_tf/training/summaries.py)."""
    import tensorflow as tf

    with summary_writer.as_default(step=step):
        for name in ("fid", "kid", "kid_std", "fid_live", "kid_live", "kid_std_live"):
            if name in record:  # *_live: G's live weights, measured beside their moving average.
                tf.summary.scalar(f"eval/{name}", record[name])
    summary_writer.flush()


def describe(record: dict) -> str:
    live = (f"; live weights FID {record['fid_live']:.2f}, KID {record['kid_live']:.4f}"
            if "kid_live" in record else "")
    return (f"FID {record['fid']:.2f}, KID {record['kid']:.4f} +- {record['kid_std']:.4f}{live} "
            f"({record['num_fake']} generated vs {record['num_real']} real images, {record['seconds']:.0f} s)")


def best_checkpoint(folder: str) -> Optional[str]:
    """The prefix of the run's best checkpoint (kept by --keep_best), or None."""
    import tensorflow as tf

    return tf.train.latest_checkpoint(os.path.join(folder, BEST_DIR))
