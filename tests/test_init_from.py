"""`--train --init_from RUN`: a new run that starts from another run's networks (fine-tuning on other
images), its record in config.json, its resume, and the refusals that keep every run intact."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

from tests.conftest import TINY_FLAGS, TINY_RUN, main_in, tiny_config, write_images

NEW_RUN = "cartoons_4_32_32_z8_gf4_df4"  # TINY_FLAGS' model on the "cartoons" images


def _train(workdir, *args) -> int:
    return main_in(workdir, "--train", "--epoch", "1", "--seed", "1", "--sample_freq", "2", "--ckpt_freq", "2",
                   "--precision", "float32", "--r1_gamma", "0", *args)


def _error(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("dcgan_tf: error:")]
    assert len(lines) == 1, lines
    return lines[0]


def _config(workdir, run) -> dict:
    return json.loads((workdir / "checkpoints" / run / "config.json").read_text())


def test_a_new_run_starts_from_another_runs_networks_resumes_and_is_refused_where_it_would_touch_a_run(
        workdir, capsys):
    assert _train(workdir, *TINY_FLAGS) == 0
    source_files = sorted(os.listdir(workdir / "checkpoints" / TINY_RUN))
    write_images(workdir / "data" / "cartoons", 8, seed=5)
    capsys.readouterr()
    # No model flag: the source run's options (widths 4, z 8, 32x32) are the new run's.
    assert _train(workdir, "--init_from", TINY_RUN, "--dataset", "cartoons", "--batch_size", "4") == 0
    source_checkpoint = os.path.join(str(workdir / "checkpoints"), TINY_RUN, "ckpt-2")
    assert f"starting from the networks of {source_checkpoint}" in capsys.readouterr().out
    saved = _config(workdir, NEW_RUN)
    assert saved["init_from"] == source_checkpoint and saved["dataset"] == "cartoons"
    assert (saved["gf_dim"], saved["df_dim"], saved["z_dim"], saved["output_height"]) == (4, 4, 8, 32)
    assert sorted(os.listdir(workdir / "checkpoints" / TINY_RUN)) == source_files  # the source is untouched

    # The same command again continues the new run from its own checkpoint; the record stays.
    assert _train(workdir, "--init_from", TINY_RUN, "--dataset", "cartoons", "--batch_size", "4",
                  "--epoch", "2") == 0
    assert "resumed from" in capsys.readouterr().out
    assert _config(workdir, NEW_RUN)["init_from"] == source_checkpoint
    capsys.readouterr()
    assert main_in(workdir, "--runs") == 0
    assert f"{NEW_RUN}: cartoons, simpsons 32x32, batch 4, widths 4/4, z 8, from {TINY_RUN}'s ckpt-2" in (
        capsys.readouterr().out)
    # Continued by name alone, it keeps the record too.
    assert _train(workdir, "--run", NEW_RUN, "--dataset", "cartoons", "--epoch", "2") == 0
    assert _config(workdir, NEW_RUN)["init_from"] == source_checkpoint

    # Refusals, each leaving every run as it was.
    capsys.readouterr()
    # Not training.
    assert main_in(workdir, "--init_from", TINY_RUN, "--generate", "1") == 2
    assert "add --train" in _error(capsys)
    # The run this command would train is the source itself.
    assert _train(workdir, "--init_from", TINY_RUN, "--batch_size", "4") == 2
    assert "name the new run with --run NAME" in _error(capsys)
    # A model flag that disagrees with the source.
    assert _train(workdir, "--init_from", TINY_RUN, "--run", "wide", "--gf_dim", "8") == 2
    assert f"run {TINY_RUN} was trained with --gf_dim 4, not 8; use --gf_dim 4" in _error(capsys)
    # No such run; a run without a best checkpoint with --from_best.
    assert _train(workdir, "--init_from", "nothing_here", "--run", "x") == 2
    assert "no run named nothing_here" in (line := _error(capsys)) and "runs there:" in line and TINY_RUN in line
    assert _train(workdir, "--init_from", TINY_RUN, "--run", "x", "--from_best") == 2
    assert "kept no best checkpoint" in _error(capsys)
    # A run with checkpoints of its own is never overwritten by another's networks.
    assert _train(workdir, *TINY_FLAGS, "--run", "mine") == 0
    mine = (workdir / "checkpoints" / "mine" / "config.json").read_text()
    capsys.readouterr()
    assert _train(workdir, "--init_from", TINY_RUN, "--run", "mine") == 2
    assert "run mine already has checkpoints of its own" in _error(capsys)
    assert (workdir / "checkpoints" / "mine" / "config.json").read_text() == mine
    # A run that began from another source is not continued from this one.
    assert _train(workdir, "--init_from", "mine", "--run", NEW_RUN, "--epoch", "2") == 2
    assert f"run {NEW_RUN} began from {source_checkpoint}, not from run mine" in _error(capsys)
    assert sorted(os.listdir(workdir / "checkpoints" / TINY_RUN)) == source_files
    assert not os.path.exists(workdir / "checkpoints" / "wide") and not os.path.exists(workdir / "checkpoints" / "x")

    # Once it has checkpoints, a named run continues without its source (moved away here).
    os.rename(workdir / "checkpoints" / TINY_RUN, workdir / "elsewhere")
    assert _train(workdir, "--init_from", TINY_RUN, "--run", NEW_RUN, "--dataset", "cartoons", "--epoch", "3") == 0
    assert "resumed from" in capsys.readouterr().out


def test_the_new_runs_networks_are_the_sources_and_the_rest_starts_afresh(workdir):
    from dcgan_tf.training import build, run_options

    assert _train(workdir, *TINY_FLAGS, "--ema_decay", "0.9") == 0
    source = build.build_run(build.load_trained(tiny_config(workdir, ema_decay=0.9)).config)  # G and D
    config = run_options.training_run(tiny_config(workdir, train=True, init_from=TINY_RUN, run="tuned", ema_decay=0.9),
                                      given={"init_from", "run"})
    assert config.init_from.endswith(os.path.join(TINY_RUN, "ckpt-2")) and config.run == "tuned"
    run = build.build_run(config)
    assert run.resumed_from is None and run.initialised_from == config.init_from
    for mine, theirs in ((run.model.generator, source.model.generator),
                         (run.model.discriminator, source.model.discriminator),
                         (run.model.ema_generator, source.model.ema_generator)):
        for a, b in zip(mine.weights, theirs.weights, strict=True):  # batch norm's statistics included
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    assert int(run.model.step.numpy()) == 0 and int(source.model.step.numpy()) == 2
    assert int(run.model.g_optimizer.iterations.numpy()) == 0
    # --from_best: the source's best checkpoint (kept by --keep_best in best/).
    from dcgan_tf.training import checkpoints

    best = workdir / "checkpoints" / TINY_RUN / "best"
    os.makedirs(best)
    for name in os.listdir(workdir / "checkpoints" / TINY_RUN):
        if name.startswith("ckpt-2."):
            shutil.copy(workdir / "checkpoints" / TINY_RUN / name, best / name)
    checkpoints.write_state_file(str(best / "checkpoint"), [str(best / "ckpt-2")])
    config = run_options.training_run(tiny_config(workdir, train=True, init_from=TINY_RUN, run="from_best",
                                                  from_best=True), given={"init_from", "run"})
    assert config.init_from == str(best / "ckpt-2")

    # A source without a moving average: the new run's average starts from the source's G.
    assert _train(workdir, *TINY_FLAGS, "--run", "plain", "--ema_decay", "0") == 0
    plain = build.load_trained(tiny_config(workdir, run="plain", ema_decay=0.0))
    config = run_options.training_run(tiny_config(workdir, train=True, init_from=str(workdir / "checkpoints" / "plain"), run="averaged", ema_decay=0.9),
                                      given={"init_from", "run"})
    averaged = build.build_run(config)
    for a, b in zip(averaged.model.ema_generator.weights, plain.model.generator.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
