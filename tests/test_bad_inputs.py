"""The bad-input matrix: every case ends in one clear error line or a one-line warning and a skip,
never a traceback, and nothing already saved is lost. Runs the command line in-process."""

import gc
import os
import struct
import subprocess
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from dcgan_tf import cli
from dcgan_tf.errors import RunWarning
from tests.conftest import TINY_FLAGS, write_images

GOOD = 8  # good 40x40 RGB images in every folder that has any


def _png_header_only(path, width, height):
    """A PNG whose header claims width x height (a decompression bomb, a few bytes on disk)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                + chunk(b"IEND", b""))


def _jpeg_bytes(size=(40, 40), mode="RGB"):
    import io

    buf = io.BytesIO()
    Image.new(mode, size, (10, 200, 30) if mode == "RGB" else (10, 200, 30, 0)).save(buf, format="JPEG")
    return buf.getvalue()


def _add(folder, case):
    """Puts the case's file(s) into `folder`; returns the name a warning must mention, if any."""
    if case == "zero_byte":
        (folder / "empty.jpg").write_bytes(b"")
        return "empty.jpg"
    if case == "truncated_jpeg":
        data = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(data).save(folder / "cut.jpg", quality=95)
        (folder / "cut.jpg").write_bytes((folder / "cut.jpg").read_bytes()[:700])
        return "cut.jpg"
    if case == "text_as_jpg":
        (folder / "notes.jpg").write_text("this is not a picture\n")
        return "notes.jpg"
    if case == "bomb":
        _png_header_only(folder / "huge.png", 20000, 20000)
        return "huge.png"
    if case == "smaller_than_crop":
        Image.new("RGB", (10, 10)).save(folder / "tiny.png")
        return "tiny.png"
    if case == "sixteen_bit_png":
        Image.fromarray(np.full((40, 40), 40000, np.uint16)).save(folder / "deep.png")
    elif case == "cmyk_jpeg":
        Image.new("CMYK", (40, 40), (0, 255, 0, 0)).save(folder / "print.jpg")
    elif case == "one_pixel":
        Image.new("RGB", (1, 1), (255, 0, 0)).save(folder / "dot.png")
    elif case == "animated_gif":
        frames = [Image.new("P", (40, 40), i) for i in range(3)]
        frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    elif case == "unicode_names":
        Image.new("RGB", (40, 40), (1, 2, 3)).save(folder / "ñandú_画像_😀.png")
    elif case == "symlink_loop":
        os.symlink(folder, folder / "loop")
        os.makedirs(folder / "sub")
        os.symlink(folder / "sub", folder / "sub" / "again")
    elif case == "large_jpeg":
        Image.new("RGB", (6000, 4000), (90, 90, 90)).save(folder / "photo.jpg")
    return None


# Files that are odd but usable: each must be used.
USED_CASES = ("sixteen_bit_png", "cmyk_jpeg", "one_pixel", "animated_gif", "unicode_names", "large_jpeg")
# Files that cannot be used: each must be skipped and named (or its reason given) in the one warning.
SKIPPED_CASES = {"zero_byte": "empty.jpg", "truncated_jpeg": "cut.jpg", "text_as_jpg": "notes.jpg",
                 "bomb": "huge.png (too many pixels"}


def _run(workdir, *flags):
    """Runs the command line in-process from `workdir`; returns (status, RunWarning messages)."""
    old = os.getcwd()
    os.chdir(workdir)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            status = cli.execute(["main.py", *flags])
    finally:
        os.chdir(old)
    return status, [str(w.message) for w in caught if issubclass(w.category, RunWarning)]


def _train_flags(*extra):
    return ["--train", "--dataset", "faces", "--epoch", "1", "--seed", "1", *TINY_FLAGS, *extra]


@pytest.fixture
def folder(tmp_path):
    write_images(tmp_path / "data" / "faces", GOOD)
    return tmp_path / "data" / "faces"


def test_file_matrix_used_or_skipped_with_one_warning(tmp_path, folder, capsys):
    """All file cases in one folder (one training run): odd files used, bad ones skipped and named
    in exactly one warning; a symlink loop in the folder does not hang the search."""
    for case in USED_CASES + tuple(SKIPPED_CASES) + ("symlink_loop",):
        _add(folder, case)
    status, caught = _run(tmp_path, *_train_flags())
    out = capsys.readouterr()
    assert status == 0 and "Traceback" not in out.err, out.err[-2000:]
    total = GOOD + len(USED_CASES) + len(SKIPPED_CASES)
    assert f"{GOOD + len(USED_CASES)} images from data/faces" in out.out
    [skipped] = [message for message in caught if message.startswith("skipped")]
    assert f"skipped {len(SKIPPED_CASES)} of {total} files" in skipped, caught
    for case, mention in SKIPPED_CASES.items():
        assert mention in skipped, case
    for name in ("deep.png", "print.jpg", "dot.png", "anim.gif", "ñandú", "photo.jpg", "img_000"):
        assert name not in skipped
    # The usable odd files get one line each for what was done to them: sizes mixed without --crop,
    # grayscale beside colour, and the 1x1 image enlarged more than 2x.
    others = sorted(message for message in caught if message != skipped)
    assert len(others) == 3, caught
    assert any("sizes" in m for m in others) and any("grayscale" in m for m in others) and \
        any("enlarged" in m and "dot.png" in m for m in others), others


def test_image_smaller_than_the_crop_is_skipped(tmp_path, folder, capsys):
    _add(folder, "smaller_than_crop")
    status, caught = _run(tmp_path, *_train_flags("--crop", "--input_height", "36"))
    out = capsys.readouterr()
    assert status == 0, out.err[-2000:]
    assert len(caught) == 1 and "tiny.png (10x10 is smaller than the 36x36 crop of --input_height" in caught[0]
    assert f"{GOOD} images from data/faces" in out.out


def _one_error_line(capsys, *fragments):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [l for l in err.splitlines() if l.startswith("dcgan_tf: error:")]
    assert len(lines) == 1, err[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


ERROR_CASES = {
    "missing_folder": (None, [], ["data/faces does not exist"]),
    "empty_folder": ("empty", [], ["no images matching"]),
    "only_non_images": ("non_images", [], ["no images matching"]),
    "batch_larger_than_dataset": ("good", ["--batch_size", "9"], ["--batch_size 9 is larger than the 8"]),
    "out_of_range_beta1": ("good", ["--beta1", "1.5"], ["--beta1 must be in [0, 1)"]),
    "out_of_range_size": ("good", ["--output_height", "8"], ["--output_height 8 is too small"]),
    "unknown_z_dist": ("good", ["--z_dist", "gamma"], ["z_dist"]),
    "not_a_number": ("good", ["--batch_size", "many"], ["batch_size"]),
    "dataset_escapes_data_dir": ("good", ["--dataset", "../../etc"], ["--dataset must be a plain folder name"]),
    "output_under_a_file": ("good", ["--sample_dir", "afile/samples"], ["cannot write to afile/samples"]),
    "contradictory_saved_model_and_train": ("good", ["--saved_model", "export/x"],
                                            ["--saved_model cannot be combined with --train"]),
    "contradictory_grid_without_generate": ("good", ["--grid"], ["--grid only applies to --generate N"]),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_errors_are_one_line_and_nothing_is_written(tmp_path, case, capsys):
    setup, extra, fragments = ERROR_CASES[case]
    folder = tmp_path / "data" / "faces"
    if setup == "good":
        write_images(folder, GOOD)
    elif setup == "empty":
        folder.mkdir(parents=True)
    elif setup == "non_images":
        folder.mkdir(parents=True)
        (folder / "readme.txt").write_text("hello")
        (folder / "table.csv").write_text("1,2")
    (tmp_path / "afile").write_text("a file, not a folder")
    status, _ = _run(tmp_path, *_train_flags(*extra))  # a repeated flag's last value wins
    assert status == 2
    _one_error_line(capsys, *fragments)
    assert not (tmp_path / "checkpoints").exists() or not os.listdir(tmp_path / "checkpoints" / "faces_4_32_32_z8_gf4_df4")


def _checkpoints(tmp_path):
    folder = tmp_path / "checkpoints" / "faces_4_32_32_z8_gf4_df4"
    return sorted(n for n in os.listdir(folder) if n.endswith(".index")), folder


def test_checkpoint_of_another_size_is_refused_and_kept(tmp_path, folder, capsys):
    assert _run(tmp_path, *_train_flags())[0] == 0
    before, ckpt_dir = _checkpoints(tmp_path)
    # Another shape is another run; forced into this run's folder with --run, it is refused.
    this_run = ("--run", "faces_4_32_32_z8_gf4_df4")
    status, _ = _run(tmp_path, *_train_flags("--gf_dim", "8", *this_run))
    assert status == 2
    _one_error_line(capsys, "--gf_dim 4, not 8")
    # Another architecture on the same run folder (the mlp preset can make 32x32 images too).
    status, _ = _run(tmp_path, *_train_flags("--arch", "mlp", "--hidden_dim", "8", *this_run))
    assert status == 2
    _one_error_line(capsys, "--arch simpsons, not mlp")
    # Without the run's config.json the checkpoint itself is checked: still a clear refusal.
    os.remove(ckpt_dir / "config.json")
    status, _ = _run(tmp_path, *_train_flags("--gf_dim", "8", *this_run))
    assert status == 2
    _one_error_line(capsys, "cannot be loaded into this model")
    assert _checkpoints(tmp_path)[0] == before


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, folder, capsys):
    assert _run(tmp_path, *_train_flags("--ckpt_freq", "1"))[0] == 0  # ckpt-1, ckpt-2
    _, ckpt_dir = _checkpoints(tmp_path)
    data = ckpt_dir / "ckpt-2.data-00000-of-00001"
    data.write_bytes(b"\0" * 10)
    # Drawing images reads the generator side of the same files: it falls back alike.
    status, caught = _run(tmp_path, "--dataset", "faces", "--seed", "1", *TINY_FLAGS, "--generate", "1")
    out = capsys.readouterr()
    assert status == 0, out.err[-2000:]
    assert len(caught) == 1 and "ckpt-2 is damaged" in caught[0] and "loaded the older" in caught[0]
    assert "faces_4_32_32_z8_gf4_df4/ckpt-1 with --seed 1" in out.out and "step1/generate_s1" in out.out
    status, caught = _run(tmp_path, *_train_flags("--ckpt_freq", "1", "--epoch", "2"))
    out = capsys.readouterr()
    assert status == 0, out.err[-2000:]
    assert len(caught) == 1 and "ckpt-2 is damaged" in caught[0] and "loaded the older" in caught[0]
    assert "(epoch 0, step 1)" in out.out
    # Every checkpoint damaged: a clear error, and the files are left where they were.
    for name in os.listdir(ckpt_dir):
        if name.endswith(".index"):
            (ckpt_dir / name).write_bytes(b"garbage")
    kept = sorted(os.listdir(ckpt_dir))
    status, _ = _run(tmp_path, *_train_flags("--epoch", "3"))
    assert status == 2
    _one_error_line(capsys, "cannot be")
    assert sorted(os.listdir(ckpt_dir)) == kept


def test_damaged_checkpoint_list_is_rebuilt(tmp_path, folder, capsys):
    assert _run(tmp_path, *_train_flags())[0] == 0
    _, ckpt_dir = _checkpoints(tmp_path)
    (ckpt_dir / "checkpoint").write_text("model_checkpoint_path: {{{ nonsense")
    status, caught = _run(tmp_path, *_train_flags("--epoch", "2"))
    out = capsys.readouterr()
    assert status == 0, out.err[-2000:]
    assert any("rebuilt the list" in w for w in caught)
    assert "(epoch 1, step 2)" in out.out
    assert [n for n in os.listdir(ckpt_dir) if n.startswith("checkpoint.damaged")]


def _mount_tmpfs(path, options):
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"this machine does not allow mounting a tmpfs: {proc.stderr.decode().strip()}")


def _unmount(path):
    gc.collect()  # Drop readers that still hold files open.
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)  # Detach once no longer busy.


def test_read_only_output_folder(tmp_path, folder, capsys):
    ro = tmp_path / "ro"
    _mount_tmpfs(ro, "ro,size=1m")
    try:
        status, _ = _run(tmp_path, *_train_flags("--checkpoint_dir", str(ro)))
        assert status == 2
        _one_error_line(capsys, f"cannot write to {ro}", "Read-only file system")
    finally:
        _unmount(ro)


def test_full_output_folder_stops_and_keeps_saved_checkpoints(tmp_path, folder, capsys):
    small = tmp_path / "small"
    _mount_tmpfs(small, "size=3m")
    try:
        status, _ = _run(tmp_path, *_train_flags("--checkpoint_dir", str(small), "--epoch", "50",
                                                 "--ckpt_freq", "1", "--max_to_keep", "100"))
        assert status == 2
        _one_error_line(capsys, "cannot write a checkpoint", "No space left on device", "Newest checkpoint:")
        import tensorflow as tf

        newest = tf.train.latest_checkpoint(str(small / "faces_4_32_32_z8_gf4_df4"))
        assert newest is not None
        reader = tf.train.load_checkpoint(newest)
        assert all(reader.get_tensor(n) is not None for n in reader.get_variable_to_shape_map())
        del reader  # It holds the checkpoint files open, which would keep the mount busy.
    finally:
        _unmount(small)
