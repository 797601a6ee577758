"""Built-in datasets (--dataset mnist, --dataset fashion_mnist): the standard IDX or keras .npz files.

Searched, in order: --data_dir/<name>/, the Keras cache (~/.keras/datasets, or $KERAS_HOME/datasets),
Debian's dataset-fashion-mnist location (/usr/share/datasets/fashion-mnist), and only then keras's
own download. The training images come back as uint8 [N, 28, 28, 1], for the same pipeline as image
folders (dcgan_tf.data.pipeline.make_dataset).
"""

from __future__ import annotations

import gzip
import os
import struct
from typing import List, Optional

import numpy as np

from dcgan_tf.errors import UserError

BUILTIN = ("mnist", "fashion_mnist")
IDX_TRAIN_IMAGES = "train-images-idx3-ubyte"
NPZ_FILES = {"mnist": "mnist.npz", "fashion_mnist": "fashion_mnist.npz"}
# The folder names the data is found under in each place (Keras caches Fashion-MNIST in
# "fashion-mnist", Debian installs it in /usr/share/datasets/fashion-mnist).
FOLDER_NAMES = {"mnist": ("mnist",), "fashion_mnist": ("fashion_mnist", "fashion-mnist")}
DEBIAN_DIR = "/usr/share/datasets"


def is_builtin(name: str) -> bool:
    return name.lower().replace("-", "_") in BUILTIN


def _canonical(name: str) -> str:
    return name.lower().replace("-", "_")


def keras_cache_dir() -> str:
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(base, "datasets")


def read_idx_images(path: str) -> np.ndarray:
    """An IDX3 image file (optionally .gz) as uint8 [N, rows, cols, 1]; UserError if it is not one."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            header = f.read(16)
            if len(header) < 16:
                raise ValueError("shorter than an IDX header")
            magic, count, rows, cols = struct.unpack(">IIII", header)
            if magic != 0x00000803:
                raise ValueError(f"magic number {magic:#010x} is not that of IDX3 uint8 images (0x00000803)")
            body = f.read(count * rows * cols + 1)
    except (OSError, EOFError, ValueError, struct.error) as e:
        raise UserError(f"{path} is not a readable IDX image file ({e}); replace it with the original "
                        f"{IDX_TRAIN_IMAGES}.gz.") from None
    if len(body) != count * rows * cols:
        raise UserError(f"{path} holds {len(body)} bytes of pixels, not the {count}x{rows}x{cols} its header "
                        f"says; the file is damaged or cut short: download it again.")
    return np.frombuffer(body, dtype=np.uint8).reshape(count, rows, cols, 1)


def read_npz_images(path: str) -> np.ndarray:
    """x_train of a keras dataset .npz as uint8 [N, rows, cols, 1]."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            images = np.asarray(npz["x_train"])
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise UserError(f"{path} is not a keras dataset .npz with x_train ({e}); replace or remove it.") from None
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] != 1:
        raise UserError(f"{path}: x_train has shape {images.shape}, not [N, 28, 28]; replace or remove it.")
    return images.astype(np.uint8)


def candidate_dirs(name: str, data_dir: str) -> List[str]:
    """Where `name` is looked for, in order."""
    name = _canonical(name)
    dirs = [os.path.join(data_dir, folder) for folder in FOLDER_NAMES[name]]
    dirs.append(keras_cache_dir())
    dirs += [os.path.join(keras_cache_dir(), folder) for folder in FOLDER_NAMES[name]]
    dirs += [os.path.join(DEBIAN_DIR, folder) for folder in FOLDER_NAMES[name]]
    return dirs


def find_files(name: str, data_dir: str) -> Optional[str]:
    """The first IDX train-images file or .npz of `name` in the search order, or None."""
    name = _canonical(name)
    for folder in candidate_dirs(name, data_dir):
        for file_name in (IDX_TRAIN_IMAGES + ".gz", IDX_TRAIN_IMAGES, NPZ_FILES[name]):
            if folder == keras_cache_dir() and file_name != NPZ_FILES[name]:
                continue  # The cache root holds only .npz files; IDX files live in sub-folders.
            path = os.path.join(folder, file_name)
            if os.path.isfile(path):
                return path
    return None


def _download(name: str) -> Optional[np.ndarray]:
    """keras's own download into its cache; None when it cannot (offline)."""
    try:
        import keras

        loader = {"mnist": keras.datasets.mnist, "fashion_mnist": keras.datasets.fashion_mnist}[name]
        (x_train, _), _ = loader.load_data()
    except Exception:  # No network, a proxy, a half-written file: all mean "not this way".
        return None
    return np.asarray(x_train, dtype=np.uint8)[..., None]


def load_builtin(name: str, data_dir: str, download: bool = True, where: Optional[list] = None) -> np.ndarray:
    """The training images of a built-in dataset as uint8 [N, 28, 28, 1]; appends the file they came
    from (or "keras download") to `where` when given."""
    name = _canonical(name)
    path = find_files(name, data_dir)
    if path is not None:
        images = read_npz_images(path) if path.endswith(".npz") else read_idx_images(path)
    else:
        images = _download(name) if download else None
        if images is None:
            raise UserError(
                f"no {name} files found and they cannot be downloaded here; put {IDX_TRAIN_IMAGES}.gz (or "
                f"{NPZ_FILES[name]}) into {os.path.join(data_dir, FOLDER_NAMES[name][0])}"
                + (" or install Debian's dataset-fashion-mnist" if name == "fashion_mnist" else "") + ".")
    if where is not None:
        where.append(path or "keras download")
    if len(images) == 0:
        raise UserError(f"{path} holds no images; replace it with the original file.")
    return images
