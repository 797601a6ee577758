"""Runs by name through the command line (in-process): separate folders for differently shaped runs,
use by name without the model flags, --run, --runs, damaged and old-style run folders."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import TINY_FLAGS, TINY_RUN, main_in


def _train(workdir, *args):
    assert main_in(workdir, "--train", "--epoch", "1", "--seed", "1", "--sample_freq", "2", "--ckpt_freq", "2",
                 *TINY_FLAGS, *args) == 0


def _must_not_build(config):
    raise AssertionError("built the networks")


def _error(capsys):
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("dcgan_tf: error:")]
    assert len(lines) == 1, lines
    return lines[0]


def test_runs_by_name(workdir, capsys):
    _train(workdir)
    # Used by name: no model flag needed once the dataset has one run.
    assert main_in(workdir, "--generate", "2", "--seed", "3") == 0
    assert sorted(os.listdir(workdir / "samples" / TINY_RUN / "step2" / "generate_s3")) == ["0000.png", "0001.png"]
    # A flag that disagrees with every run of the dataset is refused, naming the run.
    assert main_in(workdir, "--generate", "1", "--gf_dim", "8") == 2
    assert "no run of faces" in (line := _error(capsys)) and "trained with --gf_dim 8" in line and TINY_RUN in line

    # A second shape of the same dataset: its own folders everywhere, nothing of the first touched.
    before = sorted(os.listdir(workdir / "samples" / TINY_RUN))
    _train(workdir, "--gf_dim", "8")
    other = "faces_4_32_32_z8_gf8_df4"
    for root in ("checkpoints", "samples", "logs"):
        assert sorted(os.listdir(workdir / root)) == [TINY_RUN, other], root
    assert sorted(os.listdir(workdir / "samples" / TINY_RUN)) == before
    capsys.readouterr()

    # Two runs fit: one line lists both and says how to pick.
    assert main_in(workdir, "--generate", "1") == 2
    line = _error(capsys)
    assert "2 runs of faces" in line and TINY_RUN in line and other in line and "--run NAME" in line
    # Model flags that pick one, or --run, choose.
    assert main_in(workdir, "--generate", "1", "--gf_dim", "8", "--seed", "4") == 0
    assert os.path.isdir(workdir / "samples" / other / "step2" / "generate_s4")
    assert main_in(workdir, "--run", TINY_RUN, "--generate", "1", "--seed", "5") == 0
    assert os.path.isdir(workdir / "samples" / TINY_RUN / "step2" / "generate_s5")
    # --run with a flag that disagrees: refused with the run's value.
    assert main_in(workdir, "--run", TINY_RUN, "--generate", "1", "--gf_dim", "8") == 2
    assert f"run {TINY_RUN} was trained with --gf_dim 4, not 8" in _error(capsys)

    # --train of a named run takes its images too: another --dataset is refused, nothing rewritten.
    os.makedirs(workdir / "data" / "other")
    for name in os.listdir(workdir / "data" / "faces"):
        os.link(workdir / "data" / "faces" / name, workdir / "data" / "other" / name)
    saved = (workdir / "checkpoints" / TINY_RUN / "config.json").read_text()
    assert main_in(workdir, "--run", TINY_RUN, "--train", "--epoch", "2", "--dataset", "other") == 2
    assert f"run {TINY_RUN} was trained with --dataset faces, not other" in _error(capsys)
    assert (workdir / "checkpoints" / TINY_RUN / "config.json").read_text() == saved
    # Nor does another recipe continue it (found by its options, no --run): refused, nothing rewritten.
    assert main_in(workdir, "--train", "--epoch", "2", *TINY_FLAGS, "--recipe", "original", "--lecam_weight", "0") == 2
    line = _error(capsys)
    assert f"run {TINY_RUN} was trained with --recipe default, not --recipe original; drop --recipe" in line
    assert "--run NEW_NAME" in line and f"--init_from {TINY_RUN}" in line
    assert (workdir / "checkpoints" / TINY_RUN / "config.json").read_text() == saved

    # --runs lists both with their progress.
    capsys.readouterr()
    assert main_in(workdir, "--runs") == 0
    listing = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in listing] == [TINY_RUN, other]
    assert all("faces, simpsons 32x32, batch 4" in line and "step 2, epoch 1 of 1" in line for line in listing)


def test_damaged_config_is_rebuilt_from_a_checkpoint_that_fits(workdir, capsys):
    _train(workdir)
    folder = workdir / "checkpoints" / TINY_RUN
    saved = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text('{"cut": ')
    # What a training in another process may have there: a checkpoint being written, no list file.
    os.makedirs(folder / "ckpt-9_temp")
    os.remove(folder / "checkpoint")
    # Test mode still finds the checkpoint (never "no checkpoint"), rebuilds config.json, keeps the damaged one.
    with pytest.warns(Warning) as warned:
        assert main_in(workdir, *TINY_FLAGS) == 0
    # The whole run was built to check D against the options, read only: the training's files stand.
    assert (folder / "ckpt-9_temp").is_dir() and not (folder / "checkpoint").exists()
    said = " ".join(str(w.message) for w in warned)
    assert "is damaged" in said and "rebuilt" in said
    assert (folder / "config.json.damaged").read_text() == '{"cut": '
    rebuilt = json.loads((folder / "config.json").read_text())
    assert {k: rebuilt[k] for k in ("gf_dim", "df_dim", "z_dim", "c_dim", "run")} == \
           {k: saved[k] for k in ("gf_dim", "df_dim", "z_dim", "c_dim", "run")}

    # Damaged again, and options that do not fit the checkpoint: the message says what to give.
    (folder / "config.json").write_text("[]")
    with pytest.warns(Warning, match="is damaged"):
        assert main_in(workdir, "--run", TINY_RUN, "--gf_dim", "8", "--df_dim", "4", "--z_dim", "8",
                       "--output_height", "32", "--batch_size", "4") == 2
    line = _error(capsys)
    assert "no readable config.json" in line and "give the options it was trained with" in line
    assert (folder / "config.json").read_text() == "[]"  # Nothing rewritten from options that did not fit.


def test_run_named_the_old_way_is_found_and_resumed(workdir, capsys):
    _train(workdir)
    legacy = workdir / "checkpoints" / "faces_4_32_32"
    os.rename(workdir / "checkpoints" / TINY_RUN, legacy)
    os.rename(workdir / "samples" / TINY_RUN, workdir / "samples" / "faces_4_32_32")
    saved = json.loads((legacy / "config.json").read_text())
    del saved["run"]
    (legacy / "config.json").write_text(json.dumps(saved))
    assert main_in(workdir, "--generate", "1", "--seed", "2") == 0
    assert os.path.isdir(workdir / "samples" / "faces_4_32_32" / "step2" / "generate_s2")
    capsys.readouterr()
    assert main_in(workdir, "--train", "--epoch", "2", *TINY_FLAGS) == 0
    out = capsys.readouterr().out
    assert "run faces_4_32_32;" in out and "resumed from" in out
    assert not (workdir / "checkpoints" / TINY_RUN).exists()


def test_pictures_of_a_later_checkpoint_leave_the_earlier_ones(workdir):
    _train(workdir)
    assert main_in(workdir, "--generate", "2", "--grid", "--seed", "3") == 0
    earlier = workdir / "samples" / TINY_RUN / "step2" / "generate_s3_n2.png"
    kept = earlier.read_bytes()
    assert main_in(workdir, "--train", "--epoch", "2", *TINY_FLAGS) == 0  # resumes: steps 3 and 4
    assert main_in(workdir, "--generate", "2", "--grid", "--seed", "3") == 0
    later = workdir / "samples" / TINY_RUN / "step4" / "generate_s3_n2.png"
    assert earlier.read_bytes() == kept and later.read_bytes() != kept


def test_resumed_run_keeps_its_own_plan(workdir, capsys, monkeypatch):
    # Started with a sample count of its own and resumed by the same options without it: the run's
    # checkpoints hold 3 sample z, so it continues with 3 (not the batch size's default, 4).
    _train(workdir, "--sample_num", "3")
    assert main_in(workdir, "--train", "--epoch", "2", "--seed", "1", "--sample_freq", "2", "--ckpt_freq", "2",
                   *TINY_FLAGS) == 0, capsys.readouterr().err
    saved = json.loads((workdir / "checkpoints" / TINY_RUN / "config.json").read_text())
    assert saved["sample_num"] == 3 and saved["epoch"] == 2
    # Without --epoch it goes on to its own 2 epochs (done), not the default's 10000, and says so
    # from the checkpoint's file without building the training; the command's later action loads it.
    capsys.readouterr()
    from dcgan_tf.training import train as training

    monkeypatch.setattr(training, "build_run", _must_not_build)
    assert main_in(workdir, "--train", "--export", *TINY_FLAGS) == 0
    assert f"the run {TINY_RUN} already finished 2 epochs" in capsys.readouterr().out
    assert (workdir / "export" / TINY_RUN / "4" / "saved_model.pb").exists()
    monkeypatch.undo()
    assert json.loads((workdir / "checkpoints" / TINY_RUN / "config.json").read_text()) == saved
    # A count given that differs from the checkpoints' is still refused, in one line.
    assert main_in(workdir, "--train", "--epoch", "3", "--sample_num", "5", *TINY_FLAGS) == 2
    assert "different number of sample images" in _error(capsys)
