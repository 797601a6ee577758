"""bench/quality.py: the variants it plans, and the curves, table and plot it draws from runs' quality.json."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
import quality  # noqa: E402

from tests.conftest import write_images  # noqa: E402


def test_variants_are_recipes_or_named_flags():
    assert quality.parse_variant("original") == ("original", ["--recipe", "original"])
    assert quality.parse_variant("noavg=--ema_decay 0") == ("noavg", ["--recipe", "default", "--ema_decay", "0"])
    assert quality.parse_variant("x=--recipe original --diffaug cutout")[1] == ["--recipe", "original", "--diffaug", "cutout"]
    with pytest.raises(SystemExit):
        quality.parse_variant("bad name=--seed 1")


def test_plan_gives_each_variant_and_seed_its_own_resumable_run(tmp_path):
    write_images(tmp_path / "frames", 10)
    args = quality.parse_args(["--data", str(tmp_path / "frames"), "--batch", "5", "--steps", "7",
                               "--recipes", "default", "original", "--seeds", "1", "2", "--out", str(tmp_path / "out")])
    runs = quality.plan(args)
    assert [name for name, _, _ in runs] == ["default_s1", "original_s1", "default_s2", "original_s2"]
    assert len({work for _, work, _ in runs}) == 4
    argv = runs[1][2]
    assert argv[argv.index("--epoch") + 1] == "4"  # 7 steps at 2 steps an epoch, rounded up
    assert argv[argv.index("--recipe") + 1] == "original" and argv[argv.index("--seed") + 1] == "1"
    assert argv[argv.index("--checkpoint_dir") + 1].startswith(str(tmp_path / "out" / "runs" / "original_s1"))


def test_an_existing_run_is_never_overwritten_without_reuse(tmp_path):
    write_images(tmp_path / "frames", 10)
    args = quality.parse_args(["--data", str(tmp_path / "frames"), "--recipes", "default", "--out", str(tmp_path)])
    runs = quality.plan(args)
    os.makedirs(runs[0][1])
    with pytest.raises(SystemExit, match="--reuse"):
        quality.train_all(args, runs)


def _quality_file(folder, evaluations):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "quality.json"), "w") as f:
        json.dump({"evaluations": evaluations, "best": {"metric": "kid", "value": 0.2, "step": 1000}}, f)


def test_curves_table_and_plot_come_from_each_run_s_quality_json(tmp_path):
    write_images(tmp_path / "frames", 10)
    args = quality.parse_args(["--data", str(tmp_path / "frames"), "--out", str(tmp_path / "out")])
    runs = quality.plan(args)
    default_work, original_work = runs[0][1], runs[1][1]
    _quality_file(os.path.join(default_work, "checkpoints", "frames_25_64_64"), [
        {"step": 500, "kid": 0.4, "kid_std": 0.01, "fid": 300.0, "kid_live": 0.45, "fid_live": 310.0},
        {"step": 1000, "kid": 0.2, "kid_std": 0.01, "fid": 200.0, "kid_live": 0.3, "fid_live": 250.0}])
    # A resumed run measures its last step twice: the newer record counts.
    _quality_file(os.path.join(original_work, "checkpoints", "frames_25_64_64"), [
        {"step": 500, "kid": 0.5, "kid_std": 0.01, "fid": 350.0},
        {"step": 500, "kid": 0.48, "kid_std": 0.01, "fid": 349.0}])
    curves = quality.collect(runs)
    assert curves["default_s1"]["step"] == [500, 1000] and curves["default_s1"]["kid_live"] == [0.45, 0.3]
    assert curves["original_s1"]["kid"] == [0.48] and curves["original_s1"]["kid_live"] == [None]
    md = quality.table(curves).splitlines()
    assert md[0] == "| step | default_s1 KID | original_s1 KID |"
    assert md[2] == "| 500 | 0.400 (live 0.450) | 0.480 |" and md[3] == "| 1000 | 0.200 (live 0.300) |  |"
    path = quality.plot(curves, 64, str(tmp_path / "kid.png"), "test")
    from PIL import Image

    assert Image.open(path).size == (800, 450)


def test_start_from_copies_a_run_as_it_was_at_that_step(tmp_path):
    source = tmp_path / "runs" / "default_s1"
    folder = source / "checkpoints" / "frames_25_64_64"
    _quality_file(str(folder), [{"step": 1000, "kid": 0.3}, {"step": 2000, "kid": 0.2}, {"step": 3000, "kid": 0.25}])
    for step in (2000, 3000):
        (folder / f"ckpt-{step}.index").write_text("i")
        (folder / f"ckpt-{step}.data-00000-of-00001").write_text("d")
    (folder / "best").mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "metrics.csv").write_text("epoch,step,d_loss\n0,1000,1.0\n1,2000,0.9\n2,3000,0.8\n")
    grids = source / "samples" / "frames_25_64_64"
    grids.mkdir(parents=True)
    for name in ("train_79_2000.png", "train_119_3000.png"):
        (grids / name).write_bytes(b"png")
    with pytest.raises(SystemExit, match="no checkpoint of step 1000"):
        quality.parse_start(f"{source}:1000")
    src, step = quality.parse_start(f"{source}:2000")
    quality.branch(src, step, str(tmp_path / "runs" / "r1_s1"))
    copy = tmp_path / "runs" / "r1_s1" / "checkpoints" / "frames_25_64_64"
    assert sorted(p.name for p in copy.iterdir()) == ["best", "checkpoint", "ckpt-2000.data-00000-of-00001",
                                                      "ckpt-2000.index", "metrics.csv", "quality.json"]
    assert 'model_checkpoint_path: "ckpt-2000"' in (copy / "checkpoint").read_text()
    copied = json.loads((copy / "quality.json").read_text())
    assert [r["step"] for r in copied["evaluations"]] == [1000, 2000] and copied["best"]["step"] == 1000
    assert (copy / "metrics.csv").read_text().splitlines()[-1] == "1,2000,0.9"
    assert os.listdir(tmp_path / "runs" / "r1_s1" / "samples" / "frames_25_64_64") == ["train_79_2000.png"]
