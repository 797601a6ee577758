"""Behaviour added to `fit`: the epoch counter, metrics.csv, sample grids, the non-finite loss guard,
checkpoints, a clean stop on signals, the progress bar or plain epoch lines (each with the training's
time left), and FID/KID every --eval_freq steps (TensorBoard's scalars: dcgan_tf/training/summaries.py).

Each callback reads the step and epoch counters from the DCGAN model (`model.step`, `model.epoch`),
so files written after a resume continue the same numbering.
"""

from __future__ import annotations

import os
import signal
import stat
import sys
import threading
import time

import keras
import tensorflow as tf

from dcgan_tf import quiet, runs
from dcgan_tf.model.gan import generated_images
from dcgan_tf.data.images import make_grid, save_png


def _stop_agreement(model):
    """The model's replicas.StopAgreement (DCGAN's); None for the stub models of tests."""
    return getattr(model, "stop_agreement", None)


def _counter(variable) -> int:
    return int(keras.ops.convert_to_numpy(variable))


class OutputFailure:
    """Remembers the first failed write (disk full, folder made read-only, ...) and stops `fit`,
    so training never goes on without being able to save. `error` is None until then."""

    def __init__(self):
        self.error = None

    def attempt(self, callback: keras.callbacks.Callback, write, what: str):
        if self.error is not None:
            return None
        try:
            return write()
        except (OSError, tf.errors.OpError) as e:
            reason = getattr(e, "strerror", None) or str(e).strip().splitlines()[0]
            self.error = f"cannot write {what}: {reason}"
            agreement = _stop_agreement(callback.model)
            if agreement is not None:
                agreement.request(save=False)  # No worker of a cluster waits for the chief's last save.
            callback.model.stop_training = True
            return None


class EpochCounter(keras.callbacks.Callback):
    """Counts completed epochs in `model.epoch`, right after an epoch's last step (so a checkpoint
    saved at that step already counts it), and sets the steps into the epoch (`model.epoch_step`)
    back to 0; an epoch cut short by a stop does not count, and its steps done stay on record.

    `batch` is the index of the last step run: with steps_per_execution N, Keras calls this once
    per N steps, with the index of the N-th."""

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 == self.params.get("steps"):
            self.model.epoch.assign_add(1)
            self.model.epoch_step.assign(0)


class MetricsLog(keras.callbacks.Callback):
    """Appends one CSV row per completed epoch (epoch index, step, the epoch's metric means) to
    `path`. An epoch cut short writes nothing; a line cut by a kill is closed before appending. A file
    already there keeps its own columns (those of the run's first process; a name it lacks is
    left out, one it has that the model no longer logs is empty), so every row matches its header."""

    def __init__(self, path: str, names):
        super().__init__()
        self.path, self.names = path, tuple(names)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_at_start = _counter(self.model.epoch)

    def on_epoch_end(self, epoch, logs=None):
        if _counter(self.model.epoch) == self._epoch_at_start or not logs:
            return  # Cut short (or no steps): not an epoch's mean.
        fresh = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
        prefix, names = "", self.names
        if not fresh:
            with open(self.path, "rb") as f:
                columns = f.readline().decode("utf-8", "replace").strip().split(",")
                f.seek(-1, os.SEEK_END)
                prefix = "" if f.read(1) == b"\n" else "\n"
            if columns[:2] == ["epoch", "step"]:
                names = tuple(columns[2:])
        header = ",".join(("epoch", "step") + names) + "\n" if fresh else ""
        row = ",".join([str(self._epoch_at_start), str(_counter(self.model.step))]
                       + [repr(float(logs.get(n, float("nan")))) for n in names]) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(prefix + header + row)  # One write: a kill leaves at most one cut line.


class SampleGrid(keras.callbacks.Callback):
    """Every `every` steps (and at the end), the generator's images of the fixed `sample_z`:
    `{folder}/train_{epoch:02d}_{step:04d}.png`, and the grid as image summary "samples/G"."""

    def __init__(self, sample_z, folder: str, every: int, summary_writer=None, failure: OutputFailure = None):
        super().__init__()
        self.sample_z, self.folder, self.every = sample_z, folder, every
        self.failure = failure or OutputFailure()
        self.summary_writer = summary_writer
        self.last_written_step = None
        self.written = []
        self._step_epoch = None  # The epoch the newest step belongs to (the counter moves on at its end).

    def on_train_batch_begin(self, batch, logs=None):
        self._step_epoch = _counter(self.model.epoch)

    def on_train_batch_end(self, batch, logs=None):
        if _counter(self.model.step) % self.every == 0 and _state_is_finite(self.model):
            self.failure.attempt(self, self.write, f"a sample grid into {self.folder}")

    def on_train_end(self, logs=None):
        step = _counter(self.model.step)
        if self._step_epoch is None and self._has_grid(step):
            return  # No step ran (the run had already finished): its last grid is there.
        if self.last_written_step != step and _state_is_finite(self.model):
            self.failure.attempt(self, self.write, f"a sample grid into {self.folder}")

    def _has_grid(self, step: int) -> bool:
        return any(grid_step == step for grid_step, _, _ in runs.sample_grids(self.folder))

    def write(self) -> str:
        step = _counter(self.model.step)
        epoch = self._step_epoch if self._step_epoch is not None else _counter(self.model.epoch)
        images = generated_images(self.model.sampler(), self.sample_z)
        grid = make_grid(images)
        path = save_png(grid, os.path.join(self.folder, runs.grid_file(epoch, step)))
        if self.summary_writer is not None:
            with self.summary_writer.as_default(step=step):
                tf.summary.image("samples/G", grid[None], max_outputs=1)
            self.summary_writer.flush()
        self.last_written_step = step
        self.written.append(path)
        return path


class NonFiniteGuard(keras.callbacks.Callback):
    """Stops training at the first step whose losses or weights hold NaN or Inf (flagged by the
    model in `model.nonfinite_step`); `tripped_at` is that step. Checkpoints and grids are not
    written from such a state."""

    def __init__(self):
        super().__init__()
        self.tripped_at = None

    def on_train_batch_end(self, batch, logs=None):
        bad = _counter(self.model.nonfinite_step)
        if bad and self.tripped_at is None:
            self.tripped_at = bad
            self.model.stop_training = True


def _state_is_finite(model) -> bool:
    return _counter(model.nonfinite_step) == 0


class CheckpointSaver(keras.callbacks.Callback):
    """Saves through a tf.train.CheckpointManager every `every` steps and at the end of training,
    never once the model has flagged a NaN or Inf: a bad state is never saved. On a cluster worker
    (which saves into scratch) also not once a worker could not write (StopAgreement.saves)."""

    def __init__(self, manager: tf.train.CheckpointManager, every: int, failure: OutputFailure = None):
        super().__init__()
        self.manager, self.every = manager, every
        self.failure = failure or OutputFailure()
        self.last_saved_step = None

    def _allowed(self) -> bool:
        agreement = _stop_agreement(self.model)
        return _state_is_finite(self.model) and (agreement is None or agreement.saves)

    def on_train_batch_end(self, batch, logs=None):
        if _counter(self.model.step) % self.every == 0 and self._allowed():
            self.failure.attempt(self, self.save, f"a checkpoint into {self.manager.directory}")

    def on_train_end(self, logs=None):
        if self.last_saved_step != _counter(self.model.step) and self._allowed():
            self.failure.attempt(self, self.save, f"a checkpoint into {self.manager.directory}")

    def save(self) -> str:
        step = _counter(self.model.step)
        path = self.manager.save(checkpoint_number=step)
        self.last_saved_step = step
        return path


class GracefulStop(keras.callbacks.Callback):
    """On SIGINT (Ctrl-C), SIGTERM or SIGHUP (the terminal closed, e.g. a dropped ssh session), finish
    the current step and end `fit` normally, so the end-of-training callbacks save a checkpoint. A
    second Ctrl-C interrupts at once. Under nohup (SIGHUP ignored) hangups stay ignored.

    Where stdout's reader goes away (`--train ... | head`), stdout leads to the null device from then
    on, `pipe_closed` says so and the training stops the same way (`received` is then CLOSED_PIPE,
    unless a signal came first). A signal before the first step has ended quits at once (nothing new
    to save), except on a `cluster_worker` (its model's stop agreement spans workers): a worker of a
    multiworker cluster cannot leave alone, so its stop is agreed with the others in the next step
    (DCGAN.stop_training) and they all stop then.
    `release()` gives stdout and the signal handlers back, once the training has ended in whatever way."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM) + ((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ())
    CLOSED_PIPE = "a closed output pipe"

    def __init__(self):
        super().__init__()
        self.received = None
        self.pipe_closed = False
        self._previous = {}
        self._stepped = False
        self._stdout_guard = None

    @property
    def cluster_worker(self) -> bool:
        agreement = _stop_agreement(self.model)
        return bool(agreement is not None and agreement.across_workers)

    def on_train_begin(self, logs=None):
        self.received = None
        self._stepped = False
        if self._stdout_guard is None and sys.stdout is not None:
            self._stdout_guard = sys.stdout = quiet.ClosedPipeGuard(sys.stdout, self._pipe_closed)
        if self._previous:
            return  # Already set, by a part of the training whose end was not reached.
        if threading.current_thread() is not threading.main_thread():
            return  # Signal handlers can only be set from the main thread.
        for sig in self.SIGNALS:
            if sig != signal.SIGINT and signal.getsignal(sig) == signal.SIG_IGN:
                continue  # nohup's choice (SIGINT's SIG_IGN only marks a shell's background job).
            self._previous[sig] = signal.signal(sig, self._handle)

    def on_train_end(self, logs=None):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def release(self):
        """Signal handlers and stdout as they were before the training (stdout is guarded until here,
        so that the other callbacks' last lines at the training's end are guarded too)."""
        self.on_train_end()
        if self._stdout_guard is not None and sys.stdout is self._stdout_guard:
            sys.stdout = self._stdout_guard.stream
        self._stdout_guard = None

    def _pipe_closed(self):
        self.pipe_closed = True
        self.received = self.received or self.CLOSED_PIPE
        self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        self._stepped = True

    def _handle(self, signum, frame):
        if signum == getattr(signal, "SIGHUP", None):
            detach_from_terminal()
        if not self._stepped and not self.cluster_worker:
            # Still tracing or in the first step: nothing new to save, so stop now rather than after it.
            self.on_train_end()
            raise KeyboardInterrupt
        if self.received not in (None, self.CLOSED_PIPE) and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        self.model.stop_training = True
        when = "after the next step, with the other workers," if self.cluster_worker else "after this step"
        print(f"\n{self.received} received: stopping {when} and saving a checkpoint (Ctrl-C again to quit "
              "at once).", flush=True)


def detach_from_terminal() -> None:
    """After a hangup, writing to the terminal fails (EIO): stdout and stderr, where they are a
    terminal, go to the null device from here on; files and pipes keep their output."""
    for stream in (sys.stdout, sys.stderr):
        try:
            fd = stream.fileno()
            if not stat.S_ISCHR(os.fstat(fd).st_mode):
                continue
        except (AttributeError, OSError, ValueError):  # Not a real file (a test's capture, a closed stream).
            continue
        quiet.to_null_device(fd)


def describe_duration(seconds: float) -> str:
    """'12 min', '5 h 04 min': a long training's time, to the minute (at least one)."""
    minutes = max(1, round(seconds / 60))
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class TimeLeft:
    """The wall-clock time left to the training's last epoch, from the epochs this process has run:
    their mean time after the first (which traces the train step), the FID/KID measurements, grids
    and checkpoints between the steps included, since they recur. `at_most`: the training may end
    sooner (--patience), so the estimate is said as a bound."""

    def __init__(self, clock=time.monotonic, at_most: bool = False):
        self.clock, self.at_most = clock, at_most
        self._began = None
        self._ends = []  # When each epoch of this process ended.

    def epoch_began(self):
        if self._began is None:
            self._began = self.clock()

    def epoch_ended(self):
        self._ends.append(self.clock())

    def seconds(self, epochs_left: int):
        """The estimate for `epochs_left` more epochs; None before the first epoch has ended."""
        if not self._ends or self._began is None:
            return None
        if len(self._ends) == 1:
            per_epoch = self._ends[0] - self._began
        else:
            per_epoch = (self._ends[-1] - self._ends[0]) / (len(self._ends) - 1)
        return per_epoch * max(0, epochs_left)

    def phrase(self, epochs_left: int) -> str:
        """'about 5 h 04 min left' ('at most about ...' with `at_most`), or '' when there is no estimate
        yet or nothing is left."""
        seconds = self.seconds(epochs_left)
        if not seconds:
            return ""
        if seconds < 30:
            return "less than a minute left"
        return ("at most " if self.at_most else "") + f"about {describe_duration(seconds)} left"


class ProgressBar(keras.callbacks.ProgbarLogger):
    """Keras's progress bar (for a terminal), its epoch line followed by the training's time left
    (the bar itself shows the epoch's), ending at the step training stopped at rather than at the
    epoch's last step."""

    def __init__(self, time_left: TimeLeft = None):
        super().__init__()
        self.time_left = time_left or TimeLeft()

    def on_epoch_begin(self, epoch, logs=None):
        self.time_left.epoch_began()
        # Keras's own header, with the estimate after it.
        self._reset_progbar()
        self._maybe_init_progbar()
        if self.verbose and self.epochs > 1:
            left = self.time_left.phrase(self.epochs - epoch)
            print(f"Epoch {epoch + 1}/{self.epochs}" + (f" ({left})" if left else ""), flush=True)

    def on_epoch_end(self, epoch, logs=None):
        if self.model.stop_training and self.seen:
            self.target = self.seen
            if self.progbar is not None:
                self.progbar.target = self.seen
        super().on_epoch_end(epoch, logs)
        self.time_left.epoch_ended()


class StepClock(keras.callbacks.Callback):
    """The seconds spent in train steps: first in the callback list, its hooks run right before and
    right after each step, so what the later callbacks do between steps (FID/KID, grids,
    checkpoints) is not counted."""

    def __init__(self):
        super().__init__()
        self.seconds = 0.0
        self.first_seconds = None  # Of them, the first execution's: it traces and optimises the graph.
        self._began = None

    def on_train_batch_begin(self, batch, logs=None):
        self._began = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        elapsed = time.perf_counter() - self._began
        self.seconds += elapsed
        if self.first_seconds is None:
            self.first_seconds = elapsed


LEADING_METRICS = ("d_loss", "g_loss")


def _in_reading_order(logs) -> list:
    """The metrics' names, the two losses first and the rest (their parts, D's outputs, R1's weight)
    alphabetically, so that the losses stand where a reader looks."""
    return sorted(logs, key=lambda name: (LEADING_METRICS.index(name) if name in LEADING_METRICS
                                          else len(LEADING_METRICS), name))


class EpochLines(keras.callbacks.Callback):
    """One plain line per epoch, for logs and pipes: no bar, no terminal codes. Its seconds a step are
    the steps' own when a StepClock is given (a measurement of FID and KID in the epoch, which prints
    its own time, does not count), else the epoch's wall-clock time; then the training's time left."""

    def __init__(self, epochs: int, clock: StepClock = None, time_left: TimeLeft = None):
        super().__init__()
        self.epochs, self.clock = epochs, clock
        self.time_left = time_left or TimeLeft()
        self._started = None

    def _seconds(self) -> float:
        return self.clock.seconds if self.clock is not None else time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self.time_left.epoch_began()
        self._started = self._seconds()
        self._step_at_start = _counter(self.model.step)
        self._first_step_done = self.clock is None or self.clock.first_seconds is not None

    def on_epoch_end(self, epoch, logs=None):
        self.time_left.epoch_ended()
        steps = _counter(self.model.step) - self._step_at_start
        if not steps:
            return
        values = ", ".join(f"{name} {float(logs[name]):.4f}" for name in _in_reading_order(logs or {}))
        left = "" if self.model.stop_training else self.time_left.phrase(self.epochs - epoch - 1)
        # The epoch of the process's first step: its rate holds the tracing, and says so.
        tracing = (", the first step's tracing included"
                   if self.clock is not None and not self._first_step_done and self.clock.first_seconds else "")
        print(f"Epoch {epoch + 1}/{self.epochs}: step {_counter(self.model.step)}, {values} "
              f"({(self._seconds() - self._started) / steps:.3f} s/step{tracing}" + (f", {left})" if left else ")"),
              flush=True)


class PeriodicEval(keras.callbacks.Callback):
    """Every `every` steps and at the end of training, FID and KID of the generator (an
    evaluate.Evaluator), appended to `{folder}/quality.json` and written to TensorBoard as eval/fid,
    eval/kid and eval/kid_std. With `keep_best` ("fid" or "kid"), a state whose value is the lowest so
    far (across resumes: the best is kept in quality.json) is saved by `best_manager`; with `patience`
    too, the training ends once that many measurements in a row have not improved on it. Not run for
    a state holding NaN or Inf, nor at the end of a run stopped early (a stop must be quick)."""

    def __init__(self, evaluator, every: int, folder: str, summary_writer=None, keep_best: str = "none",
                 best_manager: tf.train.CheckpointManager = None, patience: int = 0,
                 failure: OutputFailure = None, verbose: bool = True):
        super().__init__()
        self.evaluator, self.every, self.folder = evaluator, every, folder
        self.summary_writer, self.keep_best, self.best_manager = summary_writer, keep_best, best_manager
        self.patience = patience
        self.failure = failure or OutputFailure()
        self.verbose = verbose

    def on_train_begin(self, logs=None):
        self._last_step = _counter(self.model.step)
        self._evaluated_step = None

    def on_train_batch_end(self, batch, logs=None):
        step = _counter(self.model.step)
        # Crossing a multiple of `every` (robust to several steps per call).
        if step // self.every > self._last_step // self.every and _state_is_finite(self.model):
            self.failure.attempt(self, self.measure, f"quality.json into {self.folder}")
        self._last_step = step

    def on_train_end(self, logs=None):
        step = _counter(self.model.step)
        if (not self.model.stop_training and self._evaluated_step != step and step > 0
                and _state_is_finite(self.model)):
            self.failure.attempt(self, self.measure, f"quality.json into {self.folder}")

    def measure(self) -> dict:
        from dcgan_tf.quality import evaluate

        step, epoch = _counter(self.model.step), _counter(self.model.epoch)
        if self.verbose:
            print(f"\ndcgan_tf: measuring FID and KID at step {step} ...", flush=True)
        result = self.evaluator.evaluate(lambda z: generated_images(self.model.sampler(), z))
        record = {"step": step, "epoch": epoch, **result}
        if self.model.ema_generator is not None:
            # The live weights too, so the gain of the average is on record at every step.
            live = self.evaluator.evaluate(lambda z: generated_images(self.model.generator, z))
            record.update({f"{name}_live": live[name] for name in ("fid", "kid", "kid_std")})
            record["seconds"] = round(record["seconds"] + live["seconds"], 3)
        quality = evaluate.append_evaluation(self.folder, record)
        if self.summary_writer is not None:
            evaluate.write_summaries(self.summary_writer, record, step)
        best = ""
        if self.best_manager is not None and evaluate.is_better(record[self.keep_best], quality.get("best"),
                                                                self.keep_best):
            path = self.best_manager.save(checkpoint_number=step)
            best_record = {"metric": self.keep_best, "value": record[self.keep_best], "step": step,
                           "checkpoint": os.path.relpath(path, self.folder)}
            quality = runs.update_quality(self.folder, lambda saved: saved.update(best=best_record))
            best = f"; best {self.keep_best} so far, kept as {path}"
        ended = evaluate.ended_early(quality, self.keep_best, self.patience)  # None without --patience.
        if ended:
            self.model.stop_training = True
        if self.verbose:
            print(f"dcgan_tf: step {step}: {evaluate.describe(record)}{best}", flush=True)
            if ended:
                print(f"dcgan_tf: the training ends here (--patience {self.patience}): {ended}.", flush=True)
        self._evaluated_step = step
        return record


class TrainingCallbacks(keras.callbacks.CallbackList):
    """The callbacks of one training across the `fit` calls it takes: a run resumed in the middle of
    an epoch first finishes that epoch's remaining steps (a `fit` of one shorter epoch), then trains
    whole epochs. The callbacks see one training: one on_train_begin, and one on_train_end, after the
    last part or after a part that stopped (a signal, a non-finite value)."""

    def __init__(self, callbacks, model, epochs: int, verbose: int):
        super().__init__(callbacks, add_history=True, model=model)
        self.epochs, self.verbose = epochs, verbose  # The training's last epoch, as the progress bar shows it.
        self._begun = False
        self._last_part = True

    def part(self, steps: int, last: bool) -> "TrainingCallbacks":
        """Ready for the `fit` of a part of `steps` steps an epoch (`last`: the training ends with it)."""
        self.set_params({"verbose": self.verbose, "epochs": self.epochs, "steps": steps})
        self._last_part = last
        return self

    def on_train_begin(self, logs=None):
        if not self._begun:
            self._begun = True
            super().on_train_begin(logs)

    def on_train_end(self, logs=None):
        if self._last_part or self.model.stop_training:
            super().on_train_end(logs)
