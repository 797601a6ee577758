"""main.py end to end: train, resume, test grid, export, and one-line user errors."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import MAIN, TINY_FLAGS, assert_one_line_error, run_main, write_images


@pytest.mark.parametrize("flag", ["--help", "-h", "--helpfull"])
def test_help_lists_the_flags_and_exits_0(tmp_path, flag):
    proc = run_main([flag], cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage: python main.py")
    if flag != "--helpfull":  # the program's own flags under a heading, not the script's path
        assert proc.stdout.splitlines()[2] == "flags:" and MAIN not in proc.stdout
    for option in ("--train", "--crop", "--dataset", "--input_fname_pattern", "--output_height", "--epoch",
                   "--batch_size", "--learning_rate", "--beta1", "--z_dist", "--g_steps", "--sample_freq",
                   "--ckpt_freq", "--max_to_keep", "--export_dir", "--log_dir", "--seed", "--recipe", "--ema_decay"):
        assert option in proc.stdout, option


def test_a_closed_pipe_ends_help_quietly(tmp_path):
    # `python main.py --help | head`: the reader is gone before the help is written.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, MAIN, "--help"], cwd=tmp_path, stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert proc.returncode == 141 and proc.stderr == "", proc.stderr[-2000:]


def test_train_resume_test_grid_and_export(workdir):
    common = ["--crop", "--input_height", "36", "--dataset", "FACES", *TINY_FLAGS, "--sample_freq", "2",
              "--ckpt_freq", "2", "--seed", "7"]
    (workdir / "data" / "faces" / "broken.jpg").write_text("not a jpeg")
    first = run_main(["--train", "--epoch", "1", *common], cwd=workdir)
    assert first.returncode == 0, first.stderr[-3000:]
    # An unusable file: one warning line naming it, no traceback; the rest trains.
    warned = [l for l in first.stderr.splitlines() if l.startswith("dcgan_tf: warning:")]
    assert len(warned) == 1 and "skipped 1 of 9 files" in warned[0] and "broken.jpg" in warned[0]
    assert "Traceback" not in first.stderr
    assert "starting afresh" in first.stdout and "trained 2 steps" in first.stdout
    assert "s/step after the first, which took" in first.stdout  # the rate without the tracing
    assert "d_loss" in first.stdout and "g_loss" in first.stdout  # the progress bar's losses
    run = "faces_4_32_32_z8_gf4_df4"

    second = run_main(["--train", "--epoch", "2", "--export", *common], cwd=workdir)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stdout and "(epoch 1, step 2)" in second.stdout
    assert "Epoch 2/2" in second.stdout
    assert sorted(os.listdir(workdir / "samples" / run)) == ["train_00_0002.png", "train_01_0004.png"]
    assert (workdir / "export" / run / "4" / "saved_model.pb").exists()  # the version of step 4
    assert json.loads((workdir / "checkpoints" / run / "config.json").read_text())["epoch"] == 2

    test = run_main(common, cwd=workdir)  # no --train: a test grid from the newest checkpoint
    assert test.returncode == 0, test.stderr[-3000:]
    grids = [f for f in os.listdir(workdir / "samples" / run) if f.startswith("test_")]
    assert len(grids) == 1 and grids[0].endswith(".png") and "ckpt-4" in test.stdout


@pytest.mark.parametrize("setup,args,fragments", [
    ("none", [], ["dataset folder", "does not exist", "data/README.md"]),
    ("empty", [], ["no images matching", "in data/faces"]),
    ("junk", [], ["none of the 2 image files"]),
    ("ok", ["--batch_size", "9"], ["--batch_size 9 is larger than the 8 usable images", "--batch_size 8 or fewer"]),
    ("ok", ["--output_height", "16"], ["--output_height 16 is too small", "at least 32"]),
    ("ok", ["--dataset", "../faces"], ["--dataset must be a plain folder name"]),
    ("ok", ["--learning_rate", "-1"], ["--learning_rate must be greater than 0"]),
])
def test_user_errors_are_one_line(tmp_path, setup, args, fragments):
    folder = tmp_path / "data" / "faces"
    if setup in ("empty", "junk", "ok"):
        folder.mkdir(parents=True)
    if setup == "junk":
        (folder / "a.jpg").write_text("not an image")
        (folder / "b.png").write_bytes(b"")
    if setup == "ok":
        write_images(folder, 8)
    flags = ["--train", "--dataset", "faces", *TINY_FLAGS, *args]
    assert_one_line_error(run_main(flags, cwd=tmp_path), *fragments)
    assert not (tmp_path / "checkpoints").exists()  # stopped before any work


def test_test_mode_without_checkpoint_says_so(tmp_path):
    assert_one_line_error(run_main(["--dataset", "faces", *TINY_FLAGS], cwd=tmp_path),
                          "no trained run of --dataset faces in checkpoints", "train one first with --train")




@pytest.mark.parametrize("args,fragment", [
    (["--precision", "bogus"], "--precision=bogus: value should be one of"),
    (["--epoch", "abc"], "--epoch=abc"),
    (["--no_such_flag"], "Unknown command line flag 'no_such_flag'"),
    (["--dataset", "faces", "extra"], "unexpected argument 'extra': every option is a --flag"),
    (["--train", "True"], "a true/false flag takes no separate value (--train, --notrain or --train=false)"),
])
def test_bad_flag_values_through_main_py_are_one_line(tmp_path, args, fragment):
    proc = run_main(args, cwd=tmp_path)
    assert_one_line_error(proc, fragment, "--help")
    assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1, proc.stderr[-3000:]  # no usage dump
