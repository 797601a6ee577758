"""Builds a run from a RunConfig: data, models, optimizers, checkpoint, callbacks; then `fit`.

`train(config)` trains (resuming from the newest checkpoint of the run when there is one);
`load_trained(config)` rebuilds a trained run's model from its checkpoint for sampling or export.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import tempfile
import time
import warnings
from typing import List, Optional

import keras
import tensorflow as tf

from dcgan_tf.model import augment
from dcgan_tf.training import callbacks as cbs
from dcgan_tf.training import checkpoints
from dcgan_tf.data import pipeline as data
from dcgan_tf.data import datasets
from dcgan_tf.training import distribute
from dcgan_tf.model import nets
from dcgan_tf.config import RunConfig, check_same_model, check_same_precision, load_saved_config
from dcgan_tf.errors import RunWarning, UserError
from dcgan_tf.model.gan import DCGAN, METRIC_NAMES
from dcgan_tf.model.latent import sample_z as draw_z
from dcgan_tf.training.runlock import RunLock

METRICS_FILE = "metrics.csv"


@dataclasses.dataclass
class Run:
    """The objects of one run, wired together."""

    config: RunConfig
    model: DCGAN
    sample_z: tf.Variable
    checkpoint: tf.train.Checkpoint
    manager: tf.train.CheckpointManager
    resumed_from: Optional[str] = None


@dataclasses.dataclass
class TrainResult:
    run: Run
    history: dict
    stopped_by: Optional[str]  # Signal name when stopped early, else None.
    steps_run: int
    seconds: float
    samples: List[str]
    chief: bool = True  # False on the other workers of a multiworker run (they write no files).


def _match_folder(root: str, name: str) -> Optional[str]:
    """The entry of `root` equal to `name` ignoring case (exact match first), or None."""
    if os.path.isdir(os.path.join(root, name)):
        return name
    if os.path.isdir(root):
        for entry in sorted(os.listdir(root)):
            if entry.lower() == name.lower() and os.path.isdir(os.path.join(root, entry)):
                return entry
    return None


def _continue_saved_run(config: RunConfig) -> RunConfig:
    """Checks a run's saved options against `config`; takes c_dim (when unset) and the seed from them,
    so a resumed run keeps its own sample z and data order."""
    saved = load_saved_config(config.run_checkpoint_dir)
    if saved is None:
        return config
    check_same_model(config, saved, config.run_checkpoint_dir)
    check_same_precision(config, saved, config.run_checkpoint_dir)
    if config.c_dim == 0 and saved.get("c_dim") in (1, 3):
        config = dataclasses.replace(config, c_dim=saved["c_dim"])
    if isinstance(saved.get("seed"), int):
        config = dataclasses.replace(config, seed=saved["seed"])
    return config


def make_optimizer(config: RunConfig) -> keras.optimizers.Optimizer:
    """Adam with the run's settings; under mixed_float16 wrapped for dynamic loss scaling, so small
    float16 gradients do not underflow (bfloat16 has float32's range and needs none)."""
    optimizer = keras.optimizers.Adam(config.learning_rate, beta_1=config.beta1)
    if config.precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def build_run(config: RunConfig, summary_writer=None) -> Run:
    """Models, optimizers, fixed sample z and checkpoint manager for a config whose c_dim is known;
    restores the newest checkpoint of the run if there is one."""
    keras.utils.set_random_seed(config.seed)
    # Inside a strategy's scope with several replicas, batch norm works on the global batch.
    several_replicas = tf.distribute.get_strategy().num_replicas_in_sync > 1
    generator, discriminator = nets.build_networks(config, synchronized_bn=several_replicas)
    # The moving average is a second generator of the same shape (its discriminator is not needed).
    ema_generator = (nets.build_networks(config, synchronized_bn=several_replicas)[0]
                     if config.ema_decay > 0 else None)
    model = DCGAN(generator, discriminator, z_dim=config.z_dim, z_dist=config.z_dist,
                  g_steps=config.g_steps, seed=config.seed, summary_writer=summary_writer,
                  histogram_freq=config.sample_freq, name="dcgan",
                  real_label_range=(config.real_label_low, config.real_label_high),
                  fake_label_range=(config.fake_label_low, config.fake_label_high),
                  label_flip_prob=config.label_flip_prob, augment=augment.parse_policy(config.diffaug),
                  ema_generator=ema_generator, ema_decay=config.ema_decay)
    model.compile(d_optimizer=make_optimizer(config), g_optimizer=make_optimizer(config),
                  jit_compile=config.jit_compile, steps_per_execution=config.steps_per_execution)
    model.build_optimizers()
    # The fixed z of the sample grids: its own seed, so it does not depend on the training z.
    sample_z = tf.Variable(draw_z(config.sample_num, config.z_dim, config.z_dist, seed=config.seed + 1),
                           trainable=False, name="sample_z")
    checkpoint = checkpoints.make_checkpoint(model, sample_z)
    manager = checkpoints.make_manager(checkpoint, config.run_checkpoint_dir, config.max_to_keep)
    run = Run(config=config, model=model, sample_z=sample_z, checkpoint=checkpoint, manager=manager)
    if manager.checkpoints:
        run.resumed_from = _restore(run, manager.checkpoints[::-1])
        # Optimizer hyper-parameters come from this invocation's flags, not from the checkpoint.
        for optimizer in (model.d_optimizer, model.g_optimizer):
            optimizer.learning_rate = config.learning_rate
    return run


def _restore(run: Run, paths_newest_first) -> str:
    """Restores the newest of `paths` that loads into the run's objects and returns it. A checkpoint
    without a moving average of G (from before it existed, or trained without one) starts the average
    from the restored G."""
    path = checkpoints.restore_newest(run.checkpoint, paths_newest_first, run.sample_z)
    if not checkpoints.holds_part(path, "ema_generator"):
        run.model.reset_ema()
    return path


def check_writable(folders) -> None:
    """Creates the run's output folders and proves each writable, before any training."""
    for folder in folders:
        try:
            os.makedirs(folder, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as e:
            raise UserError(f"cannot write to {folder} ({e.strerror or e}); fix its permissions or free space, "
                            f"or choose another output folder (--checkpoint_dir, --sample_dir, --log_dir).") from None


def _image_folder_exists(config: RunConfig) -> bool:
    try:
        folder = data.resolve_dataset_dir(config.data_dir, config.dataset)
    except UserError:
        return False
    return bool(data.find_image_files(folder, config.input_fname_pattern))


def prepare_data(config: RunConfig):
    """(config with dataset name, c_dim and seed resolved, decoded ImageSet)."""
    if datasets.is_builtin(config.dataset) and not _image_folder_exists(config):
        # --dataset mnist / fashion_mnist: the standard files, 28x28x1, resized when asked.
        config = _continue_saved_run(config)
        where = []
        pixels = datasets.load_builtin(config.dataset, config.data_dir,
                                       download=not os.environ.get("DCGAN_TF_NO_DOWNLOAD"), where=where)
        pixels = data.fit_images(pixels, (config.output_height, config.output_width), config.c_dim)
        image_set = data.ImageSet(images=pixels, paths=(), skipped=(), source=where[0])
    else:
        folder = data.resolve_dataset_dir(config.data_dir, config.dataset)
        config = dataclasses.replace(config, dataset=os.path.basename(folder))
        config = _continue_saved_run(config)
        image_set = data.load_image_folder(
            folder, pattern=config.input_fname_pattern, crop=config.crop,
            crop_size=(config.input_height, config.input_width),
            output_size=(config.output_height, config.output_width), c_dim=config.c_dim)
    config = dataclasses.replace(config, c_dim=image_set.images.shape[-1])
    data.check_batch_size(len(image_set.images), config.batch_size)
    return config, image_set


def check_steps_per_execution(steps_per_epoch: int, config: RunConfig) -> None:
    """Keras runs whole executions even across an epoch's end, so an epoch must be a whole number
    of them."""
    n = config.steps_per_execution
    if steps_per_epoch % n:
        fits = [d for d in range(1, steps_per_epoch + 1) if steps_per_epoch % d == 0]
        raise UserError(
            f"--steps_per_execution {n} does not divide the {steps_per_epoch} steps of an epoch (images // "
            f"--batch_size {config.batch_size}); use one of {', '.join(map(str, fits))}.")


def aligned_steps_per_execution(model: DCGAN, start_step: int, config: RunConfig) -> int:
    """Steps per execution for a run resuming at `start_step`: executions must end on multiples of
    --steps_per_execution for grids and checkpoints to land on their steps; a run stopped at another
    step (one trained with another --steps_per_execution) runs fewer steps at a time this once."""
    n = math.gcd(config.steps_per_execution, start_step) if start_step else config.steps_per_execution
    if n != config.steps_per_execution:
        warnings.warn(RunWarning(
            f"the run resumes at step {start_step}, not a multiple of --steps_per_execution "
            f"{config.steps_per_execution}; running {n} step{'s' if n > 1 else ''} per execution until it "
            f"stops (grids and checkpoints stay on their steps)."), stacklevel=2)
        model.steps_per_execution = n
    return n


def train(config: RunConfig, verbose: int = 1, extra_callbacks=()) -> TrainResult:
    """Trains the run named by `config` up to `config.epoch` epochs, resuming where it stopped.

    With --strategy mirrored / multiworker everything is built in the strategy's scope and only the
    chief writes files (distribute.py)."""
    strategy = distribute.make_strategy(config.strategy, config.cpu_devices, config.worker_timeout)
    distribute.check_global_batch(config.batch_size, strategy.num_replicas_in_sync)
    chief = distribute.is_chief(strategy)
    config, image_set = prepare_data(config)
    epoch_steps = data.steps_per_epoch(len(image_set.images), config.batch_size)
    check_steps_per_execution(epoch_steps, config)
    if chief:
        check_writable([config.run_checkpoint_dir, config.run_sample_dir, config.run_log_dir])
    # One writer per run: held until training ends; a second --train of the run stops here.
    with (RunLock(config.run_checkpoint_dir, config.run_name) if chief else contextlib.nullcontext()):
        return _train_held(config, strategy, chief, image_set, epoch_steps, verbose, extra_callbacks)


def _train_held(config: RunConfig, strategy, chief: bool, image_set, epoch_steps: int, verbose: int,
                extra_callbacks) -> TrainResult:
    """train() once the data is ready and the run is held."""
    # The FID network of --eval_freq (the chief measures) is loaded first: missing weights stop here.
    features_fn = _quality_features(config, verbose=bool(verbose)) if config.eval_freq and chief else None
    writer = tf.summary.create_file_writer(config.run_log_dir) if chief else None
    with strategy.scope(), _worker_errors(config):
        run = build_run(config, summary_writer=writer)
    if chief:
        # The run's own target: asking an already longer run for fewer epochs leaves it recorded as it is.
        dataclasses.replace(config, epoch=max(config.epoch, int(run.model.epoch.numpy()))).save(
            config.run_checkpoint_dir)
    model = run.model
    start_epoch, start_step = int(model.epoch.numpy()), int(model.step.numpy())
    aligned_steps_per_execution(model, start_step, config)
    if verbose:
        print(f"dcgan_tf: {len(image_set.images)} images from {image_set.source or config.dataset_path}"
              f" at {config.output_height}x{config.output_width}x{config.c_dim}; run {config.run_name}; "
              + (f"resumed from {run.resumed_from} (epoch {start_epoch}, step {start_step})"
                 if run.resumed_from else "starting afresh"), flush=True)
    failure = cbs.OutputFailure()
    samples = cbs.SampleGrid(run.sample_z, config.run_sample_dir, config.sample_freq, summary_writer=writer,
                             failure=failure)
    stop = cbs.GracefulStop()
    guard = cbs.NonFiniteGuard()
    # Order matters: a step's grid is named for its epoch; its checkpoint already counts the epoch
    # it completed.
    callbacks = [
        guard,
        samples,
        cbs.EpochCounter(),
        cbs.CheckpointSaver(run.manager if chief else distribute.ScratchCheckpointManager(run.checkpoint),
                            config.ckpt_freq, failure=failure),
        cbs.MetricsLog(os.path.join(config.run_checkpoint_dir, METRICS_FILE), METRIC_NAMES),
        stop,
        *extra_callbacks,
    ]
    if not chief:  # Grids and the metrics log are the chief's alone.
        callbacks = [c for c in callbacks if not isinstance(c, (cbs.SampleGrid, cbs.MetricsLog))]
    if features_fn is not None:
        callbacks.insert(callbacks.index(stop), _periodic_eval(config, run, image_set.images, features_fn,
                                                               writer, failure, verbose=bool(verbose)))
    started = time.time()
    history = {}
    if start_epoch < config.epoch:
        dataset = distribute.distribute_batches(strategy, lambda: data.make_dataset(
            image_set.images, config.batch_size, config.seed, first_epoch=start_epoch, last_epoch=config.epoch))
        with _worker_errors(config, run):
            history = model.fit(dataset, epochs=config.epoch, initial_epoch=start_epoch, shuffle=False,
                                steps_per_epoch=epoch_steps, callbacks=callbacks, verbose=verbose).history
    elif verbose:
        print(f"dcgan_tf: the run already finished {start_epoch} epochs; raise --epoch to train more.")
    if writer is not None:
        writer.flush()
    if failure.error is not None:
        raise UserError(
            f"{failure.error}; training stopped at step {int(model.step.numpy())}. Newest checkpoint: "
            f"{run.manager.latest_checkpoint or 'none'}. Free disk space or fix the folder's permissions "
            f"(or choose other output folders) and run again to resume.")
    if guard.tripped_at is not None:
        newest = run.manager.latest_checkpoint
        raise UserError(
            f"training diverged: a loss or weight became NaN or Inf at step {guard.tripped_at}; nothing "
            f"from that state was saved. Newest good checkpoint: {newest or 'none'}. Lower "
            f"--learning_rate (or change --seed) and run again to resume from it.")
    return TrainResult(run=run, history=history, stopped_by=stop.received,
                       steps_run=int(model.step.numpy()) - start_step, seconds=time.time() - started,
                       samples=samples.written, chief=chief)


def _worker_errors(config: RunConfig, run: Optional[Run] = None):
    """A lost worker of a multiworker run becomes one error line naming the newest checkpoint."""
    if config.strategy != "multiworker":
        return contextlib.nullcontext()
    return distribute.translate_worker_errors(lambda: run.manager.latest_checkpoint if run else "")


def _quality_features(config: RunConfig, verbose: bool):
    """The FID network of --eval_freq, loaded before anything else so that missing weights or a damaged
    quality.json are reported before the run starts."""
    from dcgan_tf.quality import evaluate

    evaluate.read_quality(config.run_checkpoint_dir)
    return evaluate.inception_features_fn(config.fid_weights, progress=verbose)


def _periodic_eval(config: RunConfig, run: Run, real_images, features_fn, writer, failure, verbose: bool):
    """The FID/KID callback of --eval_freq, with the real images' features ready before the first step."""
    from dcgan_tf.quality import evaluate

    evaluator = evaluate.make_evaluator(config, real_images, features_fn, config.z_dim, config.z_dist,
                                        cache_folder=config.run_checkpoint_dir)
    best_manager = None
    if config.keep_best != "none":
        best_manager = tf.train.CheckpointManager(
            run.checkpoint, os.path.join(config.run_checkpoint_dir, evaluate.BEST_DIR), max_to_keep=1)
    return cbs.PeriodicEval(evaluator, config.eval_freq, config.run_checkpoint_dir, summary_writer=writer,
                            keep_best=config.keep_best, best_manager=best_manager, failure=failure,
                            verbose=verbose)


def load_trained(config: RunConfig) -> Run:
    """The run's model restored from its newest checkpoint (options from its config.json)."""
    name = _match_folder(config.checkpoint_dir, config.run_name)
    if name is not None and name != config.run_name:
        # Same run, dataset spelled in another case: take the folder's spelling (same length).
        config = dataclasses.replace(config, dataset=name[: len(config.dataset)])
    saved = load_saved_config(config.run_checkpoint_dir)
    if saved is None or tf.train.latest_checkpoint(config.run_checkpoint_dir) is None:
        raise UserError(
            f"no checkpoint in {config.run_checkpoint_dir}; train first with --train (same --dataset, "
            f"--batch_size and --output_height), or point --checkpoint_dir at a trained run.")
    check_same_model(config, saved, config.run_checkpoint_dir)
    keep = {f.name for f in dataclasses.fields(RunConfig)} & set(saved)
    # The saved options define the model; this invocation's output folders still apply.
    outputs = ("checkpoint_dir", "sample_dir", "log_dir", "export_dir", "data_dir", "train", "export",
               "live_weights")
    merged = {**{k: saved[k] for k in keep}, **{k: getattr(config, k) for k in outputs}}
    merged.setdefault("ema_decay", 0.0)  # Runs saved before the moving average existed have none.
    restored_config = RunConfig.create(**merged)
    run = build_run(restored_config)
    if config.from_best:
        from dcgan_tf.quality.evaluate import BEST_DIR, best_checkpoint

        best = best_checkpoint(config.run_checkpoint_dir)
        if best is None:
            raise UserError(f"no best checkpoint in {os.path.join(config.run_checkpoint_dir, BEST_DIR)}; train "
                            f"with --eval_freq N --keep_best kid (or fid) first, or drop --from_best.")
        run.resumed_from = _restore(run, [best])
    return run
