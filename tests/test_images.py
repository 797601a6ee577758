"""Sample grids: layout, black spare cells, grayscale, and writing the PNG."""

import os

import numpy as np
import pytest
from PIL import Image

from dcgan_tf.data.images import grid_shape, make_grid, save_grid, save_png


def constant_batch(pixel_values, height=2, width=3, channels=3):
    """Model-range images [N, H, W, C], image i filled with the pixel value pixel_values[i]."""
    model_values = np.asarray(pixel_values, np.float32) / 127.5 - 1.0
    return np.stack([np.full((height, width, channels), v, np.float32) for v in model_values])


# --------------------------------------------------------------------------------------------------
# grid_shape
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [1, 2, 3, 5, 7, 25, 64])
def test_grid_shape_properties(count):
    rows, cols = grid_shape(count)
    assert rows >= 1 and cols >= 1
    assert rows * cols >= count        # Room for every image.
    assert rows <= cols                # Wider than tall.
    assert rows * cols - count < cols  # Never a whole empty row.


# floor(sqrt(count)) rows, then as many columns as needed; worked out by hand.
@pytest.mark.parametrize("count, shape", [
    (1, (1, 1)), (2, (1, 2)), (3, (1, 3)), (5, (2, 3)), (7, (2, 4)), (25, (5, 5)), (64, (8, 8)),
])
def test_grid_shape_values(count, shape):
    assert grid_shape(count) == shape


@pytest.mark.parametrize("count", [0, -1])
def test_grid_shape_rejects_no_images(count):
    with pytest.raises(ValueError):
        grid_shape(count)


# --------------------------------------------------------------------------------------------------
# make_grid
# --------------------------------------------------------------------------------------------------
def test_make_grid_places_image_i_at_row_i_div_cols():
    values = [20, 40, 60, 80, 100, 120, 140]  # 7 images: 2 rows of 4, one spare cell.
    height, width = 2, 3
    grid = make_grid(constant_batch(values, height, width))

    assert grid.dtype == np.uint8
    assert grid.shape == (2 * height, 4 * width, 3)
    cols = 4
    for i, value in enumerate(values):
        r, c = i // cols, i % cols
        cell = grid[r * height:(r + 1) * height, c * width:(c + 1) * width]
        assert (cell == value).all(), (i, r, c)
    # The spare cell (row 1, column 3) is black.
    assert (grid[height:, 3 * width:] == 0).all()


def test_make_grid_single_image_is_that_image():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(1, 4, 5, 3)).astype(np.uint8)
    grid = make_grid(pixels.astype(np.float32) / 127.5 - 1.0)
    np.testing.assert_array_equal(grid, pixels[0])


def test_make_grid_keeps_pixel_detail():
    # Distinct pixels inside each image survive the tiling at the right place.
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(5, 3, 4, 3)).astype(np.uint8)
    grid = make_grid(pixels.astype(np.float32) / 127.5 - 1.0)  # 2 rows of 3.
    assert grid.shape == (6, 12, 3)
    for i in range(5):
        r, c = divmod(i, 3)
        np.testing.assert_array_equal(grid[r * 3:(r + 1) * 3, c * 4:(c + 1) * 4], pixels[i])
    assert (grid[3:, 8:] == 0).all()


def test_make_grid_grayscale_keeps_one_channel():
    values = [0, 128, 255]
    grid = make_grid(constant_batch(values, height=2, width=2, channels=1))
    assert grid.shape == (2, 6, 1)  # 1 row of 3.
    for i, value in enumerate(values):
        assert (grid[:, 2 * i:2 * i + 2, 0] == value).all()


def test_make_grid_clips_out_of_range_values():
    grid = make_grid(np.array([-3.0, 3.0], np.float32).reshape(2, 1, 1, 1))
    np.testing.assert_array_equal(grid[..., 0], [[0, 255]])


# --------------------------------------------------------------------------------------------------
# save_grid / save_png
# --------------------------------------------------------------------------------------------------
def test_save_grid_writes_a_png(tmp_path):
    batch = constant_batch([10, 50, 90, 130, 170], height=3, width=4)  # 2 rows of 3.
    path = str(tmp_path / "samples" / "run" / "train_00001.png")  # Folders do not exist yet.
    returned = save_grid(batch, path)

    assert returned == path
    assert sorted(os.listdir(tmp_path / "samples" / "run")) == ["train_00001.png"]  # No .tmp.
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.size == (3 * 4, 2 * 3)  # (width, height)
        assert img.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(img), make_grid(batch))


def test_save_grid_grayscale(tmp_path):
    batch = constant_batch([0, 200], height=5, width=5, channels=1)
    path = save_grid(batch, str(tmp_path / "gray.png"))
    with Image.open(path) as img:
        assert img.mode == "L"
        assert img.size == (10, 5)
        pixels = np.asarray(img)
    assert (pixels[:, :5] == 0).all() and (pixels[:, 5:] == 200).all()
    assert os.listdir(tmp_path) == ["gray.png"]  # No temporary file left behind.


def test_save_png_replaces_an_existing_file(tmp_path):
    path = str(tmp_path / "grid.png")
    save_png(np.zeros((2, 2, 3), np.uint8), path)
    save_png(np.full((4, 6, 3), 77, np.uint8), path)
    with Image.open(path) as img:
        assert img.size == (6, 4)
        assert (np.asarray(img) == 77).all()
    assert os.listdir(tmp_path) == ["grid.png"]
