"""Which run a command means, and the options it runs with: `--train` (a run named by `--run`, by
its options, or a new one begun from another with `--init_from`), a run continued from its saved
config.json, and a trained run found for sampling, evaluation or export. Options only: the objects
are built in build.py.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Collection, Optional

from dcgan_tf import runs
from dcgan_tf.config import (BEFORE_THE_OPTION, PRESETS, RunConfig, check_same_model, check_same_precision,
                             recipe_at_new_height)
from dcgan_tf.errors import RunWarning, UserError
from dcgan_tf.training import checkpoints, precision


def training_run(config: RunConfig, given: Collection[str]) -> RunConfig:
    """The run `--train` trains: `--run NAME` of a trained run takes its model options from its
    config.json (flags given must agree); otherwise the run these options name, or the folder of the
    same model trained under the original's plain name before names had suffixes. Either way a run
    that exists continues as _continued says. With --init_from, a new run with the source run's model
    options (see initialised_run)."""
    if config.init_from:
        return initialised_run(config, given)
    if "run" in given:
        name = runs.match_entry(config.checkpoint_dir, config.run) or config.run
        config = dataclasses.replace(config, run=name)
        saved = _readable_config(config.run_checkpoint_dir)
        return _continued(run_model_options(config, saved, given), saved, given) if saved else config
    if not os.path.isdir(config.run_checkpoint_dir):
        legacy = runs.legacy_folder(
            config.checkpoint_dir,
            runs.base_name(config.dataset, config.batch_size, config.output_height, config.output_width),
            config.to_dict())
        if legacy:
            config = dataclasses.replace(config, run=legacy)
    saved = _readable_config(config.run_checkpoint_dir) or {}
    return _continued(config, saved, given) if saved else config


def _continued(config: RunConfig, saved: dict, given: Collection[str]) -> RunConfig:
    """`config` continuing its run (`saved`: its config.json) by `--train`: with the run's own plan
    where no flag changes it (_own_plan), and once it has checkpoints its own training options
    (_own_training_options)."""
    return _own_training_options(_own_plan(config, saved, given), saved, given)


# A run's plan: how long it trains and what it writes and measures on the way. A continued run keeps
# its own where the command gives no other value, so `--train --run NAME` goes on to the run's own
# epoch count, measuring as before; a flag changes it (a finished run is extended by a larger --epoch).
# sample_num also keeps the checkpoints' fixed sample z (its default follows the batch size, which may
# be the preset's and not the run's).
PLAN_FIELDS = ("epoch", "sample_freq", "sample_num", "ckpt_freq", "max_to_keep", "eval_freq", "eval_samples",
               "keep_best", "patience")


def _own_plan(config: RunConfig, saved: dict, given: Collection[str]) -> RunConfig:
    """`config` with the PLAN_FIELDS of its run's config.json (`saved`) that the command did not give."""
    values = {name: saved[name] for name in PLAN_FIELDS
              if name not in given and name in saved and isinstance(saved[name], type(getattr(config, name)))}
    if "eval_freq" in given and not config.eval_freq and "keep_best" not in given:
        values["keep_best"] = "none"  # Measurements turned off: nothing to keep the best by.
    if values.get("keep_best", config.keep_best) == "none" and "patience" not in given:
        values["patience"] = 0  # No kept best: nothing to end early by.
    config = dataclasses.replace(config, **values)
    config.validate()  # The run's values with this command's (e.g. frequencies against --steps_per_execution).
    return config


# What a run trains with besides its networks' shapes: its data, its recipe and its seed. A run that
# has checkpoints continues with its own; a flag that asks for another value is refused, so another
# recipe never continues (and rewrites the record of) a run trained with this one. The plan
# (PLAN_FIELDS), precision and the machine's options may change.
TRAINING_FIELDS = ("input_fname_pattern", "crop", "input_height", "input_width", "z_dist", "recipe",
                   "learning_rate", "d_learning_rate", "g_learning_rate", "beta1", "beta2", "g_steps", "g_topk",
                   "g_fresh_z", "real_label_low", "real_label_high", "fake_label_low", "fake_label_high",
                   "label_flip_prob", "ema_decay", "ema_rampup", "r1_gamma", "r1_target", "lecam_weight",
                   "cr_weight", "cr_until", "cr_images", "d_dropout", "d_minibatch_std", "d_spectral_norm", "diffaug",
                   "diffaug_target", "mirror", "seed")


def _own_training_options(config: RunConfig, saved: dict, given: Collection[str]) -> RunConfig:
    """`config` continuing its run (`saved`: its config.json): once the run has checkpoints, with the
    run's TRAINING_FIELDS; UserError, naming all of them, for flags given with other values."""
    if not runs.has_checkpoint(config.run_checkpoint_dir):
        return config  # Nothing trained yet: this command's options start it.
    values, differing = {}, []
    for name in TRAINING_FIELDS:
        if name not in saved and name not in BEFORE_THE_OPTION:
            continue  # Not recorded by the version that saved the run: this command's.
        theirs = saved.get(name, BEFORE_THE_OPTION.get(name))
        if name in given and getattr(config, name) != theirs:
            differing.append(name)
        values[name] = theirs
    if differing:
        was = " ".join(f"--{name} {_shown(values[name])}" for name in differing)
        asked = " ".join(f"--{name} {_shown(getattr(config, name))}" for name in differing)
        raise UserError(f"run {config.run} was trained with {was}, not {asked}; drop "
                        f"{' '.join('--' + name for name in differing)} to continue it as it was trained, or "
                        f"train a new run with them: --run NEW_NAME (with --init_from {config.run} to start "
                        f"from its weights).")
    return dataclasses.replace(config, **values)


def _shown(value) -> str:
    """A value as it would be typed on the command line."""
    return "''" if value == "" else str(value)


# Options a new run takes from the run it starts from: its networks' shapes and their input.
_INITIAL_FIELDS = runs.MODEL_FIELDS + ("z_dist",)


def initialised_run(config: RunConfig, given: Collection[str]) -> RunConfig:
    """`--train --init_from SOURCE`: `config` with SOURCE's model options (flags given must agree) and
    `init_from` resolved to the absolute path of the checkpoint the new run starts from (SOURCE's
    newest, or its best with --from_best). The run trained is named as usual (or by --run) and is not
    SOURCE itself. Once it has checkpoints of its own it continues from them (SOURCE need not exist
    then), if it began from SOURCE; a run that began otherwise is refused."""
    typed = config.init_from
    location = os.path.normpath(typed)
    root, name = (os.path.split(location) if os.sep in location or (os.altsep and os.altsep in location)
                  else (config.checkpoint_dir, location))  # A run folder, or a run's name.
    source_folder = os.path.join(root, runs.match_entry(root, name) or name)
    if "run" in given:  # Named: a run that has checkpoints continues without looking at the source.
        config = dataclasses.replace(config, run=runs.match_entry(config.checkpoint_dir, config.run) or config.run)
        _check_not_the_source(config, typed, source_folder)
        resumed = _resumed_initialised_run(config, typed, source_folder, given)
        if resumed:
            return resumed
    source = _source_run(typed, root, name)
    values = {}
    for field in _INITIAL_FIELDS:
        if field not in source.config or (field == "c_dim" and not source.config[field]):
            continue
        mine, theirs = getattr(config, field), source.config[field]
        # A flag given must agree; so must --arch, whose preset decides the recipe's other defaults.
        if mine != theirs and (field in given or field == "arch") and not (field == "c_dim" and not mine):
            raise UserError(f"--init_from {typed}: run {source.name} was trained with --{field} {theirs}, not "
                            f"{mine}; use --{field} {theirs} (a new run has its source's networks), or start "
                            f"from another run.")
        values[field] = theirs
    previous_height = config.output_height
    config = dataclasses.replace(config, **values, init_from=_start_checkpoint(config, typed, source))
    # The source's size may call for other recipe values (the learning rate from 128x128 up).
    config = recipe_at_new_height(config, previous_height, given)
    if "run" not in given:
        derived = runs.default_run_name(config.to_dict(), PRESETS[config.arch])
        config = dataclasses.replace(config, run=runs.match_entry(config.checkpoint_dir, derived) or derived)
        _check_not_the_source(config, typed, source.folder)
        resumed = _resumed_initialised_run(config, typed, source.folder, given)
        if resumed:
            return resumed
    return config


def _check_not_the_source(config: RunConfig, typed: str, source_folder: str) -> None:
    if os.path.realpath(config.run_checkpoint_dir) == os.path.realpath(source_folder):
        raise UserError(f"--init_from {typed}: that is run {config.run}, the one this command would train; name "
                        f"the new run with --run NAME.")


def _source_run(typed: str, root: str, name: str) -> runs.RunInfo:
    """The run --init_from names (`name` under `root`), with a readable config.json."""
    listed, wanted = runs.list_runs(root), runs.match_entry(root, name)
    found = [info for info in listed if info.name == wanted]
    if not found:
        there = ", ".join(info.name for info in listed) or "none"
        raise UserError(f"--init_from {typed}: no run named {name} in {root} (runs there: {there}); give the name "
                        f"of a trained run under --checkpoint_dir, or its folder.")
    source = found[0]
    if source.config is None:
        raise UserError(f"--init_from {typed}: run {source.name} has no readable config.json, so its model options "
                        f"are unknown; let a test grid of it rebuild the file first (python main.py --run "
                        f"{source.name} --checkpoint_dir {root} and the model flags it was trained with), then "
                        f"start from it.")
    return source


def _start_checkpoint(config: RunConfig, typed: str, source: runs.RunInfo) -> str:
    """The absolute path of the checkpoint of `source` a new run starts from."""
    if config.from_best:
        from dcgan_tf.quality.evaluate import best_checkpoint

        start = best_checkpoint(source.folder)
        if start is None:
            raise UserError(f"--init_from {typed} --from_best: run {source.name} kept no best checkpoint "
                            f"(--keep_best); drop --from_best to start from its newest.")
    else:
        start = checkpoints.newest(source.folder)
        if start is None:
            raise UserError(f"--init_from {typed}: run {source.name} has no checkpoint yet; train it first, or "
                            f"start from another run.")
    return os.path.abspath(start)


def _resumed_initialised_run(config: RunConfig, typed: str, source_folder: str,
                             given: Collection[str]) -> Optional[RunConfig]:
    """`config` continuing its run when that has checkpoints (None when it has none): the run must have
    begun from a checkpoint of `source_folder`; its own record of that checkpoint is kept."""
    if not runs.has_checkpoint(config.run_checkpoint_dir):
        return None
    saved = _readable_config(config.run_checkpoint_dir) or {}
    began = saved.get("init_from")
    if not began:
        raise UserError(f"run {config.run} already has checkpoints of its own; --init_from only starts a new run: "
                        f"to continue {config.run}, drop --init_from and give --run {config.run}; or name a new "
                        f"run with --run NAME.")
    if os.path.realpath(runs.run_folder_of(began)[0]) != os.path.realpath(source_folder):
        raise UserError(f"run {config.run} began from {began}, not from run {typed}; to continue it, drop "
                        f"--init_from and give --run {config.run}; or name a new run with --run NAME.")
    return _continued(run_model_options(dataclasses.replace(config, init_from=began), saved, given), saved, given)


def _readable_config(folder: str) -> Optional[dict]:
    try:
        return runs.read_config(folder)
    except runs.DamagedConfig:
        return None  # Reported where the run is continued (continue_saved_run).


def run_model_options(config: RunConfig, saved: dict, given: Collection[str]) -> RunConfig:
    """`config` with the model options, batch size and dataset of a run's saved config.json; a flag the
    user gave that disagrees is refused with the run's value (a named run never continues on other
    images, nor rewrites its record of the ones it was trained on)."""
    values = {}
    for name in runs.NAME_FIELDS + ("dataset",):
        if name not in saved or (name == "c_dim" and not saved[name]):
            continue
        differs = (str(config.dataset).lower() != str(saved[name]).lower() if name == "dataset"
                   else getattr(config, name) != saved[name])
        if name in given and differs:
            raise UserError(f"run {config.run} was trained with --{name} {saved[name]}, not "
                            f"{getattr(config, name)}; drop --{name} (the run's own value is used), or pick "
                            f"another run with --run NAME (--runs lists them).")
        values[name] = saved[name]
    return dataclasses.replace(config, **values)


def continue_saved_run(config: RunConfig) -> RunConfig:
    """Checks a run's saved options against `config`; takes c_dim (when unset) from them, and once the
    run has checkpoints its TRAINING_FIELDS, so a resumed run keeps its own recipe, sample z and data
    order. A damaged config.json is kept aside and the run continues with this command's options (the
    checkpoint must still load with them)."""
    try:
        saved = runs.read_config(config.run_checkpoint_dir)
    except runs.DamagedConfig as e:
        kept = runs.keep_aside(os.path.join(config.run_checkpoint_dir, runs.CONFIG_FILE))
        warnings.warn(RunWarning(
            f"{e}; kept it as {kept}. This command's options continue the run from its newest checkpoint "
            f"(refused below if they do not fit it) and a new config.json is written."), stacklevel=2)
        return config
    if saved is None:
        return config
    check_same_model(config, saved, config.run_checkpoint_dir)
    # `auto` continues the run in its own precision (float32 for runs saved before the option).
    config = dataclasses.replace(config, precision=precision.resolve(
        config.precision, saved.get("precision") or BEFORE_THE_OPTION["precision"]).policy)
    check_same_precision(config, saved, config.run_checkpoint_dir)
    if config.c_dim == 0 and saved.get("c_dim") in (1, 3):
        config = dataclasses.replace(config, c_dim=saved["c_dim"])
    # Once it has checkpoints the run goes on with its own recipe, data options and seed, also when
    # a library call's config says otherwise (the command line has already refused other values).
    config = _own_training_options(config, saved, given=())
    if saved.get("init_from") and not config.init_from:  # Where the run began stays in its record.
        config = dataclasses.replace(config, init_from=saved["init_from"])
    return config


def find_trained(config: RunConfig, given: Optional[Collection[str]] = None) -> runs.RunInfo:
    """The trained run `config` means (see runs.find_run). `given`: the option names the user gave on
    the command line; None (a library call) treats `config` as complete: its run name is used."""
    if given is None:
        named, wanted = config.run, {name: getattr(config, name) for name in runs.NAME_FIELDS}
    else:
        named = config.run if "run" in given else ""
        wanted = {name: getattr(config, name) for name in runs.NAME_FIELDS if name in given}
    return runs.find_run(config.checkpoint_dir, config.dataset, named, wanted, preferred=config.run)


# This invocation's values that a trained run does not decide: where outputs go, and what to do.
INVOCATION_FIELDS = ("checkpoint_dir", "sample_dir", "log_dir", "export_dir", "data_dir", "train", "export",
                     "live_weights", "from_best", "init_from")


def trained_options(config: RunConfig, info: runs.RunInfo, given: Optional[Collection[str]]) -> RunConfig:
    """The options trained run `info` (found by find_trained, with a readable config.json) is rebuilt
    with: its own, and this invocation's where a trained run does not decide (INVOCATION_FIELDS)."""
    # Refuses model flags that disagree with the run (all of them for a call from Python).
    named = dataclasses.replace(config, run=info.name)
    if given is None:
        check_same_model(named, info.config, info.folder)
    else:
        run_model_options(named, info.config, given)
    keep = {f.name for f in dataclasses.fields(RunConfig)} & set(info.config)
    merged = {**{k: info.config[k] for k in keep}, **{k: getattr(config, k) for k in INVOCATION_FIELDS},
              "run": info.name, "runs": False}
    return RunConfig.create(**{**BEFORE_THE_OPTION, **merged})
