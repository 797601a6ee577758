"""Sample grids: many images tiled into one picture, written as PNG."""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np
from PIL import Image

from dcgan_tf.data.pipeline import to_pixels
from dcgan_tf.runs import atomic_path


def grid_shape(count: int) -> Tuple[int, int]:
    """(rows, cols) for `count` images: as square as possible, never more cells than a row spare."""
    if count < 1:
        raise ValueError(f"a grid needs at least one image, got {count}")
    rows = max(1, int(math.floor(math.sqrt(count))))
    return rows, int(math.ceil(count / rows))


def make_grid(images) -> np.ndarray:
    """Model outputs [N, H, W, C] in [-1, 1] -> one uint8 picture [rows*H, cols*W, C]; spare cells black."""
    pixels = to_pixels(images)
    count, height, width, channels = pixels.shape
    rows, cols = grid_shape(count)
    grid = np.zeros((rows * height, cols * width, channels), dtype=np.uint8)
    for i in range(count):
        r, c = divmod(i, cols)
        grid[r * height:(r + 1) * height, c * width:(c + 1) * width] = pixels[i]
    return grid


def save_png(picture: np.ndarray, path: str) -> str:
    """Writes a uint8 [H, W, 1 or 3] picture; the file appears whole or not at all."""
    image = Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path


def save_grid(images, path: str) -> str:
    return save_png(make_grid(images), path)
