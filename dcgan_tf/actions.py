"""What a command does: a table from each action flag to one short function, run in the table's order.

A command with no action flag writes a test grid from the run's newest checkpoint, as the original
program's test mode did. Actions on a trained model find the run by name (dcgan_tf/runs.py) and
load it once (`Command.run`); `--saved_model` takes the generator from an export instead.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import warnings
from typing import Collection, Optional

from dcgan_tf import runs
from dcgan_tf.config import RunConfig
from dcgan_tf.errors import RunWarning, UserError


class Command:
    """One invocation: its options, the names of the options given on the command line, and what its
    actions share (the trained run, the exported SavedModel, the generator to draw from)."""

    def __init__(self, config: RunConfig, given: Optional[Collection[str]] = None):
        self.config = config
        self.given = given
        self.stopped = False  # Set when a signal stopped training: the command's later actions are skipped.
        self._exported: Optional[str] = None

    @functools.cached_property
    def run(self):
        from dcgan_tf.training import build

        return build.load_trained(self.config, self.given)

    @functools.cached_property
    def saved_model(self) -> str:
        """The SavedModel folder --saved_model means (an export base folder: its newest version)."""
        from dcgan_tf.use import generate

        given = self.config.saved_model
        path = generate.resolve_saved_model(given)
        if os.path.normpath(path) != os.path.normpath(given):
            print(f"dcgan_tf: --saved_model {given}: taking its newest version, {os.path.basename(path)} ({path})")
        return path

    @functools.cached_property
    def source(self):
        """The generator --generate, --visualize and --interpolate draw from, and their output folder."""
        from dcgan_tf.use import generate

        source = (generate.from_saved_model(self.saved_model) if self.config.saved_model
                  else generate.load_source(self.config, self.run))
        print(f"dcgan_tf: drawing from {source.origin} with --seed {self.config.seed}")
        return source

    @property
    def image_folder(self) -> str:
        from dcgan_tf.use import generate

        return generate.output_dir(self.config.sample_dir, self.source)

    def exported(self) -> str:
        """The run's generator exported as a SavedModel (once per command), into the version folder of
        its checkpoint's step (runs.export_version_dir)."""
        if self._exported is None:
            from dcgan_tf.use import export

            run, live = self.run, self.config.live_weights
            step = int(run.model.step.numpy())
            path = runs.export_version_dir(run.config.export_dir, run.config.run, step, live=live)
            self._exported = export.export_generator(run.model.sampler(live), run.config, path, step=step,
                                                     weights=run.model.sampler_weights(live))
            print(f"dcgan_tf: exported the generator as a SavedModel to {self._exported}")
        return self._exported


def list_runs(command: Command) -> None:
    from dcgan_tf.training import runlock

    found = runs.list_runs(command.config.checkpoint_dir)
    if not found:
        print(f"dcgan_tf: no runs in {command.config.checkpoint_dir}")
    for info in found:
        training_now = runlock.holder(info.folder)
        print(runs.describe_run(info) + (f"; training now: {training_now}" if training_now else ""))


def download(command: Command) -> None:
    from dcgan_tf.data import download as fetch

    config = command.config
    fetch.download_simpsons(os.path.join(config.data_dir, fetch.FOLDER), config.download_url)


def import_tf1(command: Command) -> None:
    from dcgan_tf.use import tf1_import

    path = tf1_import.import_tf1_checkpoint(command.config.import_tf1, command.config)
    print(f"dcgan_tf: imported {command.config.import_tf1} as the checkpoint {path}")


def train(command: Command) -> None:
    from dcgan_tf.quality.evaluate import best_checkpoint
    from dcgan_tf.training import build, run_options, train as training
    from dcgan_tf.use import visualize

    config = run_options.training_run(command.config, command.given or ())
    best_later = command.config.from_best and not command.config.init_from
    if best_later and config.keep_best == "none" and best_checkpoint(config.run_checkpoint_dir) is None:
        raise UserError(f"--from_best: run {config.run} keeps no best checkpoint for the actions after the "
                        f"training; add --eval_freq N --keep_best kid (or fid), or drop --from_best.")
    done = training.finished_epochs(config)
    if done is not None:  # Said at once, without building the networks (later actions build them).
        print(training.finished_line(config.run, done))
        return
    ended = training.ended_early_line(config)
    if ended:
        print(ended)
        return
    result = training.train(config)
    run = command.__dict__["run"] = result.run  # Later actions of this command use the trained run.
    if result.stopped_by:
        _say_stopped(result, int(run.model.step.numpy()), run.config.run_checkpoint_dir)
        command.stopped = True
        return
    if result.steps_run and not result.chief:
        print(f"dcgan_tf: trained {result.steps_run} steps as a worker; the chief writes the run's files.")
    elif result.steps_run:
        print(f"dcgan_tf: trained {result.steps_run} steps in {result.seconds:.1f} s ({_step_rate(result)}); "
              f"checkpoints in {run.config.run_checkpoint_dir}, samples in {run.config.run_sample_dir}, "
              f"TensorBoard logs in {run.config.run_log_dir}.")
    try:
        for path in (visualize.write_report(*_report_folders(run.config)) if result.chief else ()):
            print(f"dcgan_tf: wrote {path}")
    except Exception as e:  # Pictures must not turn a finished training into a failure.
        warnings.warn(RunWarning(f"no training report ({type(e).__name__}: {e})"), stacklevel=2)
    if best_later and result.chief:  # Only the chief measures and keeps a best.
        best = build.restore_best(run)
        print(f"dcgan_tf: --from_best: the actions after the training use the run's best checkpoint, {best}")


def _say_stopped(result, step: int, checkpoint_dir: str) -> None:
    """The line of a training stopped by a signal, another worker or a closed pipe. A stop must be
    prompt (container runtimes kill after a grace period), so nothing else of the command runs after
    it: the report takes seconds on a long run, and later actions (--export, --eval, ...) more."""
    from dcgan_tf.training import train as training

    if result.stopped_by == training.STOPPED_BY_CLOSED_PIPE:
        stopped = "stdout's reader went away (a closed pipe): stopped"
    else:
        stopped = f"stopped by {result.stopped_by}" + (" (stdout's reader had gone away)" if result.output_closed
                                                       else "")
    # The other workers of a cluster write nothing.
    saved = (f"checkpoint saved in {checkpoint_dir}" if result.chief
             else "the chief saved the checkpoint" if result.saved
             else "the chief could not write its files (its error line says why), so nothing was saved")
    # Where stdout leads nowhere now, the line goes to stderr.
    print(f"dcgan_tf: {stopped} at step {step}; {saved}. Run the same command to resume.",
          file=sys.stderr if result.output_closed else sys.stdout, flush=True)
    if result.output_closed:
        raise BrokenPipeError  # The command ends as one killed by SIGPIPE would (cli.main).
    print("dcgan_tf: after a stop nothing else runs: the training report and the command's other "
          "actions were skipped (the same command with --report in place of --train writes the report).")


def _step_rate(result) -> str:
    """Seconds a step in the steps themselves, the first execution (tracing) apart when later ones ran."""
    later = result.steps_run - result.first_steps
    if later <= 0:
        return f"{result.step_seconds / result.steps_run:.3f} s/step, tracing included"
    return (f"{(result.step_seconds - result.first_seconds) / later:.3f} s/step after the first, which took "
            f"{result.first_seconds:.1f} s with tracing")


def export(command: Command) -> None:
    command.exported()


def tflite(command: Command) -> None:
    from dcgan_tf.use import export as exporting

    path = command.saved_model if command.config.saved_model else command.exported()
    print(f"dcgan_tf: wrote {exporting.to_tflite(path)}")


def evaluate(command: Command) -> None:
    """--eval: FID and KID of the run's checkpoint (or --saved_model) against the dataset's images,
    appended to quality.json (the run's checkpoint folder, or the SavedModel's) and, for a run, to
    its TensorBoard log."""
    from dcgan_tf.quality import evaluate as quality
    from dcgan_tf.training import build
    from dcgan_tf.use import generate

    config = command.config
    run = None if config.saved_model else command.run
    source = generate.load_source(config, run) if run is not None else generate.from_saved_model(command.saved_model)
    folder = run.config.run_checkpoint_dir if run is not None else command.saved_model
    runs.read_quality(folder)  # A damaged quality.json is reported before the long part.
    data_config, image_set = build.prepare_data(run.config if run is not None else config)
    evaluator = quality.make_evaluator(image_set.images, quality.inception_features_fn(config.fid_weights),
                                       z_dim=source.z_dim, z_dist=source.z_dist, samples=config.eval_samples,
                                       seed=data_config.seed, dataset=data_config.dataset,
                                       cache_folder=folder if run is not None else None)
    print(f"dcgan_tf: measuring {source.origin}: {config.eval_samples} generated images against "
          f"{len(evaluator.real)} of {len(image_set.images)} real ones", flush=True)
    step = int(run.model.step.numpy()) if run is not None else source.step
    epoch = int(run.model.epoch.numpy()) if run is not None else None
    record = {"step": step, "epoch": epoch, "checkpoint": source.origin, **evaluator.evaluate(source.fn)}
    quality.append_evaluation(folder, record)
    if run is not None:
        import tensorflow as tf

        quality.write_summaries(tf.summary.create_file_writer(data_config.run_log_dir), record, step)
    print(f"dcgan_tf: {quality.describe(record)}; recorded in {os.path.join(folder, runs.QUALITY_FILE)}")


def generate(command: Command) -> None:
    from dcgan_tf.use import generate as generating

    config = command.config
    paths = generating.generate(command.source, config.generate, command.image_folder, config.seed, grid=config.grid)
    print(f"dcgan_tf: wrote {len(paths)} file(s): {paths[0]}" + (f" ... {paths[-1]}" if len(paths) > 1 else ""))


def visualize(command: Command) -> None:
    from dcgan_tf.use import visualize as visualizing

    config = command.config
    paths = visualizing.visualize(command.source, config.visualize, command.image_folder,
                                  batch_size=config.batch_size, seed=config.seed, dims=config.visualize_dims)
    print(f"dcgan_tf: wrote {len(paths)} file(s) into {command.image_folder}")


def interpolate(command: Command) -> None:
    from dcgan_tf.model.latent import z_numpy
    from dcgan_tf.use import visualize as visualizing

    config, source = command.config, command.source
    keys = z_numpy(config.interpolate, source.z_dim, source.z_dist, seed=config.seed)
    for path in visualizing.interpolate(source, keys, config.interpolate_steps, command.image_folder,
                                        f"interpolate_s{config.seed}_k{config.interpolate}"):
        print(f"dcgan_tf: wrote {path}")


def report(command: Command) -> None:
    from dcgan_tf.training import run_options
    from dcgan_tf.use import visualize as visualizing

    if command.config.train:
        return  # --train writes its report when it ends.
    config = command.config
    try:
        config = dataclasses.replace(config, run=run_options.find_trained(config, command.given).name)
    except UserError:
        # A run with pictures but no checkpoint yet: its own name, as any of its folders spells it.
        for root in (config.checkpoint_dir, config.sample_dir, config.log_dir):
            found = runs.match_entry(root, config.run)
            if found:
                config = dataclasses.replace(config, run=found)
                break
    for path in visualizing.write_report(*_report_folders(config)):
        print(f"dcgan_tf: wrote {path}")


def _report_folders(config: RunConfig) -> tuple:
    """write_report's arguments for the run `config` names: its name and its three folders."""
    return config.run, config.run_checkpoint_dir, config.run_sample_dir, config.run_log_dir


def test_grid(command: Command) -> None:
    """No action flag: the original's test mode, `--visualize 0` (a grid of --batch_size z drawn with
    this invocation's --seed, fresh unless given) from the run's newest checkpoint or --saved_model,
    written beside the run's training grids."""
    from dcgan_tf.use import visualize as visualizing

    config, source = command.config, command.source
    batch_size = config.batch_size if config.saved_model else command.run.config.batch_size
    [path] = visualizing.visualize(source, 0, runs.picture_dir(config.sample_dir, source.name),
                                   batch_size=batch_size, seed=config.seed)
    print(f"dcgan_tf: wrote {path}")


# The action flags, in the order their actions run; each entry is (RunConfig field, function).
ACTIONS = (
    ("download", download),
    ("import_tf1", import_tf1),
    ("train", train),
    ("export", export),
    ("tflite", tflite),
    ("eval", evaluate),
    ("generate", generate),
    ("visualize", visualize),
    ("interpolate", interpolate),
    ("report", report),
)


def _asked(config: RunConfig, field: str) -> bool:
    value = getattr(config, field)
    return value is not None if field == "visualize" else bool(value)


def run_actions(config: RunConfig, given: Optional[Collection[str]] = None) -> int:
    """Runs every action `config` asks for (test mode when none); `given`: the options named on the
    command line (None: all of them, as for a call from Python)."""
    command = Command(config, given)
    if config.runs:
        list_runs(command)
        return 0
    asked = [function for field, function in ACTIONS if _asked(config, field)]
    after_training = asked[asked.index(train) + 1:] if train in asked else []
    if config.from_best and train in asked and not config.init_from and after_training in ([], [report]):
        raise UserError("--from_best with --train picks the checkpoint the actions after the training use "
                        "(--export, --tflite, --eval, --generate, --visualize, --interpolate); add one of them, "
                        "or drop --from_best (training always resumes from the newest).")
    if asked != [download]:
        from dcgan_tf.model import nets

        nets.check_config(config)
    for function in asked or [test_grid]:
        function(command)
        if command.stopped:
            break
    return 0
