"""The command line: flags -> RunConfig -> the chosen action (train, test grid, export).

One absl flag per RunConfig field, with the field's default and help. TensorFlow is imported only
after the flags are parsed, so `--help` and flag errors answer at once.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
import typing
import warnings

from absl import app, flags, logging

from dcgan_tf.config import RunConfig
from dcgan_tf.errors import RunWarning, UserError


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    hints = typing.get_type_hints(RunConfig)
    # Registered as the main program's own flags, so that plain --help lists them.
    owner = {"module_name": sys.argv[0] or "dcgan_tf"}
    for field in dataclasses.fields(RunConfig):
        kind = hints[field.name]
        help_text = field.metadata.get("help", field.name)
        if field.name in flag_values:
            # absl.logging owns a --log_dir for log files it never writes here; ours is TensorBoard's.
            delattr(flag_values, field.name)
        if kind is bool:
            flags.DEFINE_bool(field.name, field.default, help_text, flag_values=flag_values, **owner)
        elif "choices" in field.metadata:
            flags.DEFINE_enum(field.name, field.default, field.metadata["choices"], help_text,
                              flag_values=flag_values, **owner)
        elif kind in (int, typing.Optional[int]):
            flags.DEFINE_integer(field.name, field.default, help_text, flag_values=flag_values, **owner)
        elif kind in (float, typing.Optional[float]):
            flags.DEFINE_float(field.name, field.default, help_text, flag_values=flag_values, **owner)
        else:
            flags.DEFINE_string(field.name, field.default, help_text, flag_values=flag_values, **owner)


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> RunConfig:
    return RunConfig.create(**{f.name: flag_values[f.name].value for f in dataclasses.fields(RunConfig)})


def _format_warning(message, category, filename, lineno, line=None, _default=warnings.formatwarning):
    if issubclass(category, RunWarning):
        return f"dcgan_tf: warning: {message}\n"
    return _default(message, category, filename, lineno, line)


def _quiet_tensorflow() -> None:
    """Keeps library chatter (checkpoint sharding notes, C++ info lines) out of the user's terminal."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.set_verbosity(logging.WARNING)


def run_action(config: RunConfig) -> int:
    from dcgan_tf.model import nets

    if config.download:
        from dcgan_tf.data import download

        download.download_simpsons(os.path.join(config.data_dir, "simpsons_64"), config.download_url)
        others = (config.train, config.export, config.generate, config.interpolate, config.report,
                  config.tflite, config.import_tf1, config.visualize is not None)
        if not any(others):
            return 0
    nets.check_config(config)
    from dcgan_tf.use import export
    from dcgan_tf.data import images
    from dcgan_tf.training import train
    from dcgan_tf.use import generate
    from dcgan_tf.use import visualize
    from dcgan_tf.model.gan import generated_images
    from dcgan_tf.model.latent import draw_z, sample_z

    # Actions on a trained model (each a library function; see generate.py, visualize.py, tf1_import.py).
    wants_images = bool(config.generate or config.interpolate) or config.visualize is not None
    tools = wants_images or config.report or config.tflite or bool(config.import_tf1) or config.eval
    if config.import_tf1:
        from dcgan_tf.use import tf1_import

        path = tf1_import.import_tf1_checkpoint(config.import_tf1, config)
        print(f"dcgan_tf: imported {config.import_tf1} as the checkpoint {path}")
    if config.train:
        result = train.train(config)
        run = result.run
        step = int(run.model.step.numpy())
        if result.stopped_by:
            print(f"dcgan_tf: stopped by {result.stopped_by} at step {step}; checkpoint saved in "
                  f"{run.config.run_checkpoint_dir}. Run the same command to resume.")
        elif result.steps_run and not result.chief:
            print(f"dcgan_tf: trained {result.steps_run} steps as a worker; the chief writes the run's files.")
        elif result.steps_run:
            print(f"dcgan_tf: trained {result.steps_run} steps in {result.seconds:.1f} s "
                  f"({result.seconds / result.steps_run:.3f} s/step); checkpoints in {run.config.run_checkpoint_dir}, "
                  f"samples in {run.config.run_sample_dir}, TensorBoard logs in {run.config.run_log_dir}.")
        try:
            for path in (visualize.write_report(run.config) if result.chief else ()):
                print(f"dcgan_tf: wrote {path}")
        except Exception as e:  # Pictures must not turn a finished training into a failure.
            print(f"dcgan_tf: warning: no training report ({type(e).__name__}: {e})", file=sys.stderr)
    elif config.export or not tools or (not config.saved_model and (wants_images or config.tflite or config.eval)):
        run = train.load_trained(config)
    if config.export or (config.tflite and not config.saved_model):
        path = export.export_generator(run.model.sampler(config.live_weights), run.config, run.config.run_export_dir)
        print(f"dcgan_tf: exported the generator as a SavedModel to {path}")
    if config.tflite:
        print(f"dcgan_tf: wrote {export.to_tflite(config.saved_model or path)}")
    if config.eval:
        _measure_quality(config, None if config.saved_model else run)
    if wants_images:
        source = generate.load_source(config, None if config.saved_model else run)
        folder = generate.output_dir(config, source)
        print(f"dcgan_tf: drawing from {source.origin} with --seed {config.seed}")
    if config.generate:
        paths = generate.generate(source, config.generate, folder, config.seed, grid=config.grid)
        print(f"dcgan_tf: wrote {len(paths)} file(s): {paths[0]}" + (f" ... {paths[-1]}" if len(paths) > 1 else ""))
    if config.visualize is not None:
        paths = visualize.visualize(source, config.visualize, folder, batch_size=config.batch_size,
                                    seed=config.seed, dims=config.visualize_dims)
        print(f"dcgan_tf: wrote {len(paths)} file(s) into {folder}")
    if config.interpolate:
        keys = draw_z(config.interpolate, source.z_dim, source.z_dist, seed=config.seed)
        for path in visualize.interpolate(source, keys, config.interpolate_steps, folder,
                                          f"interpolate_s{config.seed}_k{config.interpolate}"):
            print(f"dcgan_tf: wrote {path}")
    if config.report and not config.train:
        for path in visualize.write_report(config):
            print(f"dcgan_tf: wrote {path}")
    if not config.train and not config.export and not tools:
        # This invocation's --seed (fresh unless given), not the run's: each test grid is new.
        z = sample_z(run.config.batch_size, run.config.z_dim, run.config.z_dist, seed=config.seed)
        stamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime())
        path = images.save_grid(generated_images(run.model.sampler(config.live_weights), z),
                                os.path.join(run.config.run_sample_dir, f"test_{stamp}.png"))
        print(f"dcgan_tf: wrote {path} from {run.resumed_from}")
    return 0


def _measure_quality(config: RunConfig, run) -> None:
    """--eval: FID and KID of the run's checkpoint (or --saved_model) against the dataset's images,
    appended to quality.json (the run's checkpoint folder, or the SavedModel's) and, for a run, to
    its TensorBoard log."""
    from dcgan_tf.quality import evaluate
    from dcgan_tf.use import generate
    from dcgan_tf.training import train

    source = generate.load_source(config, run)
    data_config = run.config if run is not None else config
    folder = data_config.run_checkpoint_dir if run is not None else config.saved_model
    evaluate.read_quality(folder)  # A damaged quality.json is reported before the long part.
    data_config, image_set = train.prepare_data(data_config)
    data_config = dataclasses.replace(data_config, eval_samples=config.eval_samples)
    evaluator = evaluate.make_evaluator(data_config, image_set.images, evaluate.inception_features_fn(config.fid_weights),
                                        source.z_dim, source.z_dist,
                                        cache_folder=folder if run is not None else None)
    print(f"dcgan_tf: measuring {source.origin}: {config.eval_samples} generated images against "
          f"{len(evaluator.real)} of {len(image_set.images)} real ones", flush=True)
    step = int(run.model.step.numpy()) if run is not None else None
    epoch = int(run.model.epoch.numpy()) if run is not None else None
    record = {"step": step, "epoch": epoch, "checkpoint": source.origin, **evaluator.evaluate(source.fn)}
    evaluate.append_evaluation(folder, record)
    path = os.path.join(folder, evaluate.QUALITY_FILE)
    if run is not None:
        import tensorflow as tf

        evaluate.write_summaries(tf.summary.create_file_writer(data_config.run_log_dir), record, step)
    print(f"dcgan_tf: {evaluate.describe(record)}; recorded in {path}")


class _Terminated(Exception):
    """SIGTERM outside training (during start-up, sampling or export)."""


def _raise_terminated(signum, frame):
    raise _Terminated


def main(argv, flag_values: flags.FlagValues = flags.FLAGS) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {' '.join(argv[1:])}; all options are --flags.")
    # During training, callbacks.GracefulStop takes over both signals and saves a checkpoint.
    signal.signal(signal.SIGTERM, _raise_terminated)
    warnings.formatwarning = _format_warning
    try:
        config = config_from_flags(flag_values)
        _quiet_tensorflow()
        return run_action(config)
    except UserError as e:
        print(f"dcgan_tf: error: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, _Terminated):
        print("dcgan_tf: interrupted outside training; checkpoints already saved are untouched.",
              file=sys.stderr)
        return 130


def execute(argv) -> int:
    """Runs a command line in this process (argv[0] is the program name) and returns its exit
    status, as main.py would; for tests and for driving the tool from Python."""
    flag_values = flags.FlagValues()
    define_flags(flag_values)
    try:
        remaining = flag_values(list(argv))
    except flags.Error as e:
        print(f"dcgan_tf: error: {e}", file=sys.stderr)
        return 2
    previous = signal.getsignal(signal.SIGTERM)
    try:
        return main(remaining, flag_values)
    finally:
        signal.signal(signal.SIGTERM, previous)


HELP_FLAGS = ("-h", "--help", "-help", "--helpshort", "--helpfull")


def program_name(argv0: str) -> str:
    """How the user started this program: "python main.py" or "dcgan-tf", for messages."""
    name = os.path.basename(argv0 or "") or "dcgan-tf"
    return f"python {name}" if name.endswith(".py") else name


def _parse_flags(argv):
    """absl's parser, with help on -h/--help (exit 0; absl's own exits 1 and knows no -h) and a bad
    flag value as one error line (exit 2) instead of its usage dump."""
    program = program_name(argv[0] if argv else "")
    asked = [arg for arg in argv[1:] if arg in HELP_FLAGS]
    if asked:
        text = flags.FLAGS.get_help() if "--helpfull" in asked else flags.FLAGS.main_module_help()
        print(f"usage: {program} [--flag=value ...]\n\n{text.strip()}")
        sys.exit(0)
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        print(f"dcgan_tf: error: {e} ({program} --help lists the flags)", file=sys.stderr)
        sys.exit(2)


def run() -> None:
    """Entry point of main.py and the `dcgan-tf` console script."""
    define_flags()
    app.run(main, flags_parser=_parse_flags)
