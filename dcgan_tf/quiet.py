"""Quiet start-up: TensorFlow's C++ start-up lines kept out of stderr unless asked for
(`--verbose` or DCGAN_TF_VERBOSE=1). main.py and the benchmarks call quiet_tensorflow() first.
Also where output nobody can read any more goes (to_null_device, ClosedPipeGuard)."""

from __future__ import annotations

import os
import re
import sys

from dcgan_tf.import_hooks import around_first_import

VERBOSE_ENV = "DCGAN_TF_VERBOSE"


def to_null_device(fd: int) -> None:
    """Points file descriptor `fd` at the null device: output whose reader is gone (a closed pipe, a
    hung-up terminal) is dropped from here on instead of failing every write."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)


def stream_to_null_device(stream) -> None:
    """to_null_device for a stream's file descriptor; nothing for a stream that has none (a caller's
    capture, a closed stream)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    to_null_device(fd)


class ClosedPipeGuard:
    """Stands in for sys.stdout while a training runs. Where the output's reader goes away
    (`main.py --train ... | head`), the stream is pointed at the null device and `on_closed()` is
    called once, instead of a BrokenPipeError ending the training between two checkpoints."""

    def __init__(self, stream, on_closed):
        self.stream, self.on_closed, self.pipe_closed = stream, on_closed, False

    def _guarded(self, call, *args):
        try:
            return call(*args)
        except BrokenPipeError:
            if not self.pipe_closed:
                self.pipe_closed = True
                stream_to_null_device(self.stream)  # What is still buffered goes there too.
                self.on_closed()
            return None

    def write(self, text):
        written = self._guarded(self.stream.write, text)
        return len(text) if written is None else written

    def flush(self):
        self._guarded(self.stream.flush)

    def __getattr__(self, name):  # isatty(), fileno(), encoding, ...: the stream's own.
        return getattr(self.stream, name)


def verbose_from_env() -> bool:
    """Whether DCGAN_TF_VERBOSE asks for TensorFlow's own log lines."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


# TensorFlow's C++ log lines ("I0000 00:00:1795857920.477871   30419 cudart_stub.cc:31] ...") and the
# line absl writes before the first of them. TF 2.21 writes its start-up lines on a machine without
# a GPU (no CUDA runtime, failed cuInit) from static initializers of its libraries, before it reads
# TF_CPP_MIN_LOG_LEVEL, so no setting hides them; they are taken out of stderr while it loads instead.
_CPP_LOG_LINE = re.compile(r"[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] ")
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_CPU_ONLY_ERRORS = ("cuInit", "CUDA", "cuda", "cuDNN", "cuFFT", "cuBLAS")
_CPU_GUARD_CONTINUED = "To enable the following instructions:"


def is_start_up_noise(line: str) -> bool:
    """One of TensorFlow's C++ start-up lines: info and warnings, and the errors of its CUDA probe."""
    if line.startswith((_ABSL_PREAMBLE, _CPU_GUARD_CONTINUED)):
        return True
    if not _CPP_LOG_LINE.match(line):
        return False
    return line[0] in "IW" or any(word in line for word in _CPU_ONLY_ERRORS)


def without_start_up_lines(function):
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
                    if not is_start_up_noise(line)]
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

    without_start_up_lines(load_and_find_devices)


def quiet_tensorflow(verbose: bool = False) -> None:
    """Keeps library chatter (TensorFlow's C++ start-up lines, absl's info lines such as checkpoint
    sharding notes) out of the terminal unless `verbose` or DCGAN_TF_VERBOSE=1. Call it before
    anything imports TensorFlow; once it is imported this does nothing for its start-up lines."""
    if verbose or verbose_from_env():
        return
    from absl import logging

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Read once, as its libraries load.
    around_first_import("tensorflow", _load_quietly)
    logging.set_verbosity(logging.WARNING)
