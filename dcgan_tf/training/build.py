"""A run's objects, built from a RunConfig: models, optimizers, the fixed sample z and the checkpoint,
restored from the run's newest checkpoint when it has one.

`build_run(config)` serves training; `load_trained(config)` rebuilds the generator side of a trained
run (found by run_options.py) from its own config.json for sampling, evaluation or export.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Collection, Optional

import keras
import tensorflow as tf

from dcgan_tf import runs
from dcgan_tf.config import RunConfig
from dcgan_tf.data import pipeline
from dcgan_tf.errors import RunWarning, UserError
from dcgan_tf.model import augment, nets
from dcgan_tf.model.gan import DCGAN
from dcgan_tf.model.latent import z_tensor
from dcgan_tf.training import checkpoints, distribute, optimizers, precision, run_options


@dataclasses.dataclass
class Run:
    """The objects of one run, wired together."""

    config: RunConfig
    model: DCGAN
    sample_z: tf.Variable
    checkpoint: tf.train.Checkpoint
    manager: Optional[tf.train.CheckpointManager]  # None for a run built to draw images (nothing to save)
    resumed_from: Optional[str] = None
    initialised_from: Optional[str] = None  # another run's checkpoint (--init_from) a new run began with


def build_run(config: RunConfig, read_only: bool = False) -> Run:
    """Models, optimizers, fixed sample z and checkpoint manager for a config whose c_dim is known;
    restores the newest checkpoint of the run if there is one. A library call's `--precision auto`
    (train() settles it before, see precision.settle) becomes the machine's choice here. `read_only`:
    no manager, and the run's folder is left as it is (see build_for_sampling)."""
    config, several_replicas = _settled(config)
    # A run that resumes, or starts from another run's networks, takes every weight of G and D from a
    # checkpoint (one that does not fit them all is an error, never a fresh start): drawing their
    # initial weights would be wasted, half a second at 128x128.
    restoring = runs.has_checkpoint(config.run_checkpoint_dir) or bool(config.init_from)
    generator, discriminator = nets.build_networks(config, synchronized_bn=several_replicas,
                                                   draw_initial_weights=not restoring)
    # The moving average is a second generator of the same shape, whose weights DCGAN copies from G
    # at once: no random draws for them either.
    ema_generator = _generator_to_fill(config, several_replicas) if config.ema_decay > 0 else None
    model = DCGAN(generator, discriminator, z_dim=config.z_dim, z_dist=config.z_dist,
                  g_steps=config.g_steps, seed=config.seed, name="dcgan",
                  real_label_range=(config.real_label_low, config.real_label_high),
                  fake_label_range=(config.fake_label_low, config.fake_label_high),
                  label_flip_prob=config.label_flip_prob, augment=augment.parse_diffaug(config.diffaug),
                  ema_generator=ema_generator, ema_decay=config.ema_decay, ema_rampup=config.ema_rampup,
                  r1_gamma=config.r1_gamma, r1_target=config.r1_target, lecam_weight=config.lecam_weight,
                  cr_weight=config.cr_weight, cr_until=config.cr_until, cr_images=config.cr_images,
                  augment_target=config.diffaug_target, g_topk=config.g_topk, g_fresh_z=config.g_fresh_z)
    d_optimizer, g_optimizer = (optimizers.make_optimizer(rate, config.beta1, config.beta2, config.precision)
                                for rate in (config.d_learning_rate, config.g_learning_rate))
    model.compile(d_optimizer=d_optimizer, g_optimizer=g_optimizer,
                  jit_compile=config.jit_compile, steps_per_execution=config.steps_per_execution)
    model.build_optimizers()
    # The fixed z of the sample grids: its own seed, so it does not depend on the training z.
    sample_z = tf.Variable(z_tensor(config.sample_num, config.z_dim, config.z_dist, seed=config.seed + 1),
                           trainable=False, name="sample_z")
    checkpoint = checkpoints.make_checkpoint(model, sample_z)
    manager = None if read_only else checkpoints.make_manager(checkpoint, config.run_checkpoint_dir,
                                                               config.max_to_keep)
    found = runs.checkpoint_files(config.run_checkpoint_dir) if read_only else manager.checkpoints
    run = Run(config=config, model=model, sample_z=sample_z, checkpoint=checkpoint, manager=manager)
    # The workers of a cluster restore together (restoring runs collectives): from the same step.
    distribute.check_same_start(tf.distribute.get_strategy(), runs.checkpoint_step(found[-1]) if found else None)
    if found:
        run.resumed_from = restore_into_run(run, found[::-1])
        distribute.check_same_start(tf.distribute.get_strategy(), runs.checkpoint_step(run.resumed_from),
                                    restored=True)
        # Optimizer hyper-parameters come from this invocation's flags, not from the checkpoint.
        model.d_optimizer.learning_rate = config.d_learning_rate
        model.g_optimizer.learning_rate = config.g_learning_rate
    elif config.init_from:
        checkpoints.restore_networks(model, config.init_from)
        run.initialised_from = config.init_from
    if restoring and not (run.resumed_from or run.initialised_from):  # Never train from zero weights.
        raise RuntimeError(f"no checkpoint was restored into the networks of {config.run_checkpoint_dir}")
    return run


def build_for_sampling(config: RunConfig) -> Run:
    """The generator side of the run `config` names (G, its moving average, the step and epoch
    counters, the fixed sample z), restored from the run's newest checkpoint: all that drawing,
    measuring and exporting images read. D and the optimizers' state are not built (a second of
    start-up at 128x128, full width). Without a checkpoint manager, a checkpoint lacking D is never
    saved over the run's, and nothing in the run's folder is changed."""
    config, several_replicas = _settled(config)
    # Every weight comes from the checkpoint: none is drawn.
    generator = _generator_to_fill(config, several_replicas)
    ema_generator = _generator_to_fill(config, several_replicas) if config.ema_decay > 0 else None
    model = DCGAN(generator, None, z_dim=config.z_dim, z_dist=config.z_dist, g_steps=config.g_steps,
                  seed=config.seed, name="dcgan", ema_generator=ema_generator, ema_decay=config.ema_decay,
                  ema_rampup=config.ema_rampup)
    sample_z = tf.Variable(tf.zeros([config.sample_num, config.z_dim]), trainable=False, name="sample_z")
    run = Run(config=config, model=model, sample_z=sample_z, manager=None,
              checkpoint=checkpoints.make_checkpoint(model, sample_z))
    # Found by their files, read only: a reader never tidies (CheckpointManager's unfinished writes) or
    # rewrites (a lost list) the folder of a run that may be training in another process.
    found = runs.checkpoint_files(config.run_checkpoint_dir)
    if not found:
        raise RuntimeError(f"no checkpoint to restore in {config.run_checkpoint_dir}")
    run.resumed_from = restore_into_run(run, found[::-1])
    return run


def _settled(config: RunConfig):
    """(config with `--precision auto` settled, whether a strategy with several replicas is in scope);
    seeds Keras's random state from the run's seed."""
    config, _ = precision.settle(config, config.precision)
    keras.utils.set_random_seed(config.seed)
    # Inside a strategy's scope with several replicas, batch norm works on the global batch.
    return config, tf.distribute.get_strategy().num_replicas_in_sync > 1


def _generator_to_fill(config: RunConfig, synchronized_bn: bool):
    """A generator of the run's shape whose weights start at zero (no random draws): one whose
    weights are copied or restored at once (G's moving average, a trained G)."""
    return nets.build_networks(config, synchronized_bn=synchronized_bn, with_discriminator=False,
                               draw_initial_weights=False)[0]


def restore_into_run(run: Run, paths_newest_first) -> str:
    """Restores the newest of `paths` that loads into the run's objects and returns it. A checkpoint
    without a moving average of G (from before it existed, or trained without one) starts the average
    from the restored G."""
    path = checkpoints.restore_newest(run.model, run.sample_z, paths_newest_first)
    if not checkpoints.holds_part(path, "ema_generator"):
        run.model.reset_ema()
    return path


def prepare_data(config: RunConfig):
    """(config with dataset name, c_dim and seed resolved, decoded ImageSet)."""
    dataset = pipeline.dataset_name(config.data_dir, config.dataset, config.input_fname_pattern)
    run = config.run
    if dataset != config.dataset and run.startswith(config.dataset + "_"):
        run = dataset + run[len(config.dataset):]  # A derived name spells the dataset as its folder does.
    config = dataclasses.replace(config, dataset=dataset, run=run)
    config = run_options.continue_saved_run(config)
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


def load_trained(config: RunConfig, given: Optional[Collection[str]] = None) -> Run:
    """The generator side (build_for_sampling) of the trained run `config` means, restored from its
    newest (or, with --from_best, its best) checkpoint, its model built from its own config.json."""
    info = run_options.find_trained(config, given)
    if not runs.has_checkpoint(info.folder):
        raise UserError(f"run {info.name} has no checkpoint yet (in {info.folder}); train it first with "
                        f"--train (its first checkpoint is written after --ckpt_freq steps or when it stops).")
    if info.config is None:
        restored_config = _options_without_config(config, info)
    else:
        restored_config = run_options.trained_options(config, info, given)
    try:
        # A run without its options is built whole (read only): the options rebuilt from the command
        # must fit D too.
        run = (build_run(restored_config, read_only=True) if info.config is None
               else build_for_sampling(restored_config))
    except UserError as e:
        if info.config is not None:
            raise
        raise UserError(f"{e} Run {info.name} has no readable config.json, so this command's options were "
                        f"used; give the options it was trained with (--output_height, --gf_dim, --df_dim, "
                        f"--z_dim, --arch ...) or put its config.json back.") from None
    if info.config is None:
        # The checkpoint loaded with these options, so they are the run's: its config.json is rebuilt.
        kept = runs.keep_aside(os.path.join(info.folder, runs.CONFIG_FILE)) if info.damaged else None
        run.config.save(info.folder)  # restored_config with `--precision auto` settled
        warnings.warn(RunWarning(f"rebuilt {os.path.join(info.folder, runs.CONFIG_FILE)} from this command's "
                                 f"options, which fit the run's checkpoint" + (f"; the damaged file is kept as "
                                 f"{kept}." if kept else ".")), stacklevel=2)
    if config.from_best:
        restore_best(run)
    return run


def restore_best(run: Run) -> str:
    """Restores the run's best checkpoint (kept by --keep_best) into its objects and returns it."""
    from dcgan_tf.quality.evaluate import best_checkpoint

    folder = run.config.run_checkpoint_dir
    best = best_checkpoint(folder)
    if best is None:
        raise UserError(f"no best checkpoint in {os.path.join(folder, runs.BEST_DIR)}; train with "
                        f"--eval_freq N --keep_best kid (or fid) first, or drop --from_best.")
    run.resumed_from = restore_into_run(run, [best])
    return run.resumed_from


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

