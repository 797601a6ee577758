"""Image folders to training batches: finding, cropping, decoding odd modes, skipping bad files."""

import os
import warnings

import numpy as np
import pytest
from PIL import Image

from dcgan_tf.data import pipeline as data
from dcgan_tf.errors import UserError


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------
def save_image(image, path, **save_kwargs):
    """Saves a PIL image (or a uint8/uint16 numpy array) to `path`, creating folders; returns str(path)."""
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image.save(path, **save_kwargs)
    return path


def constant_image(path, colour, size=(6, 4), mode="RGB", **save_kwargs):
    """A one-colour image of (width, height) `size`."""
    return save_image(Image.new(mode, size, colour), path, **save_kwargs)


def touch(path, content=b""):
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(content)
    return path


def pattern_array(height, width, channels=3):
    """uint8 [H, W, C] where every pixel differs (needs H*W <= 256): R = y*W + x, G = 255 - R, B = 2R mod 256."""
    assert height * width <= 256
    index = np.arange(height * width, dtype=np.int64).reshape(height, width)
    planes = [index, 255 - index, (2 * index) % 256][:channels]
    return np.stack(planes, axis=-1).astype(np.uint8)


def symlink_or_skip(target, link):
    try:
        os.symlink(str(target), str(link), target_is_directory=True)
    except (OSError, NotImplementedError) as e:
        pytest.skip(f"cannot create symlinks here: {e}")


def load(path, *, crop=False, crop_size=(4, 6), output_size=(4, 6), c_dim=3):
    return data.load_image(str(path), crop=crop, crop_size=crop_size, output_size=output_size, c_dim=c_dim)


def load_folder(folder, **kwargs):
    kwargs.setdefault("crop", False)
    kwargs.setdefault("crop_size", (4, 6))
    kwargs.setdefault("output_size", (4, 6))
    return data.load_image_folder(str(folder), **kwargs)


# --------------------------------------------------------------------------------------------------
# find_image_files
# --------------------------------------------------------------------------------------------------
def test_find_image_files_recursive_and_case_insensitive(tmp_path):
    wanted = [
        touch(tmp_path / "a.jpg"),
        touch(tmp_path / "B.JPG"),
        touch(tmp_path / "c.Jpeg"),
        touch(tmp_path / "sub" / "d.png"),
        touch(tmp_path / "sub" / "E.PNG"),
        touch(tmp_path / "sub" / "deeper" / "f.bmp"),
        touch(tmp_path / "sub" / "deeper" / "g.GIF"),
        touch(tmp_path / "folder.jpg" / "h.png"),  # A folder with an image-like name is walked, not listed.
        touch(tmp_path / "i.tif"),
        touch(tmp_path / "sub" / "I.TIFF"),
        touch(tmp_path / "j.webp"),
    ]
    for other in ["notes.txt", "k.jpg.bak", "jpg", "sub/l.jpgx", "sub/deeper/m.svg", "n.tifx"]:
        touch(tmp_path / other)

    found = data.find_image_files(str(tmp_path))
    assert found == sorted(wanted)


def test_find_image_files_returns_sorted_paths(tmp_path):
    for name in ["z.png", "m.png", "a.png", "sub2/b.png", "sub1/y.png", "A.png"]:
        touch(tmp_path / name)
    found = data.find_image_files(str(tmp_path))
    assert len(found) == 6
    assert found == sorted(found)


def test_find_image_files_applies_pattern_to_file_names(tmp_path):
    a1 = touch(tmp_path / "a1.png")
    a2 = touch(tmp_path / "sub" / "a2.jpg")
    touch(tmp_path / "sub" / "b.png")
    touch(tmp_path / "b.jpg")
    touch(tmp_path / "a3.txt")  # Matches the pattern but is no image.

    assert data.find_image_files(str(tmp_path), "a*") == sorted([a1, a2])
    assert data.find_image_files(str(tmp_path), "*.png") == sorted([a1, str(tmp_path / "sub" / "b.png")])
    # The pattern is matched against the file name, not the path below the folder.
    assert data.find_image_files(str(tmp_path), "sub*") == []
    assert data.find_image_files(str(tmp_path), "*") == data.find_image_files(str(tmp_path))


# One loop link per test: a walk that does not stop at loops then only goes ~40 levels deep (until
# the OS refuses the path) and the test fails on the duplicates, instead of branching for hours.
def test_find_image_files_terminates_on_symlink_loop(tmp_path):
    top = touch(tmp_path / "a.png")
    inner = touch(tmp_path / "sub" / "b.png")
    symlink_or_skip(tmp_path, tmp_path / "loop")

    found = data.find_image_files(str(tmp_path))
    assert found == sorted([top, inner])


def test_find_image_files_terminates_on_link_to_parent(tmp_path):
    top = touch(tmp_path / "a.png")
    inner = touch(tmp_path / "sub" / "b.png")
    symlink_or_skip(tmp_path, tmp_path / "sub" / "back")

    found = data.find_image_files(str(tmp_path))
    assert found == sorted([top, inner])


def test_find_image_files_follows_a_symlinked_folder_once(tmp_path):
    outside = tmp_path / "outside"
    touch(outside / "c.png")
    folder = tmp_path / "dataset"
    own = touch(folder / "a.png")
    symlink_or_skip(outside, folder / "linked")
    symlink_or_skip(outside, folder / "linked_again")  # A second way to the same folder.

    found = data.find_image_files(str(folder))
    assert own in found
    assert len(found) == 2  # c.png once, not once per link.
    assert found[1] in (str(folder / "linked" / "c.png"), str(folder / "linked_again" / "c.png"))


def test_find_image_files_empty_folder(tmp_path):
    assert data.find_image_files(str(tmp_path)) == []


# --------------------------------------------------------------------------------------------------
# centre_crop_box
# --------------------------------------------------------------------------------------------------
# Offsets worked out by hand as int(round(difference / 2.0)); Python 3 rounds halves to even,
# so 0.5 -> 0, 1.5 -> 2, 2.5 -> 2.
@pytest.mark.parametrize("width, height, crop_w, crop_h, box", [
    (64, 64, 64, 64, (0, 0, 64, 64)),       # No difference.
    (100, 80, 64, 64, (18, 8, 82, 72)),     # Even differences 36 and 16.
    (178, 218, 108, 108, (35, 55, 143, 163)),  # CelebA-sized.
    (65, 64, 64, 64, (0, 0, 64, 64)),       # Difference 1: 0.5 -> 0.
    (67, 70, 64, 64, (2, 3, 66, 67)),       # Difference 3: 1.5 -> 2; 6 -> 3.
    (69, 64, 64, 64, (2, 0, 66, 64)),       # Difference 5: 2.5 -> 2.
    (13, 9, 8, 6, (2, 2, 10, 8)),           # 2.5 -> 2 across, 1.5 -> 2 down.
    (12, 10, 8, 6, (2, 2, 10, 8)),          # Non-square, even.
])
def test_centre_crop_box(width, height, crop_w, crop_h, box):
    assert data.centre_crop_box(width, height, crop_w, crop_h) == box


@pytest.mark.parametrize("width, height, crop_w, crop_h", [(10, 7, 3, 5), (31, 17, 16, 16), (8, 8, 1, 1)])
def test_centre_crop_box_has_crop_size_and_stays_inside(width, height, crop_w, crop_h):
    left, top, right, bottom = data.centre_crop_box(width, height, crop_w, crop_h)
    assert (right - left, bottom - top) == (crop_w, crop_h)
    assert 0 <= left and right <= width
    assert 0 <= top and bottom <= height
    # Centred: the margins differ by at most one pixel.
    assert abs(left - (width - right)) <= 1
    assert abs(top - (height - bottom)) <= 1


# --------------------------------------------------------------------------------------------------
# load_image: crop and resize
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("img_h, img_w, crop_h, crop_w, top, left", [
    (10, 12, 6, 8, 2, 2),   # (10-6)/2 = 2, (12-8)/2 = 2.
    (9, 14, 6, 8, 2, 3),    # (9-6)/2 = 1.5 -> 2, (14-8)/2 = 3.
    (8, 16, 8, 4, 0, 6),    # Full height, (16-4)/2 = 6.
])
def test_load_image_crop_returns_the_centre_region(tmp_path, img_h, img_w, crop_h, crop_w, top, left):
    pixels = pattern_array(img_h, img_w)
    path = save_image(pixels, tmp_path / "pattern.png")
    out = load(path, crop=True, crop_size=(crop_h, crop_w), output_size=(crop_h, crop_w), c_dim=3)
    assert out.dtype == np.uint8
    assert out.shape == (crop_h, crop_w, 3)
    np.testing.assert_array_equal(out, pixels[top:top + crop_h, left:left + crop_w])


def test_load_image_crop_grayscale(tmp_path):
    pixels = pattern_array(10, 12, channels=1)[..., 0]
    path = save_image(pixels, tmp_path / "gray.png")
    out = load(path, crop=True, crop_size=(6, 8), output_size=(6, 8), c_dim=1)
    assert out.shape == (6, 8, 1)
    np.testing.assert_array_equal(out[..., 0], pixels[2:8, 2:10])


def test_load_image_crop_then_resize(tmp_path):
    pixels = np.zeros((12, 12, 3), np.uint8)
    pixels[2:10, 2:10] = (30, 160, 220)  # The centre 8x8 is one colour; the border is black.
    path = save_image(pixels, tmp_path / "framed.png")
    out = load(path, crop=True, crop_size=(8, 8), output_size=(4, 4), c_dim=3)
    assert out.shape == (4, 4, 3)
    # The black border was cropped away before resizing, so none of it bleeds in.
    assert (out == np.array([30, 160, 220], np.uint8)).all()


@pytest.mark.parametrize("size, output_size", [
    ((12, 10), (5, 7)),  # (width, height) -> (out_h, out_w): shrink to a different aspect ratio.
    ((4, 4), (8, 6)),    # Enlarge.
    ((6, 4), (4, 6)),    # Already the output size.
])
def test_load_image_without_crop_resizes_to_output_size(tmp_path, size, output_size):
    colour = (200, 40, 90)
    path = constant_image(tmp_path / "flat.png", colour, size=size)
    out = load(path, crop=False, output_size=output_size, c_dim=3)
    assert out.dtype == np.uint8
    assert out.shape == (*output_size, 3)
    assert (out == np.array(colour, np.uint8)).all()


def test_load_image_without_crop_ignores_crop_size(tmp_path):
    # A crop larger than the image does not matter when crop is off.
    path = constant_image(tmp_path / "small.png", (9, 9, 9), size=(3, 3))
    out = load(path, crop=False, crop_size=(50, 50), output_size=(2, 2), c_dim=3)
    assert out.shape == (2, 2, 3)


def test_load_image_smaller_than_crop_is_unusable(tmp_path):
    path = constant_image(tmp_path / "small.png", (1, 2, 3), size=(5, 4))
    with pytest.raises(data.UnusableImage, match="crop"):
        load(path, crop=True, crop_size=(6, 6), output_size=(6, 6))


def test_load_image_of_a_non_image_is_unusable(tmp_path):
    path = touch(tmp_path / "fake.png", b"this is not a picture\n")
    with pytest.raises(data.UnusableImage):
        load(path)


# --------------------------------------------------------------------------------------------------
# load_image / detect_channels: file modes
# --------------------------------------------------------------------------------------------------
def test_grayscale_files_give_one_channel(tmp_path):
    a = constant_image(tmp_path / "a.png", 17, mode="L")
    b = constant_image(tmp_path / "b.jpg", 200, mode="L")
    assert data.detect_channels([a, b]) == 1

    image_set = load_folder(tmp_path)
    assert image_set.images.shape == (2, 4, 6, 1)
    assert (image_set.images[0] == 17).all()
    assert np.abs(image_set.images[1].astype(int) - 200).max() <= 2  # JPEG is lossy.


def test_rgb_files_give_three_channels(tmp_path):
    a = constant_image(tmp_path / "a.png", (255, 0, 0))
    b = constant_image(tmp_path / "b.png", (0, 128, 255))
    assert data.detect_channels([a, b]) == 3

    image_set = load_folder(tmp_path)
    assert image_set.images.shape == (2, 4, 6, 3)
    assert image_set.images.dtype == np.uint8
    assert (image_set.images[0] == [255, 0, 0]).all()
    assert (image_set.images[1] == [0, 128, 255]).all()


def test_mixed_gray_and_colour_gives_three_channels(tmp_path):
    gray = constant_image(tmp_path / "a.png", 77, mode="L")
    colour = constant_image(tmp_path / "b.png", (10, 20, 30))
    assert data.detect_channels([gray, colour]) == 3

    with pytest.warns(Warning, match="1 of the 2 images is grayscale"):
        image_set = load_folder(tmp_path)
    assert image_set.images.shape == (2, 4, 6, 3)
    assert (image_set.images[0] == [77, 77, 77]).all()  # Gray replicated into R, G and B.


def test_detect_channels_ignores_unreadable_files(tmp_path):
    bad = touch(tmp_path / "bad.png", b"junk")
    gray = constant_image(tmp_path / "gray.png", 5, mode="L")
    assert data.detect_channels([bad, gray]) == 1


def test_explicit_c_dim_1_converts_colour_to_gray(tmp_path):
    path = constant_image(tmp_path / "red.png", (255, 0, 0))
    out = load(path, c_dim=1)
    assert out.shape == (4, 6, 1)
    # ITU-R 601-2 luma: 0.299 * 255 = 76.2.
    assert np.abs(out.astype(int) - 76).max() <= 1


def test_rgba_transparent_pixels_become_white(tmp_path):
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[:, :3] = (10, 20, 30, 0)       # Left half: fully transparent, with a dark hidden colour.
    rgba[:, 3:5] = (50, 100, 150, 255)  # Opaque.
    rgba[:, 5] = (0, 0, 0, 128)         # Half-transparent black over white: 255 * (1 - 128/255) = 127.
    path = save_image(Image.fromarray(rgba, "RGBA"), tmp_path / "alpha.png")
    with Image.open(path) as img:
        assert img.mode == "RGBA"
    assert data.detect_channels([path]) == 3

    out = load(path, c_dim=3)
    assert out.shape == (4, 6, 3)
    assert (out[:, :3] == 255).all()
    assert (out[:, 3:5] == [50, 100, 150]).all()
    assert np.abs(out[:, 5].astype(int) - 127).max() <= 1


def test_la_transparent_pixels_become_white(tmp_path):
    la = np.zeros((4, 6, 2), np.uint8)
    la[:, :3] = (40, 0)
    la[:, 3:] = (40, 255)
    path = save_image(Image.fromarray(la, "LA"), tmp_path / "gray_alpha.png")
    assert data.detect_channels([path]) == 1
    out = load(path, c_dim=1)
    assert (out[:, :3, 0] == 255).all()
    assert (out[:, 3:, 0] == 40).all()


def _palette_image(indices, palette_colours):
    img = Image.new("P", (indices.shape[1], indices.shape[0]))
    img.putdata(indices.ravel().tolist())
    flat = [v for colour in palette_colours for v in colour]
    img.putpalette(flat + [0] * (768 - len(flat)))
    return img


def test_palette_image_loads_as_its_colours(tmp_path):
    colours = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (12, 34, 56)], np.uint8)
    indices = (np.arange(24).reshape(4, 6) % 4).astype(np.uint8)
    path = save_image(_palette_image(indices, colours.tolist()), tmp_path / "palette.png")
    with Image.open(path) as img:
        assert img.mode == "P"
    assert data.detect_channels([path]) == 3

    out = load(path, c_dim=3)
    np.testing.assert_array_equal(out, colours[indices])


def test_palette_transparent_index_becomes_white(tmp_path):
    colours = [(0, 0, 0), (90, 80, 70)]
    indices = np.zeros((4, 6), np.uint8)
    indices[:, 3:] = 1
    path = save_image(_palette_image(indices, colours), tmp_path / "palette_alpha.png", transparency=0)
    out = load(path, c_dim=3)
    assert (out[:, :3] == 255).all()
    assert (out[:, 3:] == [90, 80, 70]).all()


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 32768, 65535], [0, 32768, 65535]], np.uint16)
    path = save_image(values, tmp_path / "deep.png")
    with Image.open(path) as img:
        assert img.mode.startswith("I")  # Really a 16-bit file.
        assert np.asarray(img).max() == 65535
    assert data.detect_channels([path]) == 1

    out = load(path, output_size=(2, 3), c_dim=1)
    assert out.shape == (2, 3, 1)
    assert (out[:, 0] == 0).all()
    # 32768 * 255 / 65535 = 127.5: near 128, not clipped to 255.
    assert np.abs(out[:, 1].astype(int) - 128).max() <= 1
    assert (out[:, 2] == 255).all()


def test_16_bit_png_in_a_colour_run(tmp_path):
    values = np.full((4, 6), 65535 // 4, np.uint16)  # 16383 * 255 / 65535 = 63.7.
    path = save_image(values, tmp_path / "deep.png")
    out = load(path, c_dim=3)
    assert out.shape == (4, 6, 3)
    assert np.abs(out.astype(int) - 64).max() <= 1


def test_cmyk_jpeg_loads_as_rgb(tmp_path):
    # C=0, M=255, Y=255, K=0 is pure red.
    path = constant_image(tmp_path / "cmyk.jpg", (0, 255, 255, 0), size=(8, 8), mode="CMYK", quality=95)
    with Image.open(path) as img:
        assert img.mode == "CMYK"
    assert data.detect_channels([path]) == 3

    out = load(path, output_size=(8, 8), c_dim=3)
    assert out.shape == (8, 8, 3)
    red, green, blue = out[..., 0].astype(int), out[..., 1].astype(int), out[..., 2].astype(int)
    assert red.min() >= 235
    assert green.max() <= 20
    assert blue.max() <= 20

    image_set = load_folder(tmp_path, output_size=(8, 8))
    assert image_set.images.shape == (1, 8, 8, 3)


def test_animated_gif_uses_first_frame(tmp_path):
    first = Image.new("RGB", (6, 4), (255, 0, 0))
    second = Image.new("RGB", (6, 4), (0, 0, 255))
    path = save_image(first, tmp_path / "anim.gif", save_all=True, append_images=[second], duration=100, loop=0)
    with Image.open(path) as img:
        assert img.n_frames == 2

    out = load(path, c_dim=3)
    assert (out == [255, 0, 0]).all()


# --------------------------------------------------------------------------------------------------
# load_image_folder
# --------------------------------------------------------------------------------------------------
def _real_jpeg_bytes(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, size=(48, 48, 3), dtype=np.uint8)
    full = save_image(noise, tmp_path / "scratch" / "full.jpg", quality=95)
    with open(full, "rb") as f:
        content = f.read()
    os.remove(full)
    return content


def test_load_image_folder_skips_bad_files_with_one_warning(tmp_path):
    folder = tmp_path / "set"
    colours = [(10, 20, 30), (40, 50, 60), (70, 80, 90)]
    good = [constant_image(folder / f"good{i}.png", c) for i, c in enumerate(colours)]
    jpeg = _real_jpeg_bytes(tmp_path)
    bad = [
        touch(folder / "empty.jpg"),
        touch(folder / "text.jpg", b"Just some text, not a JPEG.\n" * 10),
        touch(folder / "sub" / "truncated.jpg", jpeg[: len(jpeg) // 2]),
    ]

    with pytest.warns(UserWarning) as record:
        image_set = load_folder(folder)

    user_warnings = [w for w in record if issubclass(w.category, UserWarning)]
    assert len(user_warnings) == 1
    message = str(user_warnings[0].message)
    for path in bad:
        assert path in message
    for path in good:
        assert path not in message

    assert image_set.paths == tuple(sorted(good))
    assert sorted(p for p, _ in image_set.skipped) == sorted(bad)
    assert all(reason for _, reason in image_set.skipped)
    assert image_set.images.shape == (3, 4, 6, 3)
    for i, colour in enumerate(colours):
        assert (image_set.images[i] == colour).all()


def test_load_image_folder_without_bad_files_does_not_warn(tmp_path):
    constant_image(tmp_path / "a.png", (1, 2, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        image_set = load_folder(tmp_path)
    assert image_set.skipped == ()
    assert len(image_set.paths) == 1


def test_load_image_folder_skips_images_smaller_than_crop(tmp_path):
    ok = [constant_image(tmp_path / "ok1.png", (5, 5, 5), size=(8, 8)),
          constant_image(tmp_path / "ok2.png", (9, 9, 9), size=(10, 7))]
    too_small = [constant_image(tmp_path / "small.png", (1, 1, 1), size=(4, 4)),
                 constant_image(tmp_path / "short.png", (2, 2, 2), size=(12, 5))]  # Only too short.

    with pytest.warns(UserWarning) as record:
        image_set = load_folder(tmp_path, crop=True, crop_size=(6, 6), output_size=(6, 6))

    assert image_set.paths == tuple(sorted(ok))
    assert image_set.images.shape == (2, 6, 6, 3)
    skipped = dict(image_set.skipped)
    assert sorted(skipped) == sorted(too_small)
    for reason in skipped.values():
        assert "crop" in reason
    message = "".join(str(w.message) for w in record if issubclass(w.category, UserWarning))
    for path in too_small:
        assert path in message


def test_load_image_folder_uses_the_pattern(tmp_path):
    png = constant_image(tmp_path / "a.png", (1, 2, 3))
    constant_image(tmp_path / "b.jpg", (4, 5, 6))
    image_set = load_folder(tmp_path, pattern="*.png")
    assert image_set.paths == (png,)


def test_load_image_folder_explicit_c_dim(tmp_path):
    constant_image(tmp_path / "a.png", 120, mode="L")
    image_set = load_folder(tmp_path, c_dim=3)
    assert image_set.images.shape == (1, 4, 6, 3)
    assert (image_set.images == 120).all()


def test_load_image_folder_missing_folder(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_folder(tmp_path / "nope")


def test_load_image_folder_empty_folder(tmp_path):
    with pytest.raises(UserError, match="no images"):
        load_folder(tmp_path)


def test_load_image_folder_folder_without_images(tmp_path):
    touch(tmp_path / "readme.txt", b"hello")
    with pytest.raises(UserError, match="no images"):
        load_folder(tmp_path)


def test_load_image_folder_only_unusable_files(tmp_path):
    touch(tmp_path / "empty.jpg")
    touch(tmp_path / "text.png", b"not a png")
    with pytest.warns(UserWarning):
        with pytest.raises(UserError, match="none of the 2"):
            load_folder(tmp_path)


def test_files_skipped_for_one_reason_are_one_group_and_the_error_names_it(tmp_path):
    # A folder of frames all smaller than the crop: the reason once, three names and a count, not
    # the same words per file; the error that nothing is left says why.
    for i in range(7):
        Image.new("RGB", (8, 8)).save(tmp_path / f"frame_{i}.png")
    touch(tmp_path / "broken.png", b"not a png")
    with pytest.warns(UserWarning) as caught, pytest.raises(UserError) as error:
        load_folder(tmp_path, crop=True, crop_size=(16, 16), output_size=(16, 16))
    [warning] = [str(w.message) for w in caught if str(w.message).startswith("skipped")]
    assert warning.startswith("skipped 8 of 8 files that cannot be used: 7 files (8x8 is smaller than the "
                              "16x16 crop of --input_height/--input_width): ")
    assert warning.count("frame_") == 3 and "and 4 more; " in warning and "broken.png (" in warning
    assert "could be used (7 of them: 8x8 is smaller than the 16x16 crop" in str(error.value)


# --------------------------------------------------------------------------------------------------
# resolve_dataset_dir
# --------------------------------------------------------------------------------------------------
def test_resolve_dataset_dir_exact(tmp_path):
    (tmp_path / "faces").mkdir()
    assert data.resolve_dataset_dir(str(tmp_path), "faces") == os.path.join(str(tmp_path), "faces")


def test_resolve_dataset_dir_case_insensitive(tmp_path):
    (tmp_path / "Simpsons_64").mkdir()
    for name in ["simpsons_64", "SIMPSONS_64", "sImPsOnS_64"]:
        assert data.resolve_dataset_dir(str(tmp_path), name) == os.path.join(str(tmp_path), "Simpsons_64")


def test_resolve_dataset_dir_missing(tmp_path):
    (tmp_path / "other").mkdir()
    touch(tmp_path / "faces", b"a file, not a folder")
    with pytest.raises(UserError, match="does not exist; put the training images in it"):
        data.resolve_dataset_dir(str(tmp_path), "faces")
    # The original frames, which --download fetches: the line says so.
    with pytest.raises(UserError, match="does not exist; add --download to fetch the 100 original frames"):
        data.resolve_dataset_dir(str(tmp_path), "Simpsons_64")
    with pytest.raises(UserError):
        data.resolve_dataset_dir(str(tmp_path), "simpsons")
    with pytest.raises(UserError):
        data.resolve_dataset_dir(str(tmp_path / "no_data_dir"), "faces")


# --------------------------------------------------------------------------------------------------
# Value ranges
# --------------------------------------------------------------------------------------------------
def test_to_pixels_known_values():
    # (x + 1) * 127.5, rounded and clipped: worked out by hand.
    x = np.array([-1.5, -1.0, 0.5, 1.0, 1.5], np.float32)
    out = data.to_pixels(x)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [0, 0, 191, 255, 255])


def test_to_model_range_and_to_pixels_are_inverse():
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    model = data.to_model_range(pixels)
    assert hasattr(model, "numpy")  # A TensorFlow tensor.
    values = model.numpy()
    assert values.dtype == np.float32
    assert values.shape == pixels.shape
    np.testing.assert_allclose(values, pixels.astype(np.float64) / 127.5 - 1.0, atol=1e-6)
    assert values.min() == -1.0
    assert values.max() == 1.0
    np.testing.assert_array_equal(data.to_pixels(values), pixels)


# --------------------------------------------------------------------------------------------------
# make_dataset
# --------------------------------------------------------------------------------------------------
def _distinct_constant_images(count=32, height=3, width=2, channels=3):
    values = [8 * i for i in range(count - 1)] + [255]  # 0, 8, ..., 240, 255: all different.
    images = np.stack([np.full((height, width, channels), v, np.uint8) for v in values])
    return images, values


def _order(batches, values):
    """The image indices in the order the batches hold them (each image is one constant value)."""
    index_of = {v: i for i, v in enumerate(values)}
    order = []
    for batch in batches:
        pixels = data.to_pixels(np.asarray(batch))
        for image in pixels:
            assert (image == image.flat[0]).all()  # Images are not mixed up.
            order.append(index_of[int(image.flat[0])])
    return order


def test_make_dataset_full_batches_in_model_range():
    images, values = _distinct_constant_images()
    dataset = data.make_dataset(images, batch_size=5, seed=3, first_epoch=0, last_epoch=1)
    batches = [b.numpy() for b in dataset]

    assert len(batches) == 32 // 5  # One epoch; the last two images are dropped.
    allowed = np.array(values, np.float64) / 127.5 - 1.0
    for batch in batches:
        assert batch.shape == (5, 3, 2, 3)
        assert batch.dtype == np.float32
        assert batch.min() >= -1.0 and batch.max() <= 1.0
        assert np.isclose(batch[..., None], allowed, atol=1e-6).any(axis=-1).all()
    order = _order(batches, values)
    assert len(set(order)) == 30  # Each image at most once per epoch.
    # No autotuning thread: it held the exit of a stopped long run for up to a minute.
    assert dataset.options().autotune.enabled is False


def test_make_dataset_reshuffles_between_epochs():
    images, values = _distinct_constant_images()
    batches = [b.numpy() for b in data.make_dataset(images, batch_size=5, seed=11, last_epoch=2)]
    assert len(batches) == 2 * 6
    first, second = _order(batches[:6], values), _order(batches[6:], values)

    for order in (first, second):
        assert len(order) == 30
        assert len(set(order)) == 30
    assert first != second
    assert first != sorted(first)  # Shuffled at all.


def test_make_dataset_order_is_fixed_by_seed_and_epoch():
    images, values = _distinct_constant_images()
    both = [b.numpy() for b in data.make_dataset(images, batch_size=5, seed=11, last_epoch=2)]
    again = [b.numpy() for b in data.make_dataset(images, batch_size=5, seed=11, last_epoch=2)]
    resumed = [b.numpy() for b in data.make_dataset(images, batch_size=5, seed=11, first_epoch=1, last_epoch=2)]
    other_seed = [b.numpy() for b in data.make_dataset(images, batch_size=5, seed=12, last_epoch=1)]

    assert _order(again, values) == _order(both, values)
    # A run resumed at epoch 1 sees the batches an uninterrupted run saw in its second epoch.
    assert _order(resumed, values) == _order(both[6:], values)
    assert _order(other_seed, values) != _order(both[:6], values)
    # Resumed 4 batches into epoch 0: the rest of that epoch, then epoch 1, as uninterrupted.
    mid_epoch = [b.numpy() for b in data.make_dataset(images, batch_size=5, seed=11, last_epoch=2, skip_batches=4)]
    assert _order(mid_epoch, values) == _order(both[4:], values)


def _numbered_asymmetric_images(count=40):
    """Images whose left-right mirror differs from every image: image i holds i in its first pixel."""
    images = np.zeros((count, 2, 3, 3), np.uint8)
    images[:, :, 0] = np.arange(count, dtype=np.uint8)[:, None, None] * 5 + 50
    return images


def _seen(batches, images):
    """(index, mirrored) of every image the batches show, in order."""
    seen = []
    for batch in batches:
        for image in data.to_pixels(np.asarray(batch)):
            index = [i for i, x in enumerate(images) if (x == image).all() or (x[:, ::-1] == image).all()]
            assert len(index) == 1  # Each shown image is one of the images, as it is or mirrored.
            seen.append((index[0], bool((images[index[0]] != image).any())))
    return seen


def test_make_dataset_mirror_flips_a_random_half_fixed_by_seed_and_epoch():
    images = _numbered_asymmetric_images()
    mirrored = [b.numpy() for b in data.make_dataset(images, batch_size=5, seed=7, last_epoch=4, mirror=True)]
    plain = [b.numpy() for b in data.make_dataset(images, batch_size=5, seed=7, last_epoch=4)]
    resumed = [b.numpy() for b in data.make_dataset(images, batch_size=5, seed=7, first_epoch=2, last_epoch=4,
                                                    mirror=True)]
    seen, seen_plain = _seen(mirrored, images), _seen(plain, images)

    assert not any(flipped for _, flipped in seen_plain)  # Off by default.
    assert [i for i, _ in seen] == [i for i, _ in seen_plain]  # Mirroring leaves the order alone.
    flipped = [f for _, f in seen]
    assert 0.35 < sum(flipped) / len(flipped) < 0.65  # 160 draws of a fair coin.
    # An image is shown mirrored in some epochs and as it is in others.
    per_image = {i: {f for j, f in seen if j == i} for i in range(len(images))}
    assert sum(both == {True, False} for both in per_image.values()) > len(images) // 2
    # A resumed run sees the flips an uninterrupted one saw.
    assert _seen(resumed, images) == seen[80:]


def test_make_dataset_without_last_epoch_is_endless():
    images, _ = _distinct_constant_images(count=4)
    batches = list(data.make_dataset(images, batch_size=2, seed=0).take(7))  # 3.5 epochs of 2 batches.
    assert len(batches) == 7
    assert all(b.shape == (2, 3, 2, 3) for b in batches)


def test_make_dataset_batch_equal_to_image_count():
    images, values = _distinct_constant_images(count=4)
    batches = [b.numpy() for b in data.make_dataset(images, batch_size=4, seed=0, last_epoch=1)]
    assert len(batches) == 1
    assert batches[0].shape == (4, 3, 2, 3)
    assert sorted(_order(batches, values)) == [0, 1, 2, 3]


def test_make_dataset_batch_larger_than_images():
    images, _ = _distinct_constant_images(count=4)
    with pytest.raises(UserError, match="--batch_size"):
        data.make_dataset(images, batch_size=5, seed=0, last_epoch=1)


def test_epoch_order_is_a_permutation_fixed_by_seed_and_epoch():
    orders = {epoch: data.epoch_order(20, 5, epoch).numpy().tolist() for epoch in range(3)}
    for order in orders.values():
        assert sorted(order) == list(range(20))
    assert data.epoch_order(20, 5, 1).numpy().tolist() == orders[1]
    assert len({tuple(o) for o in orders.values()}) == 3


@pytest.mark.parametrize("count, batch, steps", [(32, 5, 6), (10, 10, 1), (9, 2, 4)])
def test_steps_per_epoch(count, batch, steps):
    assert data.steps_per_epoch(count, batch) == steps


# --------------------------------------------------------------------------------------------------
# More formats (.webp, .tif/.tiff) and the one-line warnings about images that do not fit together
# --------------------------------------------------------------------------------------------------
def _run_warnings(folder, **kwargs):
    """load_folder's result and the messages of the RunWarnings it gave."""
    from dcgan_tf.errors import RunWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image_set = load_folder(folder, **kwargs)
    return image_set, [str(w.message) for w in caught if issubclass(w.category, RunWarning)]


@pytest.mark.parametrize("name, save_kwargs", [("a.webp", {"lossless": True}), ("b.tif", {}), ("c.TIFF", {}),
                                                ("d.tiff", {"compression": "tiff_lzw"})])
def test_webp_and_tiff_are_found_and_decoded(tmp_path, name, save_kwargs):
    pixels = pattern_array(4, 6)
    save_image(pixels, tmp_path / name, **save_kwargs)
    assert data.find_image_files(str(tmp_path)) == [str(tmp_path / name)]
    image_set, caught = _run_warnings(tmp_path)
    assert caught == []
    assert image_set.images.shape == (1, 4, 6, 3)
    np.testing.assert_array_equal(image_set.images[0], pixels)


def test_pattern_help_names_every_format_read():
    import dataclasses

    from dcgan_tf.config import RunConfig

    help_text = {f.name: f.metadata["help"] for f in dataclasses.fields(RunConfig)}["input_fname_pattern"]
    assert "/".join(e[1:] for e in data.IMAGE_EXTENSIONS) in help_text


def test_grayscale_16_bit_tiff_is_scaled_to_8_bits(tmp_path):
    save_image(np.full((4, 6), 65535, np.uint16), tmp_path / "deep.tif")
    image_set, _ = _run_warnings(tmp_path, c_dim=0)
    assert image_set.images.shape == (1, 4, 6, 1)
    assert (image_set.images == 255).all()


def test_one_size_one_kind_no_enlargement_gives_no_warning(tmp_path):
    for i in range(3):
        constant_image(tmp_path / f"{i}.png", (i, i, i), size=(6, 4))
    _, caught = _run_warnings(tmp_path, output_size=(8, 12))  # Exactly 2x: not more.
    assert caught == []


def test_mixed_sizes_without_crop_warn_once(tmp_path):
    constant_image(tmp_path / "a.png", (1, 1, 1), size=(6, 4))
    constant_image(tmp_path / "b.png", (2, 2, 2), size=(6, 4))
    constant_image(tmp_path / "c.png", (3, 3, 3), size=(12, 8))  # Same aspect ratio, other size.
    _, caught = _run_warnings(tmp_path)
    assert len(caught) == 1, caught
    assert "3 images have 2 different sizes (6x4, 12x8)" in caught[0] and "--crop" in caught[0]
    assert "aspect" not in caught[0]


def test_mixed_aspect_ratios_without_crop_warn_once(tmp_path):
    constant_image(tmp_path / "wide.png", (1, 1, 1), size=(6, 4))
    constant_image(tmp_path / "tall.png", (2, 2, 2), size=(4, 6))
    _, caught = _run_warnings(tmp_path)
    assert len(caught) == 1, caught
    assert "2 different sizes" in caught[0] and "aspect ratios" in caught[0] and "stretched" in caught[0]


def test_mixed_sizes_with_crop_do_not_warn(tmp_path):
    constant_image(tmp_path / "a.png", (1, 1, 1), size=(6, 4))
    constant_image(tmp_path / "b.png", (2, 2, 2), size=(9, 7))
    image_set, caught = _run_warnings(tmp_path, crop=True, crop_size=(4, 6))
    assert len(image_set.paths) == 2 and caught == []


def test_grayscale_mixed_with_colour_warns_once(tmp_path):
    constant_image(tmp_path / "colour.png", (10, 20, 30))
    constant_image(tmp_path / "gray.png", 128, mode="L")
    constant_image(tmp_path / "gray2.png", 64, mode="L")
    image_set, caught = _run_warnings(tmp_path, c_dim=0)
    assert image_set.images.shape[-1] == 3
    assert len(caught) == 1, caught
    assert "2 of the 3 images are grayscale" in caught[0] and "--c_dim 1" in caught[0]
    # Channels asked for explicitly: the conversion is what was asked, no warning.
    _, caught = _run_warnings(tmp_path, c_dim=1)
    assert caught == []


def test_enlarged_more_than_2x_warns_once(tmp_path):
    constant_image(tmp_path / "big.png", (1, 1, 1), size=(12, 8))
    constant_image(tmp_path / "small.png", (2, 2, 2), size=(12, 8))
    constant_image(tmp_path / "smaller.png", (3, 3, 3), size=(12, 8))
    _, caught = _run_warnings(tmp_path, output_size=(17, 24))  # 8 -> 17 rows: more than 2x.
    assert len(caught) == 1, caught
    assert "3 of the 3 images are enlarged more than 2x, from 12x8" in caught[0] and "24x17" in caught[0]
    # The crop is what gets enlarged with --crop.
    _, caught = _run_warnings(tmp_path, crop=True, crop_size=(4, 4), output_size=(8, 9))
    assert len(caught) == 1 and "from 4x4 (the crop) to 9x8" in caught[0], caught


def test_each_kind_of_mismatch_is_its_own_line(tmp_path):
    constant_image(tmp_path / "a.png", (1, 1, 1), size=(6, 4))
    constant_image(tmp_path / "b.png", 9, size=(2, 2), mode="L")
    _, caught = _run_warnings(tmp_path, c_dim=0)
    assert len(caught) == 3, caught
    assert all("\n" not in message for message in caught)
