"""Which run a command means and with which options (dcgan_tf/training/run_options.py), from
config.json files alone: nothing is trained here (the command-line flows are in test_runs_cli.py
and test_init_from.py)."""

from __future__ import annotations

import dataclasses

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


def test_a_named_run_takes_its_saved_options_and_refuses_others(workdir):
    _saved(workdir, run="mine", batch_size=2, sample_num=2, gf_dim=8)
    config = run_options.training_run(tiny_config(workdir, run="mine"), given=("run",))
    assert (config.batch_size, config.sample_num, config.gf_dim) == (2, 2, 8)
    with pytest.raises(UserError, match="run mine was trained with --gf_dim 8, not 4"):
        run_options.training_run(tiny_config(workdir, run="mine"), given=("run", "gf_dim"))


def test_a_continued_run_keeps_its_seed_and_channels(workdir):
    saved = _saved(workdir, seed=7, c_dim=1)
    # This command: the same run (by name), its channels left to the data, another seed.
    config = run_options.continue_saved_run(dataclasses.replace(saved, seed=1, c_dim=0))
    assert (config.seed, config.c_dim) == (7, 1)
