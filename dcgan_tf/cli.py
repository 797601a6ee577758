"""The command line: flags -> RunConfig -> the actions asked for (dcgan_tf/actions.py).

One absl flag per RunConfig field, with the field's default and help. TensorFlow is imported only
after the flags are parsed, so `--help` and flag errors answer at once.
"""

from __future__ import annotations

import atexit
import dataclasses
import gc
import os
import signal
import sys
import typing
import warnings

from absl import app, flags

from dcgan_tf.config import RunConfig
from dcgan_tf import import_hooks, quiet
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
        if kind in (bool, typing.Optional[bool]):
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


def _verbose() -> bool:
    """Whether TensorFlow's own log lines were asked for: --verbose or DCGAN_TF_VERBOSE=1."""
    return quiet.verbose_from_env() or ("verbose" in flags.FLAGS and bool(flags.FLAGS["verbose"].value))


def given_options(flag_values: flags.FlagValues = flags.FLAGS) -> frozenset:
    """The options named on the command line (the others took their defaults)."""
    return frozenset(f.name for f in dataclasses.fields(RunConfig) if flag_values[f.name].present)


def unexpected_arguments(words) -> str:
    """The one-line error for words that are not --flags (`main.py extra`, `--train True`)."""
    quoted = " ".join(repr(word) for word in words)
    return (f"unexpected argument{'s' if len(words) > 1 else ''} {quoted}: every option is a --flag, and a "
            f"true/false flag takes no separate value (--train, --notrain or --train=false).")


class _Terminated(Exception):
    """SIGTERM outside training (during start-up, sampling or export)."""


def _raise_terminated(signum, frame):
    raise _Terminated


def main(argv, flag_values: flags.FlagValues = flags.FLAGS) -> int:
    if len(argv) > 1:
        print(f"dcgan_tf: error: {unexpected_arguments(argv[1:])} ({program_name(argv[0])} --help lists the "
              f"flags)", file=sys.stderr)
        return 2
    # During training, callbacks.GracefulStop takes over both signals and saves a checkpoint.
    signal.signal(signal.SIGTERM, _raise_terminated)
    warnings.formatwarning = _format_warning
    try:
        config = config_from_flags(flag_values)
        quiet.quiet_tensorflow(_verbose())
        from dcgan_tf import actions

        return actions.run_actions(config, given_options(flag_values))
    except UserError as e:
        print(f"dcgan_tf: error: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, _Terminated):
        print("dcgan_tf: interrupted; checkpoints already saved are untouched.",
              file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _output_gone()


def _output_gone() -> int:
    """The reader of the output went away (`... | head`): the command ends quietly, with the status of
    one killed by SIGPIPE (128 + 13), as the shell's own tools do. Python's flush at exit would fail
    again on the closed pipe, so stdout points at the null device from here."""
    quiet.stream_to_null_device(sys.stdout)
    return 141


def execute(argv) -> int:
    """Runs a command line in this process (argv[0] is the program name) and returns its exit
    status, as main.py would for the command's own flags; for tests and for driving the tool from
    Python. main.py's process-wide options (--verbose, --version, --help) are run()'s alone."""
    flag_values = flags.FlagValues()
    define_flags(flag_values)
    try:
        remaining = flag_values(list(argv))
    except flags.Error as e:
        print(f"dcgan_tf: error: {e}", file=sys.stderr)
        return 2
    previous, previous_format = signal.getsignal(signal.SIGTERM), warnings.formatwarning
    try:
        return main(remaining, flag_values)
    finally:  # main() sets both for the whole process; a caller's own come back.
        signal.signal(signal.SIGTERM, previous)
        warnings.formatwarning = previous_format


HELP_FLAGS = ("-h", "--help", "-help", "--helpshort", "--helpfull")


def program_name(argv0: str) -> str:
    """How the user started this program: "python main.py" or "dcgan-tf", for messages."""
    name = os.path.basename(argv0 or "") or "dcgan-tf"
    return f"python {name}" if name.endswith(".py") else name


def package_version() -> str:
    """This package's version, from its installed metadata; dcgan_tf.__version__ (the same number:
    pyproject.toml reads it from there) when it runs from a checkout that is not what is installed."""
    from importlib import metadata

    import dcgan_tf

    try:
        dist = metadata.distribution("dcgan_tf")
    except metadata.PackageNotFoundError:
        return dcgan_tf.__version__
    here = os.path.dirname(os.path.dirname(os.path.abspath(dcgan_tf.__file__)))
    if os.path.realpath(str(dist.locate_file(""))) != os.path.realpath(here):
        return dcgan_tf.__version__  # Another copy is installed; this one runs from its folder.
    return dist.version


def _parse_flags(argv):
    """absl's parser, with help on -h/--help (exit 0; absl's own exits 1 and knows no -h), --version
    (exit 0) and a bad flag value as one error line (exit 2) instead of its usage dump."""
    program = program_name(argv[0] if argv else "")
    if "--version" in argv[1:]:
        print(f"dcgan-tf {package_version()}")
        sys.exit(0)
    asked = [arg for arg in argv[1:] if arg in HELP_FLAGS]
    if asked:
        if "--helpfull" in asked:
            text = flags.FLAGS.get_help()
        else:  # The program's own flags, under a plain heading instead of the script's path.
            text = "flags:\n" + flags.FLAGS.main_module_help().strip().split("\n", 1)[1]
        print(f"usage: {program} [--flag=value ...]\n\n{text.strip()}")
        sys.exit(0)
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        print(f"dcgan_tf: error: {e} ({program} --help lists the flags)", file=sys.stderr)
        sys.exit(2)


def lighten_keras_import() -> None:
    """Keras's first import skips two optional libraries the command line never uses through it:
    IPython (for notebooks) and matplotlib (for its image galleries); each cost 0.4-0.5 s of start-up
    where installed. Both import as usual afterwards (the loss report draws with matplotlib)."""
    import_hooks.import_without("keras.src.saving.file_editor", "IPython")
    import_hooks.import_without("keras", "matplotlib")


def run() -> None:
    """Entry point of main.py and the `dcgan-tf` console script."""
    quiet.quiet_tensorflow(_verbose())  # First: before anything can import TensorFlow.
    lighten_keras_import()
    # TensorFlow's and Keras's half a million objects live as long as the process: no full collection
    # need walk them, nor the one Python makes at exit, which took 1.5-2.5 s after the last line.
    # Files are flushed and closed before then; Python promises no finalizers at exit.
    import_hooks.import_for_good("tensorflow")
    import_hooks.import_for_good("keras")
    atexit.register(gc.freeze)
    define_flags()
    if "verbose" not in flags.FLAGS:
        flags.DEFINE_bool("verbose", False, f"Show TensorFlow's own start-up and C++ log lines (or set "
                          f"{quiet.VERBOSE_ENV}=1).", module_name=sys.argv[0] or "dcgan_tf")
    try:
        app.run(main, flags_parser=_parse_flags)
    except BrokenPipeError:  # Before main(): `--help | head`.
        sys.exit(_output_gone())
