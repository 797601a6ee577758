"""Run identity and files (dcgan_tf/runs.py): names, lookup by name, the listing, atomic writes."""

from __future__ import annotations

import json
import os

import pytest

from dcgan_tf import runs
from dcgan_tf.config import RunConfig
from dcgan_tf.errors import UserError


def _name(**values):
    return RunConfig.create(dataset="faces", **values).run


def test_default_shape_keeps_the_original_name():
    assert _name(batch_size=16, output_height=32, output_width=48) == "faces_16_32_48"
    assert _name(output_height=64) == "faces_25_64_64"  # simpsons preset: widths 64, z 100


def test_every_model_shaping_option_off_the_preset_gets_a_part():
    assert _name(output_height=64, gf_dim=16, df_dim=16) == "faces_25_64_64_gf16_df16"
    assert _name(output_height=64, z_dim=50, c_dim=1) == "faces_25_64_64_z50_c1"
    assert _name(arch="mlp", hidden_dim=128) == "faces_32_28_28_mlp_h128"
    assert _name(arch="classic", g_leaky=True) == "faces_128_64_64_classic_leaky"
    # Runs differing in any of them never share a name.
    names = {_name(output_height=64, **extra) for extra in
             ({}, {"gf_dim": 32}, {"df_dim": 32}, {"z_dim": 64}, {"c_dim": 1}, {"arch": "classic"})}
    assert len(names) == 6


def test_run_flag_names_the_run_and_is_checked():
    assert _name(run="mine") == "mine"
    with pytest.raises(UserError, match="--run must be a plain folder name"):
        _name(run="../elsewhere")


def test_atomic_path_replaces_whole_or_not_at_all(tmp_path):
    path = str(tmp_path / "sub" / "file.txt")
    runs.write_text(path, "first")
    with pytest.raises(RuntimeError):
        with runs.atomic_path(path) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("killed mid-write")
    assert open(path).read() == "first"
    assert os.listdir(tmp_path / "sub") == ["file.txt"]  # No temporary left behind.
    runs.write_json(path, {"b": 1, "a": [2]})
    assert json.loads(open(path).read()) == {"a": [2], "b": 1}


def test_match_entry_ignores_case_and_prefers_exact(tmp_path):
    (tmp_path / "Faces").mkdir()
    assert runs.match_entry(str(tmp_path), "faces") == "Faces"
    (tmp_path / "faces").mkdir()
    assert runs.match_entry(str(tmp_path), "faces") == "faces"
    assert runs.match_entry(str(tmp_path), "other") is None
    assert runs.match_entry(str(tmp_path / "missing"), "x") is None


def _fake_run(root, name, checkpoint=True, **config):
    folder = root / name
    folder.mkdir(parents=True)
    if config:
        (folder / "config.json").write_text(json.dumps(config))
    if checkpoint:
        (folder / "ckpt-4.index").write_bytes(b"")
    return folder


SHAPE = dict(arch="simpsons", output_height=64, output_width=64, c_dim=3, z_dim=100, hidden_dim=256, g_leaky=False,
             batch_size=25)


def test_listing_shows_step_epoch_and_last_kid(tmp_path):
    folder = _fake_run(tmp_path, "faces_25_64_64_gf16_df16", run="faces_25_64_64_gf16_df16", dataset="faces",
                       gf_dim=16, df_dim=16, epoch=3, **SHAPE)
    (folder / "metrics.csv").write_text("epoch,step,d_loss\n0,4,1.0\n1,8,0.9\n")
    (folder / "quality.json").write_text(json.dumps({"evaluations": [{"step": 8, "kid": 0.31}]}))
    _fake_run(tmp_path, "broken_25_64_64").joinpath("config.json").write_text("{cut")
    (tmp_path / "not_a_run").mkdir()
    found = runs.list_runs(str(tmp_path))
    assert [info.name for info in found] == ["broken_25_64_64", "faces_25_64_64_gf16_df16"]
    line = runs.describe_run(found[1])
    assert "faces, simpsons 64x64, batch 25, widths 16/16" in line and "step 8, epoch 2 of 3, KID 0.310" in line
    # When it last changed: the newest of its metrics and measurements.
    os.utime(folder / "quality.json", (1_800_000_000, 1_800_000_000))
    os.utime(folder / "metrics.csv", (1_700_000_000, 1_700_000_000))
    assert runs.describe_run(runs.list_runs(str(tmp_path))[1]).endswith("KID 0.310, updated 2027-01-15 08:00 UTC")
    assert "config.json damaged" in runs.describe_run(found[0])
    # A stop inside an epoch saved a checkpoint past the last metrics row: the listing says its step.
    (folder / "ckpt-10.index").write_text("")
    assert "step 10, epoch 2 of 3" in runs.describe_run(runs.list_runs(str(tmp_path))[1])


def test_listing_shows_the_kept_best_and_a_run_ended_by_patience(tmp_path):
    folder = _fake_run(tmp_path, "faces_25_64_64", run="faces_25_64_64", dataset="faces", epoch=30,
                       eval_freq=4, keep_best="kid", patience=2, **SHAPE)
    (folder / "metrics.csv").write_text("epoch,step,d_loss\n0,4,1.0\n1,8,0.9\n2,12,0.8\n")
    best = {"metric": "kid", "value": 0.25, "step": 4, "checkpoint": "best/ckpt-4"}
    measured = [{"step": 4, "kid": 0.25}, {"step": 8, "kid": 0.3}]
    (folder / "quality.json").write_text(json.dumps({"evaluations": measured, "best": best}))
    line = runs.describe_run(runs.list_runs(str(tmp_path))[0])
    assert "step 12, epoch 3 of 30, KID 0.300, best KID 0.250 at step 4, updated" in line
    # A second measurement after the best (the same step measured twice counts once): --patience 2 has ended it.
    measured += [{"step": 8, "kid": 0.31}, {"step": 12, "kid": 0.28}]
    (folder / "quality.json").write_text(json.dumps({"evaluations": measured, "best": best}))
    assert "epoch 3 of 30, ended early by --patience, KID 0.280, best KID 0.250 at step 4" in runs.describe_run(
        runs.list_runs(str(tmp_path))[0])
    # Without --patience, or with a best of another metric, the same measurements end nothing.
    assert not runs.patience_spent({"evaluations": measured, "best": best}, "kid", 0)
    assert not runs.patience_spent({"evaluations": measured, "best": best}, "fid", 2)
    assert runs.patience_spent({"evaluations": measured, "best": best}, "kid", 2)
    assert not runs.patience_spent({"evaluations": measured, "best": best}, "kid", 3)


def test_find_run_by_dataset_flags_and_name(tmp_path):
    _fake_run(tmp_path, "faces_25_64_64_gf16_df16", dataset="faces", gf_dim=16, df_dim=16, **SHAPE)
    # One run of the dataset: found with no model flags at all.
    assert runs.find_run(str(tmp_path), "FACES", "", {}, preferred="faces_25_128_128").name == "faces_25_64_64_gf16_df16"
    _fake_run(tmp_path, "faces_25_64_64", dataset="faces", gf_dim=64, df_dim=64, **SHAPE)
    with pytest.raises(UserError, match=r"2 runs of faces .* fit: .*--run NAME"):
        runs.find_run(str(tmp_path), "faces", "", {}, preferred="faces_25_128_128")
    # The name the flags would train wins; flags given narrow the choice.
    assert runs.find_run(str(tmp_path), "faces", "", {}, preferred="faces_25_64_64").name == "faces_25_64_64"
    assert runs.find_run(str(tmp_path), "faces", "", {"gf_dim": 16}, preferred="x").name == "faces_25_64_64_gf16_df16"
    with pytest.raises(UserError, match="no run of faces .* was trained with --gf_dim 8 .*faces_25_64_64"):
        runs.find_run(str(tmp_path), "faces", "", {"gf_dim": 8}, preferred="x")
    assert runs.find_run(str(tmp_path), "faces", "Faces_25_64_64", {}, preferred="x").name == "faces_25_64_64"
    with pytest.raises(UserError, match="no run named nope .*runs there: faces_25_64_64, faces_25_64_64_gf16_df16"):
        runs.find_run(str(tmp_path), "faces", "nope", {}, preferred="x")
    with pytest.raises(UserError, match="no trained run of --dataset cats .*train one first"):
        runs.find_run(str(tmp_path), "cats", "", {}, preferred="x")


def test_legacy_folder_only_for_the_same_model(tmp_path):
    _fake_run(tmp_path, "faces_25_64_64", dataset="faces", gf_dim=16, df_dim=16, **SHAPE)
    values = dict(SHAPE, gf_dim=16, df_dim=16)
    assert runs.legacy_folder(str(tmp_path), "faces_25_64_64", values) == "faces_25_64_64"
    assert runs.legacy_folder(str(tmp_path), "faces_25_64_64", dict(values, gf_dim=32)) is None
    assert runs.legacy_folder(str(tmp_path), "faces_25_32_32", values) is None


def test_damaged_config_is_kept_aside(tmp_path):
    (tmp_path / "config.json").write_text("{cut")
    with pytest.raises(runs.DamagedConfig, match="cannot read"):
        runs.read_config(str(tmp_path))
    kept = runs.keep_aside(str(tmp_path / "config.json"))
    assert open(kept).read() == "{cut" and not (tmp_path / "config.json").exists()
    (tmp_path / "config.json").write_text("{again")
    assert runs.keep_aside(str(tmp_path / "config.json")) != kept  # The first kept copy is never overwritten.


def test_run_folder_of_a_checkpoint_and_of_a_best_one():
    assert runs.run_folder_of(os.path.join("ck", "faces", "ckpt-4")) == (os.path.join("ck", "faces"), False)
    assert runs.run_folder_of(os.path.join("ck", "faces", runs.BEST_DIR, "ckpt-2")) == (os.path.join("ck", "faces"), True)


def test_checkpoint_files_are_the_ckpt_n_index_files_by_step(tmp_path):
    assert runs.checkpoint_files(str(tmp_path / "missing")) == [] and not runs.has_checkpoint(str(tmp_path))
    for name in ("ckpt-10.index", "ckpt-9.index", "ckpt-9.data-00000-of-00001", "ckpt-x.index", "other-3.index",
                 "ckpt-2.index.tmp"):
        (tmp_path / name).write_text("")
    assert not runs.has_checkpoint(str(tmp_path / "missing"))
    assert runs.checkpoint_files(str(tmp_path)) == [str(tmp_path / "ckpt-9"), str(tmp_path / "ckpt-10")]
    (tmp_path / "ckpt-10.index").unlink()
    (tmp_path / "ckpt-9.index").unlink()
    assert not runs.has_checkpoint(str(tmp_path))  # Stray index files are not a checkpoint of the run.


def test_checkpoint_path_names_what_checkpoint_files_finds(tmp_path):
    path = runs.checkpoint_path(str(tmp_path), 1250)
    assert runs.checkpoint_step(path) == 1250
    open(path + ".index", "w").close()
    assert runs.checkpoint_files(str(tmp_path)) == [path]
