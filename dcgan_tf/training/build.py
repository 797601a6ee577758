"""A run's objects, built from a RunConfig: models, optimizers, the fixed sample z and the checkpoint,
restored from the run's newest checkpoint when it has one.

`build_run(config)` serves training; `load_trained(config)` finds a trained run (dcgan_tf/runs.py)
and rebuilds it from its own config.json for sampling, evaluation or export.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Collection, Optional

import keras
import tensorflow as tf

from dcgan_tf import runs
from dcgan_tf.config import PRESETS, RunConfig, check_same_model, check_same_precision
from dcgan_tf.data import pipeline
from dcgan_tf.errors import RunWarning, UserError
from dcgan_tf.model import augment, nets
from dcgan_tf.model.gan import DCGAN
from dcgan_tf.model.latent import z_tensor
from dcgan_tf.training import checkpoints
from dcgan_tf.training import optimizers, precision


@dataclasses.dataclass
class Run:
    """The objects of one run, wired together."""

    config: RunConfig
    model: DCGAN
    sample_z: tf.Variable
    checkpoint: tf.train.Checkpoint
    manager: tf.train.CheckpointManager
    resumed_from: Optional[str] = None
    initialised_from: Optional[str] = None  # another run's checkpoint (--init_from) a new run began with


def build_run(config: RunConfig) -> Run:
    """Models, optimizers, fixed sample z and checkpoint manager for a config whose c_dim is known;
    restores the newest checkpoint of the run if there is one. A library call's `--precision auto`
    (train() settles it before, see precision.settle) becomes the machine's choice here."""
    config, _ = precision.settle(config, config.precision)
    keras.utils.set_random_seed(config.seed)
    # Inside a strategy's scope with several replicas, batch norm works on the global batch.
    several_replicas = tf.distribute.get_strategy().num_replicas_in_sync > 1
    generator, discriminator = nets.build_networks(config, synchronized_bn=several_replicas)
    # The moving average is a second generator of the same shape (its discriminator is not needed).
    ema_generator = (nets.build_networks(config, synchronized_bn=several_replicas, with_discriminator=False)[0]
                     if config.ema_decay > 0 else None)
    model = DCGAN(generator, discriminator, z_dim=config.z_dim, z_dist=config.z_dist,
                  g_steps=config.g_steps, seed=config.seed, name="dcgan",
                  real_label_range=(config.real_label_low, config.real_label_high),
                  fake_label_range=(config.fake_label_low, config.fake_label_high),
                  label_flip_prob=config.label_flip_prob, augment=augment.parse_policy(config.diffaug),
                  ema_generator=ema_generator, ema_decay=config.ema_decay, ema_rampup=config.ema_rampup,
                  r1_gamma=config.r1_gamma,
                  r1_target=config.r1_target)
    d_optimizer, g_optimizer = (optimizers.make_optimizer(rate, config.beta1, config.beta2, config.precision)
                                for rate in (config.d_learning_rate, config.g_learning_rate))
    model.compile(d_optimizer=d_optimizer, g_optimizer=g_optimizer,
                  jit_compile=config.jit_compile, steps_per_execution=config.steps_per_execution)
    model.build_optimizers()
    # The fixed z of the sample grids: its own seed, so it does not depend on the training z.
    sample_z = tf.Variable(z_tensor(config.sample_num, config.z_dim, config.z_dist, seed=config.seed + 1),
                           trainable=False, name="sample_z")
    checkpoint = checkpoints.make_checkpoint(model, sample_z)
    manager = checkpoints.make_manager(checkpoint, config.run_checkpoint_dir, config.max_to_keep)
    run = Run(config=config, model=model, sample_z=sample_z, checkpoint=checkpoint, manager=manager)
    if manager.checkpoints:
        run.resumed_from = restore(run, manager.checkpoints[::-1])
        # Optimizer hyper-parameters come from this invocation's flags, not from the checkpoint.
        model.d_optimizer.learning_rate = config.d_learning_rate
        model.g_optimizer.learning_rate = config.g_learning_rate
    elif config.init_from:
        checkpoints.restore_networks(model, config.init_from)
        run.initialised_from = config.init_from
    return run


def restore(run: Run, paths_newest_first) -> str:
    """Restores the newest of `paths` that loads into the run's objects and returns it. A checkpoint
    without a moving average of G (from before it existed, or trained without one) starts the average
    from the restored G."""
    path = checkpoints.restore_newest(run.checkpoint, paths_newest_first, run.sample_z)
    if not checkpoints.holds_part(path, "ema_generator"):
        run.model.reset_ema()
    return path


# ------------------------------------------------------------------------------------------------
# Which run a command means.
def training_run(config: RunConfig, given: Collection[str]) -> RunConfig:
    """The run `--train` trains: `--run NAME` of a trained run takes its model options from its
    config.json (flags given must agree); otherwise the run these options name, or the folder of the
    same model trained under the original's plain name before names had suffixes. With --init_from,
    a new run with the source run's model options (see initialised_run)."""
    if config.init_from:
        return initialised_run(config, given)
    if "run" in given:
        name = runs.match_entry(config.checkpoint_dir, config.run) or config.run
        config = dataclasses.replace(config, run=name)
        saved = _readable_config(config.run_checkpoint_dir)
        return _saved_model_options(config, saved, given) if saved else config
    if not os.path.isdir(config.run_checkpoint_dir):
        legacy = runs.legacy_folder(
            config.checkpoint_dir,
            runs.base_name(config.dataset, config.batch_size, config.output_height, config.output_width),
            config.to_dict())
        if legacy:
            config = dataclasses.replace(config, run=legacy)
    return config


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
    config = dataclasses.replace(config, **values, init_from=_start_checkpoint(config, typed, source))
    if "run" not in given:
        derived = runs.run_name(config.to_dict(), PRESETS[config.arch])
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
    return _saved_model_options(dataclasses.replace(config, init_from=began), saved, given)


def _readable_config(folder: str) -> Optional[dict]:
    try:
        return runs.read_config(folder)
    except runs.DamagedConfig:
        return None  # Reported where the run is continued (continue_saved_run).


def _saved_model_options(config: RunConfig, saved: dict, given: Collection[str]) -> RunConfig:
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
    if "sample_num" not in given and isinstance(saved.get("sample_num"), int):
        values["sample_num"] = saved["sample_num"]  # Its checkpoints' sample z (the default follows the batch).
    return dataclasses.replace(config, **values)


def continue_saved_run(config: RunConfig) -> RunConfig:
    """Checks a run's saved options against `config`; takes c_dim (when unset) and the seed from them,
    so a resumed run keeps its own sample z and data order. A damaged config.json is kept aside and
    the run continues with this command's options (the checkpoint must still load with them)."""
    try:
        saved = runs.read_config(config.run_checkpoint_dir)
    except runs.DamagedConfig as e:
        kept = runs.keep_damaged_config(config.run_checkpoint_dir)
        warnings.warn(RunWarning(
            f"{e}; kept it as {kept}. This command's options continue the run from its newest checkpoint "
            f"(refused below if they do not fit it) and a new config.json is written."), stacklevel=2)
        return config
    if saved is None:
        return config
    check_same_model(config, saved, config.run_checkpoint_dir)
    # `auto` continues the run in its own precision (float32 for runs saved before the option).
    config = dataclasses.replace(config, precision=precision.resolve(
        config.precision, saved.get("precision") or "float32").policy)
    check_same_precision(config, saved, config.run_checkpoint_dir)
    if config.c_dim == 0 and saved.get("c_dim") in (1, 3):
        config = dataclasses.replace(config, c_dim=saved["c_dim"])
    if isinstance(saved.get("seed"), int):
        config = dataclasses.replace(config, seed=saved["seed"])
    if saved.get("init_from") and not config.init_from:  # Where the run began stays in its record.
        config = dataclasses.replace(config, init_from=saved["init_from"])
    return config


def prepare_data(config: RunConfig):
    """(config with dataset name, c_dim and seed resolved, decoded ImageSet)."""
    dataset = pipeline.dataset_name(config.data_dir, config.dataset, config.input_fname_pattern)
    run = config.run
    if dataset != config.dataset and run.startswith(config.dataset + "_"):
        run = dataset + run[len(config.dataset):]  # A derived name spells the dataset as its folder does.
    config = dataclasses.replace(config, dataset=dataset, run=run)
    config = continue_saved_run(config)
    image_set = _load_images(config)
    config = dataclasses.replace(config, c_dim=image_set.images.shape[-1])
    pipeline.check_batch_size(len(image_set.images), config.batch_size)
    return config, image_set


def _load_images(config: RunConfig) -> pipeline.ImageSet:
    """The images of `config.dataset` (as its folder spells it) at the run's size and channels."""
    return pipeline.load_dataset(
        config.data_dir, config.dataset, pattern=config.input_fname_pattern, crop=config.crop,
        crop_size=(config.input_height, config.input_width),
        output_size=(config.output_height, config.output_width), c_dim=config.c_dim)


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
_INVOCATION_FIELDS = ("checkpoint_dir", "sample_dir", "log_dir", "export_dir", "data_dir", "train", "export",
                      "live_weights", "from_best", "init_from")


def load_trained(config: RunConfig, given: Optional[Collection[str]] = None) -> Run:
    """The trained run `config` means, restored from its newest (or, with --from_best, its best)
    checkpoint, its model built from its own config.json."""
    info = find_trained(config, given)
    if not runs.has_checkpoint(info.folder):
        raise UserError(f"run {info.name} has no checkpoint yet (in {info.folder}); train it first with "
                        f"--train (its first checkpoint is written after --ckpt_freq steps or when it stops).")
    if info.config is None:
        restored_config = _options_without_config(config, info)
    else:
        # Refuses model flags that disagree with the run (all of them for a call from Python).
        named = dataclasses.replace(config, run=info.name)
        if given is None:
            check_same_model(named, info.config, info.folder)
        else:
            _saved_model_options(named, info.config, given)
        keep = {f.name for f in dataclasses.fields(RunConfig)} & set(info.config)
        merged = {**{k: info.config[k] for k in keep}, **{k: getattr(config, k) for k in _INVOCATION_FIELDS},
                  "run": info.name, "runs": False}
        merged.setdefault("ema_decay", 0.0)  # Runs saved before the moving average existed have none.
        merged.setdefault("r1_gamma", 0.0)  # Nor an R1 penalty, before it existed.
        merged.setdefault("r1_target", 0.0)  # Nor an adaptive one.
        merged.setdefault("mirror", False)  # Nor x-flips.
        merged.setdefault("precision", "float32")  # Nor a precision, before the option existed.
        restored_config = RunConfig.create(**merged)
    try:
        run = build_run(restored_config)
    except UserError as e:
        if info.config is not None:
            raise
        raise UserError(f"{e} Run {info.name} has no readable config.json, so this command's options were "
                        f"used; give the options it was trained with (--output_height, --gf_dim, --df_dim, "
                        f"--z_dim, --arch ...) or put its config.json back.") from None
    if info.config is None:
        # The checkpoint loaded with these options, so they are the run's: its config.json is rebuilt.
        kept = runs.keep_damaged_config(info.folder) if info.damaged else None
        run.config.save(info.folder)  # restored_config with `--precision auto` settled
        warnings.warn(RunWarning(f"rebuilt {os.path.join(info.folder, runs.CONFIG_FILE)} from this command's "
                                 f"options, which fit the run's checkpoint" + (f"; the damaged file is kept as "
                                 f"{kept}." if kept else ".")), stacklevel=2)
    if config.from_best:
        from dcgan_tf.quality.evaluate import best_checkpoint

        best = best_checkpoint(info.folder)
        if best is None:
            raise UserError(f"no best checkpoint in {os.path.join(info.folder, runs.BEST_DIR)}; train with "
                            f"--eval_freq N --keep_best kid (or fid) first, or drop --from_best.")
        run.resumed_from = restore(run, [best])
    return run


def _options_without_config(config: RunConfig, info: runs.RunInfo) -> RunConfig:
    """The options of a run whose config.json is missing or damaged: this command's, with a warning
    that says so. c_dim, when the data decides it, comes from the dataset's images."""
    what = "is damaged" if info.damaged else "is missing"
    warnings.warn(RunWarning(f"{os.path.join(info.folder, runs.CONFIG_FILE)} {what}; building run {info.name} "
                             f"from this command's options."), stacklevel=3)
    config = dataclasses.replace(config, run=info.name)
    if not config.c_dim:
        dataset = pipeline.dataset_name(config.data_dir, config.dataset, config.input_fname_pattern)
        image_set = _load_images(dataclasses.replace(config, dataset=dataset))
        config = dataclasses.replace(config, c_dim=image_set.images.shape[-1])
    return config

