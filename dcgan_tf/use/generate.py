"""Images from a trained generator: the newest checkpoint of a run, or an exported SavedModel.

`load_source(config)` gives a `Source` (z -> images) whichever the weights come from; `generate`
writes N images or one grid from it. visualize.py draws its sweeps and walks through the same
`Source`, so every picture command works on checkpoints and SavedModels alike.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, List, Optional

import numpy as np

from dcgan_tf import runs
from dcgan_tf.data import images as imgs
from dcgan_tf.config import Z_DISTRIBUTIONS
from dcgan_tf.data.pipeline import to_pixels
from dcgan_tf.errors import UserError
from dcgan_tf.model.latent import z_numpy

BATCH = 64  # Images per generator call: bounds memory for large N.


@dataclasses.dataclass
class Source:
    """A trained generator seen as a function from z [n, z_dim] to images [n, H, W, C] in [-1, 1]."""

    z_dim: int
    z_dist: str
    name: str  # The run's name: outputs go under <sample_dir>/<name>/ (output_dir).
    origin: str  # Where the weights came from, for messages.
    fn: Callable[[np.ndarray], np.ndarray]
    # The checkpoint's training step (a SavedModel's from its dcgan_tf.json; None for exports that
    # predate it), and whether the weights are G's live ones (--live_weights) rather than their average.
    step: Optional[int] = None
    live: bool = False

    def images(self, z) -> np.ndarray:
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [n, {self.z_dim}], got {z.shape}")
        return np.concatenate([np.asarray(self.fn(z[i:i + BATCH]), dtype=np.float32)
                               for i in range(0, len(z), BATCH)])


def from_generator(generator, z_dim: int, z_dist: str, name: str, origin: str = "generator",
                   step: Optional[int] = None, live: bool = False) -> Source:
    """A Source of a Keras generator (inference mode: batch norm with its moving averages)."""
    from dcgan_tf.model.gan import generated_images

    return Source(z_dim, z_dist, name, origin, lambda z: generated_images(generator, z), step, live)


def resolve_saved_model(path: str) -> str:
    """The SavedModel folder that `--saved_model path` means: the newest version (the highest
    integer-named subfolder holding a SavedModel) when `path` is an export base folder such as
    export/<run> (TensorFlow Serving's layout, runs.export_version_dir), else `path` itself when it
    holds saved_model.pb (a version folder, or an export made before versions). UserError otherwise."""
    versions = runs.export_versions(path)
    if versions:
        return os.path.join(path, str(versions[-1]))
    if os.path.isfile(os.path.join(path, runs.SAVED_MODEL_FILE)):
        return path
    raise UserError(f"--saved_model {path} is not a SavedModel folder (no saved_model.pb, and no version "
                    f"folders holding one); give a folder that --export wrote: export/<run> for its newest "
                    f"version, or a version folder such as export/<run>/<step>.")


def from_saved_model(path: str) -> Source:
    """A Source of a SavedModel written by --export (`path` as resolve_saved_model takes it); its
    dcgan_tf.json says z_dim and z_dist, and the step and weights the pictures are filed under."""
    path = resolve_saved_model(path)
    meta_path = os.path.join(path, runs.EXPORT_METADATA_FILE)
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        z_dim, z_dist = int(meta["z_dim"]), str(meta["z_dist"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"cannot read z_dim and z_dist from {meta_path} ({e}); export the model again "
                        f"with --export.") from None
    if z_dist not in Z_DISTRIBUTIONS or z_dim < 1:
        raise UserError(f"{meta_path} names z_dim {z_dim} and z_dist {z_dist!r}, which this version "
                        f"cannot draw; export the model again with --export.")
    import tensorflow as tf

    try:
        serve = tf.saved_model.load(path).signatures["serving_default"]
    except Exception as e:  # A damaged or foreign SavedModel fails in many ways; all mean "not usable".
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise UserError(f"--saved_model {path} cannot be loaded as a generator ({first}); give a folder "
                        f"that --export wrote, e.g. export/<run>.") from None
    name = meta.get("run_name") or _run_folder_name(path)
    step = meta.get("step")
    step = step if isinstance(step, int) and not isinstance(step, bool) and step >= 0 else None
    return Source(z_dim, z_dist, str(name), path, lambda z: serve(z=tf.constant(z))["images"].numpy(),
                  step, meta.get("weights") == "live")


def _run_folder_name(path: str) -> str:
    """The run's folder of an export without a run name in its dcgan_tf.json: `path` less its
    version and live/ parts."""
    parts = os.path.normpath(os.path.abspath(path)).split(os.sep)
    while len(parts) > 1 and (runs.VERSION_PATTERN.fullmatch(parts[-1]) or parts[-1] == runs.LIVE_FOLDER):
        parts.pop()
    return parts[-1]


def load_source(config, run=None) -> Source:
    """The Source that `config` names: --saved_model when given, else `run` (a build.Run) when given,
    else the newest checkpoint of the run the flags name."""
    if config.saved_model:
        return from_saved_model(config.saved_model)
    if run is None:
        from dcgan_tf.training import build

        run = build.load_trained(config)
    return from_generator(run.model.sampler(config.live_weights), run.config.z_dim, run.config.z_dist, run.config.run,
                          run.resumed_from or f"the model of run {run.config.run}", int(run.model.step.numpy()),
                          live=config.live_weights)


def output_dir(sample_dir: str, source: Source) -> str:
    """The picture folder of `source` (runs.picture_dir): one per checkpoint step, `live/` in it for
    G's live weights (--live_weights, or an export of them); a SavedModel of the same checkpoint
    writes where the checkpoint does."""
    return runs.picture_dir(sample_dir, source.name, source.step, live=source.live and source.step is not None)


def generate(source: Source, count: int, folder: str, seed: int, grid: bool = False) -> List[str]:
    """Writes `count` images of z drawn with `seed`: one PNG each in `{folder}/generate_s{seed}/`,
    or (`grid`) one grid `{folder}/generate_s{seed}_n{count}.png`. Returns the paths written.

    The same seed gives the same images, and the first images of a larger count are those of a
    smaller one.
    """
    if count < 1:
        raise UserError(f"--generate must be 1 or more images, got {count}.")
    z = z_numpy(count, source.z_dim, source.z_dist, seed=seed)
    if grid:
        return [imgs.save_grid(source.images(z), os.path.join(folder, f"generate_s{seed}_n{count}.png"))]
    target = os.path.join(folder, f"generate_s{seed}")
    paths = []
    for start in range(0, count, BATCH):
        for i, picture in enumerate(to_pixels(source.images(z[start:start + BATCH])), start):
            paths.append(imgs.save_png(picture, os.path.join(target, f"{i:04d}.png")))
    return paths
