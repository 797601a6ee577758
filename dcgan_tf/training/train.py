"""Training: `train(config)` prepares the data, holds the run, builds it (training/build.py), wires the
callbacks and calls `fit`, resuming from the run's newest checkpoint when there is one. The training
step itself is the model's: dcgan_tf/model/gan.py, DCGAN.train_step."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import sys
import tempfile
import time
import warnings
from typing import List, Optional

import tensorflow as tf

from dcgan_tf import runs
from dcgan_tf.config import RunConfig, check_same_model
from dcgan_tf.data import pipeline
from dcgan_tf.errors import RunWarning, UserError
from dcgan_tf.model.gan import DCGAN
from dcgan_tf.training import callbacks as cbs
from dcgan_tf.training import checkpoints
from dcgan_tf.training import distribute
from dcgan_tf.training import precision
from dcgan_tf.training.build import Run, build_run, prepare_data
from dcgan_tf.training.runlock import RunLock
from dcgan_tf.training.summaries import Summaries

STOPPED_BY_CLOSED_PIPE = cbs.GracefulStop.CLOSED_PIPE  # TrainResult.stopped_by when stdout's reader went away.
STOPPED_BY_ANOTHER_WORKER = "another worker of the cluster"  # ... when another worker asked for the stop.


@dataclasses.dataclass
class TrainResult:
    run: Run
    history: dict
    stopped_by: Optional[str]  # Signal name, STOPPED_BY_CLOSED_PIPE or _ANOTHER_WORKER when stopped early.
    steps_run: int
    seconds: float  # Wall-clock, from the first step's start to the end of training.
    step_seconds: float  # Of it, the train steps alone (without grids, checkpoints and measurements).
    first_seconds: float  # Of those, the first execution's (tracing and graph optimisation included).
    first_steps: int  # The steps of that first execution (--steps_per_execution, or fewer when resuming).
    samples: List[str]
    output_closed: bool = False  # stdout's reader went away during the training (its lines went nowhere).
    chief: bool = True  # False on the other workers of a multiworker run (they write no files).
    saved: bool = True  # False where a worker could not write, so no checkpoint was saved at the stop.


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


def check_steps_per_execution(steps_per_epoch: int, n: int, batch_size: int) -> None:
    """Keras runs whole executions (of `n` steps) even across an epoch's end, so an epoch must be a
    whole number of them."""
    if steps_per_epoch % n:
        fits = [d for d in range(1, steps_per_epoch + 1) if steps_per_epoch % d == 0]
        raise UserError(
            f"--steps_per_execution {n} does not divide the {steps_per_epoch} steps of an epoch (images // "
            f"--batch_size {batch_size}); use one of {', '.join(map(str, fits))}.")


def aligned_steps_per_execution(model: DCGAN, start_step: int, steps_per_execution: int) -> int:
    """Steps per execution for a run resuming at `start_step`: executions must end on multiples of
    --steps_per_execution for grids and checkpoints to land on their steps; a run stopped at another
    step (one trained with another --steps_per_execution) runs fewer steps at a time this once."""
    n = math.gcd(steps_per_execution, start_step) if start_step else steps_per_execution
    if n != steps_per_execution:
        warnings.warn(RunWarning(
            f"the run resumes at step {start_step}, not a multiple of --steps_per_execution "
            f"{steps_per_execution}; running {n} step{'s' if n > 1 else ''} per execution until it "
            f"stops (grids and checkpoints stay on their steps)."), stacklevel=2)
        model.steps_per_execution = n
    return n


def finished_epochs(config: RunConfig) -> Optional[int]:
    """The epochs the run has finished when they already reach config.epoch, else None; read from its
    newest checkpoint's file. Only for a run whose config.json shows it is this model (else the full
    restore says what does not fit), and not for multiworker runs, whose workers must all enter
    training together."""
    if config.strategy == "multiworker":
        return None
    try:
        saved = runs.read_config(config.run_checkpoint_dir)
    except runs.DamagedConfig:
        return None  # Kept aside and reported by the full path.
    if saved is None:
        return None
    check_same_model(config, saved, config.run_checkpoint_dir)
    done = checkpoints.saved_epoch(config.run_checkpoint_dir)
    return done if done is not None and done >= config.epoch else None


def finished_line(run_name: str, epochs: int) -> str:
    """What --train of a run that has already trained its epochs says."""
    return (f"dcgan_tf: the run {run_name} already finished {epochs} epoch{'s' if epochs != 1 else ''}; raise "
            f"--epoch to train more.")


def ended_early_line(config: RunConfig) -> Optional[str]:
    """What --train of a run that --patience has ended says (its quality.json tells), else None."""
    if not config.patience:
        return None
    from dcgan_tf.quality import evaluate

    reason = evaluate.ended_early(runs.read_quality(config.run_checkpoint_dir), config.keep_best, config.patience)
    return reason and (f"dcgan_tf: the run {config.run} has ended early: {reason}; raise --patience "
                       f"(or give --patience 0) to train on.")


def train(config: RunConfig, verbose: int = 1, extra_callbacks=()) -> TrainResult:
    """Trains the run named by `config` up to `config.epoch` epochs, resuming where it stopped.

    With --strategy mirrored / multiworker everything is built in the strategy's scope and only the
    chief writes files (distribute.py)."""
    strategy = distribute.make_strategy(config.strategy, config.cpu_devices, config.worker_timeout)
    distribute.check_global_batch(config.batch_size, strategy.num_replicas_in_sync)
    chief = distribute.is_chief(strategy)
    requested_precision = config.precision
    config, image_set = prepare_data(config)  # `--precision auto` continuing a run takes the run's own.
    config, precision_text = precision.settle(config, requested_precision)
    epoch_steps = pipeline.steps_per_epoch(len(image_set.images), config.batch_size)
    check_steps_per_execution(epoch_steps, config.steps_per_execution, config.batch_size)
    if chief:
        check_writable([config.run_checkpoint_dir, config.run_sample_dir, config.run_log_dir])
    # One writer per run: held until training ends; a second --train of the run stops here.
    with (RunLock(config.run_checkpoint_dir, config.run) if chief else contextlib.nullcontext()):
        return _train_held(config, strategy, chief, image_set, epoch_steps, verbose, extra_callbacks,
                           precision_text=precision_text)


def _train_held(config: RunConfig, strategy, chief: bool, image_set, epoch_steps: int, verbose: int,
                extra_callbacks, precision_text: str = "") -> TrainResult:
    """train() once the data is ready and the run is held."""
    # The FID network of --eval_freq (the chief measures) is loaded first: missing weights stop here.
    features_fn = _quality_features(config, verbose=bool(verbose)) if config.eval_freq and chief else None
    writer = tf.summary.create_file_writer(config.run_log_dir) if chief else None
    with strategy.scope(), _worker_errors(config):
        run = build_run(config)
    if chief:
        # The run's own target: asking an already longer run for fewer epochs leaves it recorded as it is.
        dataclasses.replace(config, epoch=max(config.epoch, int(run.model.epoch.numpy()))).save(
            config.run_checkpoint_dir)
    model = run.model
    start_epoch, start_step = int(model.epoch.numpy()), int(model.step.numpy())
    aligned_steps_per_execution(model, start_step, config.steps_per_execution)
    if verbose:
        print(f"dcgan_tf: {len(image_set.images)} images from {image_set.source or config.dataset_path}"
              f" at {config.output_height}x{config.output_width}x{config.c_dim}; run {config.run}; "
              f"precision {precision_text or config.precision}; "
              + (f"resumed from {run.resumed_from} (epoch {start_epoch}, step {start_step})" if run.resumed_from
                 else f"starting from the networks of {run.initialised_from}" if run.initialised_from
                 else "starting afresh"), flush=True)
    failure = cbs.OutputFailure()
    samples = cbs.SampleGrid(run.sample_z, config.run_sample_dir, config.sample_freq, summary_writer=writer,
                             failure=failure)
    stop = cbs.GracefulStop()
    guard = cbs.NonFiniteGuard()
    # Order matters: the epoch counter moves before the checkpoint of an epoch's last step is saved,
    # so that checkpoint already counts the epoch it completed.
    clock = cbs.StepClock()
    callbacks = [
        clock,  # First: it times the steps alone, not what the others do between them.
        stop,  # Next: a step counts as done for it before any grid or checkpoint shows that step.
        guard,
        *([Summaries(writer, config.sample_freq)] if writer is not None else []),
        samples,
        cbs.EpochCounter(),
        cbs.CheckpointSaver(run.manager if chief else distribute.ScratchCheckpointManager(run.checkpoint),
                            config.ckpt_freq, failure=failure),
        cbs.MetricsLog(os.path.join(config.run_checkpoint_dir, runs.METRICS_FILE), model.metric_names),
        *extra_callbacks,
    ]
    if not chief:  # Grids and the metrics log are the chief's alone.
        callbacks = [c for c in callbacks if not isinstance(c, (cbs.SampleGrid, cbs.MetricsLog))]
    if features_fn is not None:
        periodic_eval = _periodic_eval(config, run, image_set.images, features_fn, writer, failure,
                                       verbose=bool(verbose))
        callbacks.insert(len(callbacks) - len(extra_callbacks), periodic_eval)
    # A progress bar on a terminal; plain lines, one per epoch, in logs and pipes.
    terminal = bool(verbose) and sys.stdout.isatty()
    if verbose:
        time_left = cbs.TimeLeft(at_most=bool(config.patience))  # --patience may end the training sooner.
        callbacks.append(cbs.ProgressBar(time_left) if terminal
                         else cbs.EpochLines(config.epoch, clock=clock, time_left=time_left))
    started = time.time()
    history = {}
    ended = ended_early_line(config) if chief else None
    if start_epoch < config.epoch and not ended:
        with _worker_errors(config, run):
            try:
                with graph_optimizer_off_on_cpus(config.strategy):
                    history = _fit(model, config, strategy, image_set.images, epoch_steps,
                                   cbs.TrainingCallbacks(callbacks, model, config.epoch, verbose=int(terminal)),
                                   terminal)
            finally:
                stop.release()  # Signal handlers and stdout as they were, however `fit` ended.
    elif verbose:
        print(ended or finished_line(config.run, start_epoch))
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
            f"from that state was saved. Newest good checkpoint: {newest or 'none'}. "
            + (f"Go on from its networks with a lower learning rate as a new run: --train --init_from "
               f"{config.run} --run NEW_NAME --learning_rate LOWER (the same command would diverge "
               f"the same way)." if newest else
               "Train again with a lower --learning_rate (or another --seed)."))
    stopped_by = stop.received or (STOPPED_BY_ANOTHER_WORKER if model.stop_agreement.requested_elsewhere else None)
    return TrainResult(run=run, history=history, stopped_by=stopped_by, output_closed=stop.pipe_closed,
                       steps_run=int(model.step.numpy()) - start_step, seconds=time.time() - started,
                       step_seconds=clock.seconds, first_seconds=clock.first_seconds or 0.0,
                       first_steps=model.steps_per_execution, samples=samples.written, chief=chief,
                       saved=model.stop_agreement.saves)


@contextlib.contextmanager
def graph_optimizer_off_on_cpus(strategy_name: str):
    """TensorFlow's graph optimiser (grappler) off while training on one device without GPUs: on the
    CPU it buys the train step nothing (oneDNN's own rewrite does the fusions that count) and costs
    0.5 s of its first call (docs/speed.md). GPUs need its layout pass, and the distributed strategies
    keep it as they were measured. Restored afterwards: generation and export keep it."""
    if strategy_name != "default" or tf.config.list_physical_devices("GPU"):
        yield
        return
    before = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options({**before, "disable_meta_optimizer": True})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options(
            {**before, "disable_meta_optimizer": before.get("disable_meta_optimizer", False)})


def _fit(model: DCGAN, config: RunConfig, strategy, images, epoch_steps: int, callbacks, terminal: bool) -> dict:
    """Trains from the model's epoch to config.epoch; `fit`'s history. A run saved in the middle of an
    epoch (model.epoch_step steps into it) first trains that epoch's remaining batches, in their order,
    so the resume is the same as an uninterrupted run."""
    start_epoch = int(model.epoch.numpy())
    done = int(model.epoch_step.numpy())
    # Steps into the epoch that no longer fit it (the data changed size) start the epoch afresh.
    parts = [(start_epoch, epoch_steps - done, done)] if 0 < done < epoch_steps else []
    if start_epoch + len(parts) < config.epoch:
        parts.append((start_epoch + len(parts), epoch_steps, 0))
    for first_epoch, steps, skip in parts:
        last_epoch = first_epoch + 1 if skip else config.epoch
        dataset = distribute.distribute_batches(strategy, functools.partial(
            pipeline.make_dataset, images, config.batch_size, config.seed, first_epoch=first_epoch,
            last_epoch=last_epoch, mirror=config.mirror, skip_batches=skip))
        model.fit(dataset, epochs=last_epoch, initial_epoch=first_epoch, shuffle=False, steps_per_epoch=steps,
                  callbacks=callbacks.part(steps, last=last_epoch == config.epoch),
                  verbose=int(terminal))
        if model.stop_training:
            break
    return model.history.history


def _worker_errors(config: RunConfig, run: Optional[Run] = None):
    """A lost worker of a multiworker run becomes one error line naming the newest checkpoint."""
    if config.strategy != "multiworker":
        return contextlib.nullcontext()
    return distribute.translate_worker_errors(lambda: run.manager.latest_checkpoint if run else "")


def _quality_features(config: RunConfig, verbose: bool):
    """The FID network of --eval_freq, loaded before anything else so that missing weights or a damaged
    quality.json are reported before the run starts."""
    from dcgan_tf.quality import evaluate

    runs.read_quality(config.run_checkpoint_dir)
    return evaluate.inception_features_fn(config.fid_weights, progress=verbose)


def _periodic_eval(config: RunConfig, run: Run, real_images, features_fn, writer, failure, verbose: bool):
    """The FID/KID callback of --eval_freq, with the real images' features ready before the first step."""
    from dcgan_tf.quality import evaluate

    evaluator = evaluate.make_evaluator(real_images, features_fn, z_dim=config.z_dim, z_dist=config.z_dist,
                                        samples=config.eval_samples, seed=config.seed, dataset=config.dataset,
                                        cache_folder=config.run_checkpoint_dir)
    best_manager = None
    if config.keep_best != "none":
        best_manager = tf.train.CheckpointManager(
            run.checkpoint, os.path.join(config.run_checkpoint_dir, runs.BEST_DIR), max_to_keep=1)
    return cbs.PeriodicEval(evaluator, config.eval_freq, config.run_checkpoint_dir, summary_writer=writer,
                            keep_best=config.keep_best, best_manager=best_manager, patience=config.patience,
                            failure=failure, verbose=verbose)
