"""Which run a command means and with which options (dcgan_tf/training/run_options.py), from
config.json files alone: nothing is trained here (the command-line flows are in test_runs_cli.py
and test_init_from.py)."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from dcgan_tf.errors import UserError
from dcgan_tf.training import run_options
from tests.conftest import TINY_RUN, tiny_config


def _saved(workdir, **values):
    """A run folder holding only the config.json of tiny_config(**values)."""
    config = tiny_config(workdir, **values)
    config.save(config.run_checkpoint_dir)
    return config


def test_a_run_found_by_its_options_keeps_its_own_sample_count(workdir):
    _saved(workdir, sample_num=3)
    assert tiny_config(workdir).run == TINY_RUN and tiny_config(workdir).sample_num == 4
    assert run_options.training_run(tiny_config(workdir), given=()).sample_num == 3
    # One given on the command line is this command's (the checkpoint decides whether it fits).
    assert run_options.training_run(tiny_config(workdir, sample_num=5), given=("sample_num",)).sample_num == 5
    # A run without a config.json yet: this command's.
    other = tiny_config(workdir, gf_dim=8)
    assert run_options.training_run(other, given=()).sample_num == 4


def test_a_continued_run_keeps_its_own_plan_unless_a_flag_changes_it(workdir):
    _saved(workdir, epoch=7, eval_freq=4, eval_samples=10, keep_best="kid", ckpt_freq=6, sample_freq=3,
           max_to_keep=2)
    mine = tiny_config(workdir)  # This command's values: 1 epoch, no measurements.
    assert (mine.epoch, mine.eval_freq, mine.keep_best) == (1, 0, "none")
    config = run_options.training_run(mine, given=())
    assert (config.epoch, config.eval_freq, config.eval_samples, config.keep_best, config.ckpt_freq,
            config.sample_freq, config.max_to_keep) == (7, 4, 10, "kid", 6, 3, 2)
    # Given flags change the plan: a longer run, measured less often.
    config = run_options.training_run(tiny_config(workdir, epoch=20, eval_freq=8), given=("epoch", "eval_freq"))
    assert (config.epoch, config.eval_freq, config.eval_samples, config.keep_best) == (20, 8, 10, "kid")
    # Measurements turned off take the kept best with them rather than refusing the run's --keep_best.
    config = run_options.training_run(tiny_config(workdir, eval_freq=0), given=("eval_freq",))
    assert (config.eval_freq, config.keep_best) == (0, "none")
    # The run's frequencies must still fit this command's --steps_per_execution.
    with pytest.raises(UserError, match="--sample_freq 3 is not a multiple of --steps_per_execution 2"):
        run_options.training_run(tiny_config(workdir, steps_per_execution=2, sample_freq=2, ckpt_freq=2),
                                 given=("steps_per_execution",))


def test_a_continued_runs_patience_goes_with_its_kept_best(workdir):
    _saved(workdir, epoch=7, eval_freq=4, keep_best="kid", patience=3)
    assert run_options.training_run(tiny_config(workdir), given=()).patience == 3
    config = run_options.training_run(tiny_config(workdir, patience=5, eval_freq=4, keep_best="kid"),
                                      given=("patience", "eval_freq", "keep_best"))
    assert config.patience == 5
    # Measurements turned off, or the kept best, take --patience with them.
    config = run_options.training_run(tiny_config(workdir, eval_freq=0), given=("eval_freq",))
    assert (config.keep_best, config.patience) == ("none", 0)
    config = run_options.training_run(tiny_config(workdir, eval_freq=4), given=("eval_freq", "keep_best"))
    assert (config.keep_best, config.patience) == ("none", 0)


def test_a_named_run_takes_its_saved_options_and_refuses_others(workdir):
    _saved(workdir, run="mine", batch_size=2, sample_num=2, gf_dim=8)
    config = run_options.training_run(tiny_config(workdir, run="mine"), given=("run",))
    assert (config.batch_size, config.sample_num, config.gf_dim) == (2, 2, 8)
    with pytest.raises(UserError, match="run mine was trained with --gf_dim 8, not 4"):
        run_options.training_run(tiny_config(workdir, run="mine"), given=("run", "gf_dim"))


def test_a_continued_run_keeps_its_seed_recipe_and_channels(workdir):
    saved = _saved(workdir, seed=7, c_dim=1, r1_gamma=0.5)
    # This call (a library train(config), say): the same run, its channels left to the data, another
    # seed and R1 weight. Before the run's first checkpoint nothing depends on them yet: this call's
    # start it.
    other = dataclasses.replace(saved, seed=1, c_dim=0, r1_gamma=0.1)
    config = run_options.continue_saved_run(other)
    assert (config.seed, config.c_dim, config.r1_gamma) == (1, 1, 0.1)
    _with_checkpoint(saved)
    config = run_options.continue_saved_run(other)
    assert (config.seed, config.c_dim, config.r1_gamma) == (7, 1, 0.5)


def _with_checkpoint(config):
    """Marks `config`'s run folder as holding a checkpoint (an index file is what runs.has_checkpoint sees)."""
    open(f"{config.run_checkpoint_dir}/ckpt-2.index", "w").close()
    return config


def test_a_run_with_checkpoints_continues_with_its_own_training_options(workdir):
    saved = _with_checkpoint(_saved(workdir, recipe="original", beta2=0.99, diffaug="cutout", seed=7))
    assert (saved.learning_rate, saved.ema_decay) == (1e-4, 0.0)  # The original recipe's.
    # This command: the default recipe's values, none of them given: the run's own are kept.
    config = run_options.training_run(tiny_config(workdir, epoch=3), given=("epoch",))
    assert (config.recipe, config.learning_rate, config.d_learning_rate, config.ema_decay, config.beta2,
            config.diffaug, config.seed, config.epoch) == ("original", 1e-4, 1e-4, 0.0, 0.99, "cutout", 7, 3)
    # Given with the run's values: accepted. Given with others: refused, every one of them named.
    same = tiny_config(workdir, recipe="original", beta2=0.99)
    assert run_options.training_run(same, given=("recipe", "beta2")).beta2 == 0.99
    with pytest.raises(UserError, match=r"run faces_4_32_32_z8_gf4_df4 was trained with --recipe original "
                                        r"--diffaug cutout, not --recipe default --diffaug ''; drop --recipe "
                                        r"--diffaug to continue it as it was trained, or train a new run"):
        run_options.training_run(tiny_config(workdir, diffaug=""), given=("recipe", "diffaug", "beta1"))
    # A named run: the same.
    _with_checkpoint(_saved(workdir, run="mine", r1_gamma=0.5))
    with pytest.raises(UserError, match="run mine was trained with --r1_gamma 0.5, not --r1_gamma 0.0; drop --r1_gamma"):
        run_options.training_run(tiny_config(workdir, run="mine"), given=("run", "r1_gamma"))
    assert run_options.training_run(tiny_config(workdir, run="mine"), given=("run",)).r1_gamma == 0.5


def test_a_run_without_checkpoints_takes_this_command_s_training_options(workdir):
    _saved(workdir, recipe="original")
    config = run_options.training_run(tiny_config(workdir, learning_rate=3e-4), given=("learning_rate",))
    assert (config.recipe, config.learning_rate) == ("default", 3e-4)


def test_a_run_saved_before_an_option_existed_continues_without_it(workdir):
    config = _with_checkpoint(_saved(workdir))
    path = f"{config.run_checkpoint_dir}/config.json"
    with open(path) as f:
        old = json.load(f)
    for name in ("ema_rampup", "lecam_weight", "cr_weight", "cr_images", "d_dropout", "d_minibatch_std",
                 "d_spectral_norm", "mirror", "g_topk", "g_fresh_z", "cr_until"):
        del old[name]
    with open(path, "w") as f:
        json.dump(old, f)
    continued = run_options.training_run(tiny_config(workdir, lecam_weight=0.1, cr_weight=1.0, cr_images="real",
                                                     d_dropout=0.4, d_minibatch_std=True, d_spectral_norm=True,
                                                     g_topk=0.5, g_fresh_z=True, cr_until=100),
                                         given=())
    assert (continued.ema_rampup, continued.lecam_weight, continued.cr_weight, continued.cr_images,
            continued.d_dropout, continued.d_minibatch_std, continued.d_spectral_norm,
            continued.mirror, continued.g_topk, continued.g_fresh_z, continued.cr_until) == (
        1 / 9, 0.0, 0.0, "both", 0.0, False, False, False, 1.0, False, 0)


@pytest.mark.parametrize("given", [(), ("learning_rate",)])
def test_a_run_started_from_a_64x64_run_takes_the_recipes_learning_rate_at_64(workdir, given):
    # The default recipe learns at 1e-4 from 128x128 up and at 2e-4 below; a new run that takes its
    # size from its source (--init_from) takes that size's rate, unless the rate was given.
    from dcgan_tf.config import RunConfig

    folders = {k: str(workdir / k) for k in ("checkpoint_dir", "sample_dir", "log_dir")}
    source = RunConfig.create(data_dir=str(workdir / "data"), dataset="faces", output_height=64, seed=1, **folders)
    source.save(source.run_checkpoint_dir)
    with open(os.path.join(source.run_checkpoint_dir, "ckpt-5.index"), "w"):  # Its newest checkpoint.
        pass
    rate = 3e-4 if given else None
    new = RunConfig.create(data_dir=str(workdir / "data"), dataset="faces", seed=1, train=True,
                           init_from=source.run, run="finer", learning_rate=rate, **folders)
    assert (new.output_height, new.learning_rate) == (128, rate or 1e-4)
    started = run_options.initialised_run(new, given=("init_from", "run") + given)
    assert started.output_height == 64 and started.init_from.endswith("ckpt-5")
    assert (started.learning_rate, started.d_learning_rate, started.g_learning_rate) == ((rate or 2e-4),) * 3
