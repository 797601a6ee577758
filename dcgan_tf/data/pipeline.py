"""Image folders to training batches.

Files are found recursively by extension, decoded once with Pillow (which copes with grayscale,
RGBA, palette, 16-bit and CMYK files alike), centre-cropped and resized as the original program did,
and kept in memory as uint8 at the output size (decoded once). The tf.data pipeline then draws a
fresh permutation every epoch (fixed by the seed and the epoch number, so resumes are exact), scales
batches to [-1, 1] and prefetches them. Files that cannot be used are skipped and named
in one warning; sizes that differ without --crop, grayscale mixed with colour and images enlarged
more than 2x get one warning line each.
"""

from __future__ import annotations

import collections
import concurrent.futures
import fnmatch
import math
import os
import warnings
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from dcgan_tf.data import download
from dcgan_tf.runs import match_entry
from dcgan_tf.errors import RunWarning, UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


class UnusableImage(Exception):
    """A file that cannot be turned into a training image; the message says why."""


@dataclass(frozen=True)
class ImageSet:
    """Decoded training images and what was skipped on the way."""

    images: np.ndarray  # uint8, [N, H, W, C]
    paths: Tuple[str, ...]
    skipped: Tuple[Tuple[str, str], ...]  # (path, reason)
    source: str = ""  # Where the images came from when not a folder (a built-in dataset's file).


def resolve_dataset_dir(data_dir: str, dataset: str) -> str:
    """The folder of `dataset` under `data_dir`, matching the name case-insensitively."""
    exact = os.path.join(data_dir, dataset)
    found = match_entry(data_dir, dataset)
    if found:
        return os.path.join(data_dir, found)
    if dataset.lower() == download.FOLDER:
        raise UserError(f"dataset folder {exact} does not exist; add --download to fetch the 100 original frames "
                        f"into it, or point --data_dir at a folder that holds {download.FOLDER}/.")
    raise UserError(
        f"dataset folder {exact} does not exist; put the training images in it (see data/README.md) "
        f"or point --data_dir/--dataset at your images.")


def find_image_files(folder: str, pattern: str = "*") -> List[str]:
    """Image files below `folder` (recursively, symlinked folders followed once), sorted."""
    found = []
    seen_dirs = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen_dirs:  # A symlink loop or a second link to the same folder.
            dirs[:] = []
            continue
        seen_dirs.add(real)
        dirs.sort()
        for name in files:
            if name.lower().endswith(IMAGE_EXTENSIONS) and fnmatch.fnmatch(name.lower(), pattern.lower()):
                found.append(os.path.join(root, name))
    return sorted(found)


def centre_crop_box(width: int, height: int, crop_width: int, crop_height: int) -> Tuple[int, int, int, int]:
    """(left, top, right, bottom) of the centred crop, rounded as the original program rounded."""
    top = int(round((height - crop_height) / 2.0))
    left = int(round((width - crop_width) / 2.0))
    return left, top, left + crop_width, top + crop_height


def _to_array(img: Image.Image, c_dim: int) -> np.ndarray:
    """Pixels as uint8 [H, W, c_dim], whatever the file's mode."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # 16-bit and float files: scale the value range to 8 bits instead of clipping it. 16-bit
        # modes span 0..65535; for 32-bit "I"/"F" the range is guessed from the values.
        arr = np.asarray(img, dtype=np.float64)
        sixteen_bit = img.mode.startswith("I;16")
        peak = 65535.0 if sixteen_bit or arr.max(initial=0) > 255 else 255.0
        gray = np.clip(arr * (255.0 / peak), 0, 255).round().astype(np.uint8)
        img = Image.fromarray(gray, mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        # Transparent pixels become white rather than whatever colour they happen to hold.
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    img = img.convert("L" if c_dim == 1 else "RGB")
    arr = np.asarray(img, dtype=np.uint8)
    return arr[..., None] if c_dim == 1 else arr


def _draft_jpeg(img: Image.Image, region: Tuple[int, int], output: Tuple[int, int]) -> float:
    """Lets a large JPEG decode at 1/2, 1/4 or 1/8 scale when the used `region` (width, height)
    still covers the `output` size; keeps memory bounded for huge photos. Returns the scale."""
    if img.format != "JPEG":
        return 1.0
    width, height = img.size
    wanted = (math.ceil(width * output[0] / region[0]), math.ceil(height * output[1] / region[1]))
    if wanted[0] * 2 > width or wanted[1] * 2 > height:
        return 1.0
    img.draft(None, wanted)
    return img.size[0] / width


def load_image(path: str, *, crop: bool, crop_size: Tuple[int, int], output_size: Tuple[int, int],
               c_dim: int) -> np.ndarray:
    """One file as uint8 [out_h, out_w, c_dim]: optional centre crop, then a bilinear resize.

    `crop_size` and `output_size` are (height, width). Raises UnusableImage with the reason.
    """
    out_h, out_w = output_size
    try:
        with Image.open(path) as img:
            img.seek(0)  # First frame of an animation.
            width, height = img.size
            if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
                raise Image.DecompressionBombError(f"{width}x{height}")
            crop_h, crop_w = crop_size if crop else (height, width)
            if width < crop_w or height < crop_h:
                raise UnusableImage(f"{width}x{height} is smaller than the {crop_w}x{crop_h} crop of "
                                     f"--input_height/--input_width")
            scale = _draft_jpeg(img, (crop_w, crop_h), (out_w, out_h))
            img.load()
            if crop:
                img = img.crop(centre_crop_box(img.size[0], img.size[1], max(1, round(crop_w * scale)),
                                               max(1, round(crop_h * scale))))
            arr = _to_array(img, c_dim)
    except UnusableImage:
        raise
    except Image.DecompressionBombError:
        raise UnusableImage("too many pixels to decode safely") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:  # What Pillow raises for bad files.
        raise UnusableImage(str(e) or type(e).__name__) from None
    if arr.shape[:2] != (out_h, out_w):
        mode = "L" if c_dim == 1 else "RGB"
        resized = Image.fromarray(arr[..., 0] if c_dim == 1 else arr, mode=mode).resize(
            (out_w, out_h), Image.Resampling.BILINEAR)
        arr = np.asarray(resized, dtype=np.uint8)
        arr = arr[..., None] if c_dim == 1 else arr
    return arr


def detect_channels(paths: Sequence[str]) -> int:
    """1 if every readable file is grayscale, else 3."""
    for path in paths:
        try:
            with Image.open(path) as img:
                if img.mode not in _GRAY_MODES:
                    return 3
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            continue  # load_image names it in the warning.
    return 1


def _describe(path: str) -> Optional[Tuple[Tuple[int, int], bool]]:
    """((width, height), grayscale) of an image file, from its header (None if it cannot be read)."""
    try:
        with Image.open(path) as img:
            return img.size, img.mode in _GRAY_MODES
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def _mismatch_warnings(described, *, crop: bool, crop_size: Tuple[int, int], output_size: Tuple[int, int],
                       channels_from_data: bool) -> List[str]:
    """One line for each way the used images do not fit together or the output size: sizes or
    aspect ratios that differ without --crop (each image is resized as it is, so differently
    stretched), grayscale mixed with colour, images enlarged more than 2x. `described`: the used
    files as [(path, ((width, height), grayscale))]."""
    out_h, out_w = output_size
    count = len(described)
    lines = []
    if not crop:
        sizes = [size for size, _ in collections.Counter(size for _, (size, _) in described).most_common()]
        if len(sizes) > 1:
            shown = ", ".join(f"{w}x{h}" for w, h in sizes[:3])
            shown += f" and {len(sizes) - 3} more" if len(sizes) > 3 else ""
            stretched = len({round(w / h, 2) for w, h in sizes}) > 1
            lines.append(
                f"the {count} images have {len(sizes)} different sizes ({shown})"
                + (" and aspect ratios" if stretched else "")
                + f"; without --crop each is resized to {out_w}x{out_h} as it is"
                + (", so they are stretched differently" if stretched else "")
                + ". Use --crop (with --input_height/--input_width) to cut the same centre out of each, "
                  "or make the images one size.")
    grays = [path for path, (_, gray) in described if gray]
    if channels_from_data and 0 < len(grays) < count:
        lines.append(
            f"{len(grays)} of the {count} images {'is' if len(grays) == 1 else 'are'} grayscale and the others "
            f"colour (e.g. "
            f"{os.path.basename(grays[0])}); the grayscale ones are trained as gray colour images. Use "
            f"--c_dim 1 to train in grayscale, or remove them.")
    crop_h, crop_w = crop_size
    enlarged = [(path, (crop_w, crop_h) if crop else size) for path, (size, _) in described]
    enlarged = [(path, (w, h)) for path, (w, h) in enlarged if out_w > 2 * w or out_h > 2 * h]
    if enlarged:
        path, (w, h) = enlarged[0]
        lines.append(
            f"{len(enlarged)} of the {count} images {'is' if len(enlarged) == 1 else 'are'} enlarged more than "
            f"2x, from {w}x{h}"
            + (" (the crop)" if crop else f" (e.g. {os.path.basename(path)})")
            + f" to {out_w}x{out_h}, which blurs them. Use larger images"
            + (" or a larger --input_height" if crop else "") + ", or a smaller --output_height.")
    return lines


def load_image_folder(folder: str, *, pattern: str = "*", crop: bool, crop_size: Tuple[int, int],
                      output_size: Tuple[int, int], c_dim: int = 0) -> ImageSet:
    """Decodes every usable image of `folder` (c_dim 0: decided from the files)."""
    if not os.path.isdir(folder):
        raise UserError(f"dataset folder {folder} does not exist; put the training images in it.")
    paths = find_image_files(folder, pattern)
    if not paths:
        raise UserError(
            f"no images matching {pattern!r} ({'/'.join(e[1:] for e in IMAGE_EXTENSIONS)}) in {folder}; "
            f"add images or change --input_fname_pattern.")
    given_c_dim = c_dim
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        c_dim = c_dim or detect_channels(paths)

    def load(path):
        try:
            return load_image(path, crop=crop, crop_size=crop_size, output_size=output_size, c_dim=c_dim), None
        except UnusableImage as e:
            return None, str(e)

    def load_and_describe(path):
        arr, why = load(path)
        return arr, why, (_describe(path) if arr is not None else None)

    workers = min(4, os.cpu_count() or 1)
    with warnings.catch_warnings():  # Over-large files are skipped by load_image, not warned about.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(load_and_describe, paths))
    good = [(p, arr) for p, (arr, _, _) in zip(paths, results) if arr is not None]
    skipped = tuple((p, why) for p, (_, why, _) in zip(paths, results) if why is not None)
    reasons = _by_reason(skipped)
    if skipped:
        warnings.warn(RunWarning(f"skipped {len(skipped)} of {len(paths)} files that cannot be used: "
                                 f"{_describe_skipped(reasons)}"), stacklevel=2)
    if not good:
        why, first = next(iter(reasons.items()))
        why = f"{why}: all of them" if len(first) == len(paths) else f"{len(first)} of them: {why}"
        raise UserError(f"none of the {len(paths)} image files in {folder} could be used ({why}); "
                        f"see the warning above.")
    for message in _mismatch_warnings([(p, info) for p, (_, _, info) in zip(paths, results) if info is not None],
                                      crop=crop, crop_size=crop_size, output_size=output_size,
                                      channels_from_data=not given_c_dim):
        warnings.warn(RunWarning(message), stacklevel=2)
    images = np.stack([arr for _, arr in good])
    return ImageSet(images=images, paths=tuple(p for p, _ in good), skipped=skipped)


def _by_reason(skipped):
    """{why: [paths]} of (path, why) pairs, the most common reason first."""
    groups = {}
    for path, why in skipped:
        groups.setdefault(why, []).append(path)
    return dict(sorted(groups.items(), key=lambda item: -len(item[1])))


def _describe_skipped(reasons, names_shown=3, reasons_shown=5) -> str:
    """The skipped files, grouped by why: a folder of 100 too-small frames is one reason and three
    names, not a hundred times the same words."""
    parts = []
    for why, group in list(reasons.items())[:reasons_shown]:
        if len(group) == 1:
            parts.append(f"{group[0]} ({why})")
            continue
        more = f" and {len(group) - names_shown} more" if len(group) > names_shown else ""
        parts.append(f"{len(group)} files ({why}): {', '.join(group[:names_shown])}{more}")
    rest = sum(len(group) for group in list(reasons.values())[reasons_shown:])
    return "; ".join(parts) + (f"; and {rest} more for other reasons" if rest else "")


def to_model_range(images_uint8):
    """uint8 pixels to floats in [-1, 1], as x / 127.5 - 1."""
    import tensorflow as tf

    return tf.cast(images_uint8, tf.float32) / 127.5 - 1.0


def to_pixels(images) -> np.ndarray:
    """Model output in [-1, 1] back to uint8 pixels, as (x + 1) / 2."""
    arr = np.asarray(images, dtype=np.float32)
    return np.clip(np.round((arr + 1.0) * 127.5), 0, 255).astype(np.uint8)


def check_batch_size(num_images: int, batch_size: int) -> None:
    """Batches are always full, so a batch cannot be larger than the dataset."""
    if batch_size > num_images:
        raise UserError(
            f"--batch_size {batch_size} is larger than the {num_images} usable images; "
            f"use --batch_size {num_images} or fewer, or add images.")


def _epoch_key(seed: int, epoch):
    """The stateless random key of (seed, epoch): what fixes an epoch's draws across resumes."""
    import tensorflow as tf

    return tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])


def epoch_order(num_images: int, seed: int, epoch):
    """The order of the images in `epoch`: a permutation fixed by (seed, epoch), so a resumed run
    sees the same batches as an uninterrupted one."""
    import tensorflow as tf

    return tf.random.experimental.stateless_shuffle(tf.range(num_images), seed=_epoch_key(seed, epoch))


def epoch_mirrors(num_images: int, seed: int, epoch):
    """Which images `epoch` shows mirrored (left-right), each with probability 1/2: fixed by (seed,
    epoch) like the order, and drawn independently of it."""
    import tensorflow as tf

    key = tf.random.experimental.stateless_fold_in(_epoch_key(seed, epoch), 1)  # Another stream than the order's.
    return tf.random.stateless_uniform([num_images], seed=key) < 0.5


def make_dataset(images: np.ndarray, batch_size: int, seed: int, first_epoch: int = 0,
                 last_epoch: Optional[int] = None, mirror: bool = False, skip_batches: int = 0):
    """The training pipeline for epochs [first_epoch, last_epoch) (endless when last_epoch is None),
    without the first `skip_batches` batches of first_epoch (those a resumed run had trained on):
    each epoch is a fresh permutation of all images cut into full batches, scaled to [-1, 1] and
    prefetched. Use with `fit(..., steps_per_epoch=len(images) // batch_size)`. With `mirror` each
    image is flipped left-right in a random half of the epochs (x-flips, which double a small
    dataset of faces as StyleGAN2-ADA's --mirror does; an epoch keeps its length).

    The images are already decoded in memory (the cache), so a batch costs one gather and one scale,
    prefetched while the model trains; batches depend only on (seed, epoch)."""
    import tensorflow as tf

    check_batch_size(len(images), batch_size)
    pixels = tf.constant(images)
    count = len(images)

    def batches_of_epoch(epoch):
        order = epoch_order(count, seed, epoch)
        # Without x-flips the elements are the indices alone, as before the option existed.
        elements = (order, tf.gather(epoch_mirrors(count, seed, epoch), order)) if mirror else order
        return tf.data.Dataset.from_tensor_slices(elements).batch(batch_size, drop_remainder=True)

    def batch_pixels(idx, flips=None):
        batch = tf.gather(pixels, idx)
        if flips is not None:
            batch = tf.where(flips[:, None, None, None], tf.reverse(batch, axis=[2]), batch)
        return to_model_range(batch)

    epochs = tf.data.Dataset.range(first_epoch, last_epoch) if last_epoch is not None else \
        tf.data.Dataset.range(first_epoch, 2**62)
    ds = epochs.flat_map(batches_of_epoch).skip(skip_batches)
    # A batch is one gather and one scale (about a millisecond), so one map call at a time and two
    # batches ahead keep any training fed. No autotuning: its model thread, which sleeps up to a
    # minute between rounds, held the process's exit for 25-60 s after a stop or the end of a long run.
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.map(batch_pixels).prefetch(2).with_options(options)


def steps_per_epoch(num_images: int, batch_size: int) -> int:
    return num_images // batch_size


def fit_images(images: np.ndarray, output_size: Tuple[int, int], c_dim: int = 0) -> np.ndarray:
    """uint8 [N, H, W, C] arrays (e.g. a built-in dataset) brought to `output_size` (bilinear resize,
    as for image files) and to `c_dim` channels (0: keep; gray repeated to RGB, RGB averaged to gray)."""
    images = np.asarray(images, dtype=np.uint8)
    if c_dim == 3 and images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    elif c_dim == 1 and images.shape[-1] == 3:
        images = np.stack([np.asarray(Image.fromarray(img, mode="RGB").convert("L")) for img in images])[..., None]
    out_h, out_w = output_size
    if images.shape[1:3] == (out_h, out_w):
        return images
    gray = images.shape[-1] == 1
    resized = [np.asarray(Image.fromarray(img[..., 0] if gray else img, mode="L" if gray else "RGB").resize(
        (out_w, out_h), Image.Resampling.BILINEAR), dtype=np.uint8) for img in images]
    out = np.stack(resized)
    return out[..., None] if gray else out


# ------------------------------------------------------------------------------------------------
# A dataset by name: an image folder under data_dir, or a built-in dataset (mnist, fashion_mnist).
def _builtin(data_dir: str, dataset: str, pattern: str) -> bool:
    """A built-in dataset's name with no image folder of that name to take precedence."""
    from dcgan_tf.data import datasets

    if not datasets.is_builtin(dataset):
        return False
    try:
        return not find_image_files(resolve_dataset_dir(data_dir, dataset), pattern)
    except UserError:
        return True


def dataset_name(data_dir: str, dataset: str, pattern: str = "*") -> str:
    """The dataset's name as its folder spells it (folders are matched case-insensitively)."""
    if _builtin(data_dir, dataset, pattern):
        return dataset
    return os.path.basename(resolve_dataset_dir(data_dir, dataset))


def load_dataset(data_dir: str, dataset: str, *, pattern: str, crop: bool, crop_size: Tuple[int, int],
                 output_size: Tuple[int, int], c_dim: int) -> ImageSet:
    """The training images of `dataset`, decoded and sized: a folder's images, or a built-in
    dataset's standard files (28x28x1, fetched unless $DCGAN_TF_NO_DOWNLOAD, resized when asked)."""
    if _builtin(data_dir, dataset, pattern):
        from dcgan_tf.data import datasets

        where = []
        pixels = datasets.load_builtin(dataset, data_dir, download=not os.environ.get("DCGAN_TF_NO_DOWNLOAD"),
                                       where=where)
        return ImageSet(images=fit_images(pixels, output_size, c_dim), paths=(), skipped=(), source=where[0])
    return load_image_folder(resolve_dataset_dir(data_dir, dataset), pattern=pattern, crop=crop,
                             crop_size=crop_size, output_size=output_size, c_dim=c_dim)
