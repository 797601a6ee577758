"""The command line: flags -> RunConfig -> the actions asked for (dcgan_tf/actions.py).

One absl flag per RunConfig field, with the field's default and help. TensorFlow is imported only
after the flags are parsed, so `--help` and flag errors answer at once.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import sys
import typing
import warnings

from absl import app, flags, logging

from dcgan_tf.config import RunConfig
from dcgan_tf.errors import RunWarning, UserError
from dcgan_tf.import_hooks import around_first_import


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


VERBOSE_ENV = "DCGAN_TF_VERBOSE"


def _verbose() -> bool:
    """Whether TensorFlow's own log lines were asked for: --verbose or DCGAN_TF_VERBOSE=1."""
    if os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no", "off"):
        return True
    return "verbose" in flags.FLAGS and bool(flags.FLAGS["verbose"].value)


# TensorFlow's C++ log lines ("I0000 00:00:1795857920.477871   30419 cudart_stub.cc:31] ...") and the
# line absl writes before the first of them. TF 2.21 writes its start-up lines on a machine without
# a GPU (no CUDA runtime, failed cuInit) from static initializers of its libraries, before it reads
# TF_CPP_MIN_LOG_LEVEL, so no setting hides them; they are taken out of stderr while it loads instead.
_CPP_LOG_LINE = re.compile(r"[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] ")
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_CPU_ONLY_ERRORS = ("cuInit", "CUDA", "cuda", "cuDNN", "cuFFT", "cuBLAS")
_CPU_GUARD_CONTINUED = "To enable the following instructions:"


def _is_start_up_noise(line: str) -> bool:
    """One of TensorFlow's C++ start-up lines: info and warnings, and the errors of its CUDA probe."""
    if line.startswith((_ABSL_PREAMBLE, _CPU_GUARD_CONTINUED)):
        return True
    if not _CPP_LOG_LINE.match(line):
        return False
    return line[0] in "IW" or any(word in line for word in _CPU_ONLY_ERRORS)


def _without_start_up_lines(function):
    """Runs `function()` with file descriptor 2 sent to a temporary file, then writes back to stderr
    every line it caught that is not one of TensorFlow's C++ start-up lines."""
    import tempfile

    if sys.stderr is not None:
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # No stderr at all: nothing to keep clean.
        return function()
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            return function()
        finally:
            if sys.stderr is not None:
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not _is_start_up_noise(line)]
            if kept and sys.stderr is not None:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def _load_quietly(load, module) -> None:
    """TensorFlow's first import and its search for devices (the CUDA probe), without its C++ start-up
    lines."""
    def load_and_find_devices():
        load()
        try:
            module.config.list_physical_devices()
        except Exception:  # Not the place to fail; TensorFlow says it again when used.
            pass

    _without_start_up_lines(load_and_find_devices)


def _quiet_tensorflow() -> None:
    """Keeps library chatter (TensorFlow's C++ start-up lines, checkpoint sharding notes) out of the
    user's terminal unless --verbose or DCGAN_TF_VERBOSE=1 asks for it. Call it before anything
    imports TensorFlow: run() does, at the start of the process."""
    if not _verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Read once, as its libraries load.
        around_first_import("tensorflow", _load_quietly)
        logging.set_verbosity(logging.WARNING)


def given_options(flag_values: flags.FlagValues = flags.FLAGS) -> frozenset:
    """The options named on the command line (the others took their defaults)."""
    return frozenset(f.name for f in dataclasses.fields(RunConfig) if flag_values[f.name].present)


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
        from dcgan_tf import actions

        return actions.run_actions(config, given_options(flag_values))
    except UserError as e:
        print(f"dcgan_tf: error: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, _Terminated):
        print("dcgan_tf: interrupted; checkpoints already saved are untouched.",
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
    _quiet_tensorflow()  # First: before anything can import TensorFlow.
    define_flags()
    if "verbose" not in flags.FLAGS:
        flags.DEFINE_bool("verbose", False, f"Show TensorFlow's own start-up and C++ log lines (or set "
                          f"{VERBOSE_ENV}=1).", module_name=sys.argv[0] or "dcgan_tf")
    app.run(main, flags_parser=_parse_flags)
