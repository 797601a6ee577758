import dataclasses
import os
import signal
import sys
import time
import types

import keras
import pytest
import tensorflow as tf

from dcgan_tf.model import replicas
from dcgan_tf.training import callbacks
from dcgan_tf.training import train
from tests.conftest import signal_after_step, tiny_config


def test_sigint_stops_after_the_step_and_saves(workdir):
    config = tiny_config(workdir, epoch=5, ckpt_freq=100, sample_freq=100)
    # Usually default_int_handler; SIG_IGN when the suite runs as a background job of a shell.
    before = signal.getsignal(signal.SIGINT)
    result = train.train(config, verbose=0, extra_callbacks=[signal_after_step(signal.SIGINT, 1)])
    assert result.stopped_by == "SIGINT"
    assert int(result.run.model.step.numpy()) == 1
    assert int(result.run.model.epoch.numpy()) == 0  # the cut-short epoch does not count
    assert tf.train.latest_checkpoint(config.run_checkpoint_dir).endswith("ckpt-1")
    assert os.listdir(config.run_sample_dir) == ["train_00_0001.png"]
    assert signal.getsignal(signal.SIGINT) is before  # handler given back


def test_sigterm_mid_epoch_resumes_where_it_stopped_and_ends_once(workdir):
    # (test_train checks that such a resume trains the weights an uninterrupted run does.)
    before = signal.getsignal(signal.SIGTERM)
    config = tiny_config(workdir, epoch=2, ckpt_freq=100, sample_freq=100)
    stopped = train.train(config, verbose=0, extra_callbacks=[signal_after_step(signal.SIGTERM, 1)])
    assert stopped.stopped_by == "SIGTERM"
    assert (int(stopped.run.model.epoch.numpy()), int(stopped.run.model.epoch_step.numpy())) == (0, 1)
    resumed = train.train(config, verbose=0)
    model = resumed.run.model
    # The interrupted epoch's second batch, then the next epoch: 2 epochs of 2 steps, as without the stop.
    assert resumed.steps_run == 3 and resumed.stopped_by is None
    assert (int(model.step.numpy()), int(model.epoch.numpy()), int(model.epoch_step.numpy())) == (4, 2, 0)
    assert len(resumed.history["d_loss"]) == 2  # one line for the rest of epoch 1, one for epoch 2
    # The end-of-training actions ran once, at the end: no checkpoint or grid where the short epoch ended.
    assert sorted(f for f in os.listdir(config.run_checkpoint_dir) if f.endswith(".index")) == [
        "ckpt-1.index", "ckpt-4.index"]
    assert sorted(os.listdir(config.run_sample_dir)) == ["train_00_0001.png", "train_01_0004.png"]
    assert signal.getsignal(signal.SIGTERM) is before  # handler given back once, after both parts


def test_sample_grid_names_use_epoch_and_step(workdir):
    config = tiny_config(workdir, epoch=3, sample_freq=3, ckpt_freq=100)
    train.train(config, verbose=0)
    # Steps 3 and 6 by cadence (epochs 1 and 2; 2 steps an epoch), none again at the end (step 6).
    assert sorted(os.listdir(config.run_sample_dir)) == ["train_01_0003.png", "train_02_0006.png"]


def test_checkpoint_cadence_and_max_to_keep(workdir):
    config = tiny_config(workdir, epoch=4, ckpt_freq=1, max_to_keep=3, sample_freq=100)
    train.train(config, verbose=0)
    kept = sorted(f for f in os.listdir(config.run_checkpoint_dir) if f.endswith(".index"))
    assert kept == ["ckpt-6.index", "ckpt-7.index", "ckpt-8.index"]


def _epoch_counter(steps_per_epoch):
    """An EpochCounter on a stand-in model that has only the epoch counter; (counter, model)."""
    class FakeModel:
        epoch = tf.Variable(0, dtype=tf.int64)
        epoch_step = tf.Variable(0, dtype=tf.int64)

    counter = callbacks.EpochCounter()
    counter.set_model(FakeModel())
    counter.set_params({"steps": steps_per_epoch})
    return counter, counter.model


def test_epoch_counter_counts_only_full_epochs():
    counter, model = _epoch_counter(3)
    for batches in (3, 1):
        counter.on_epoch_begin(0)
        for b in range(batches):
            model.epoch_step.assign_add(1)  # as the train step does
            counter.on_train_batch_end(b)
        counter.on_epoch_end(0)
    # The full epoch counted and set the steps into the epoch back to 0; the cut-short one left 1.
    assert (int(model.epoch.numpy()), int(model.epoch_step.numpy())) == (1, 1)


def test_epoch_counter_with_several_steps_per_execution():
    counter, model = _epoch_counter(4)
    for last_steps in ((1, 3), (1,)):  # Keras passes the index of each execution's last step
        counter.on_epoch_begin(0)
        for b in last_steps:
            counter.on_train_batch_end(b)
    assert int(model.epoch.numpy()) == 1


class _Model:
    """What the stop and progress callbacks read of the training model."""

    def __init__(self):
        self.stop_training = False
        self.step = tf.Variable(0, dtype=tf.int64)


def test_a_signal_before_the_first_step_stops_at_once_and_restores_the_handlers():
    stop = callbacks.GracefulStop()
    stop.set_model(_Model())
    before = signal.getsignal(signal.SIGINT)
    stop.on_train_begin()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        raise AssertionError("the signal did not interrupt")
    except KeyboardInterrupt:
        pass
    assert signal.getsignal(signal.SIGINT) is before
    # After a finished step, the same signal only asks for a stop after the current step.
    stop.on_train_begin()
    stop.on_train_batch_end(0)
    os.kill(os.getpid(), signal.SIGINT)
    assert stop.model.stop_training and stop.received == "SIGINT"
    stop.on_train_end()
    assert signal.getsignal(signal.SIGINT) is before


def test_a_cluster_worker_asks_for_a_stop_even_before_its_first_step(capsys):
    # It cannot quit alone: the other workers would wait for it. Its stop goes to the agreement.
    stop = callbacks.GracefulStop()
    stop.set_model(_Model())
    assert not stop.cluster_worker
    stop.model.stop_agreement = replicas.StopAgreement(across_workers=False)
    assert not stop.cluster_worker
    stop.model.stop_agreement = types.SimpleNamespace(across_workers=True)  # What the model has on a cluster.
    assert stop.cluster_worker
    stop.on_train_begin()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.model.stop_training and stop.received == "SIGTERM"
    finally:
        stop.release()
    assert "SIGTERM received: stopping after the next step, with the other workers," in capsys.readouterr().out


class _SavedModel(_Model):
    """What CheckpointSaver reads: the step, the non-finite flag and the stop agreement."""

    def __init__(self, agreement):
        super().__init__()
        self.nonfinite_step = tf.Variable(0, dtype=tf.int64)
        self.stop_agreement = agreement


class _Manager:
    directory = "scratch"

    def __init__(self):
        self.saved = []

    def save(self, checkpoint_number=None):
        self.saved.append(checkpoint_number)
        return f"ckpt-{checkpoint_number}"


@pytest.mark.parametrize("across_workers", [False, True])
def test_a_failed_write_stops_without_any_later_save(across_workers):
    # On a cluster the other workers learn it through the agreement and skip their saves too: each
    # save runs collectives the chief, which skips its own, would never join.
    model = _SavedModel(replicas.StopAgreement(across_workers=across_workers))
    manager, failure = _Manager(), callbacks.OutputFailure()
    saver = callbacks.CheckpointSaver(manager, every=2, failure=failure)
    saver.set_model(model)
    model.step.assign(2)
    saver.on_train_batch_end(1)
    assert manager.saved == [2]

    def full_disk():
        raise OSError(28, "No space left on device")

    failure.attempt(saver, full_disk, "a sample grid")
    assert failure.error == "cannot write a sample grid: No space left on device"
    assert model.stop_training
    assert not model.stop_agreement.saves
    model.step.assign(4)
    saver.on_train_batch_end(3)
    saver.on_train_end()
    assert manager.saved == [2]


def test_hangups_stay_ignored_under_nohup():
    stop = callbacks.GracefulStop()
    stop.set_model(_Model())
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # What nohup does.
    try:
        stop.on_train_begin()
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == stop._handle  # The others are taken over.
        stop.on_train_end()
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_progress_bar_ends_where_training_stopped():
    bar = callbacks.ProgressBar()
    model = _Model()
    bar.set_model(model)
    bar.set_params({"epochs": 1, "steps": 4, "verbose": 1})
    bar.on_train_begin()
    bar.on_epoch_begin(0)
    bar.on_train_batch_end(0, {"d_loss": 1.0})
    model.stop_training = True
    bar.on_epoch_end(0, {"d_loss": 1.0})
    assert bar.progbar.target == 1 and bar.progbar._seen_so_far == 1


def test_the_metrics_log_keeps_the_columns_of_the_file_it_appends_to(tmp_path):
    path = tmp_path / "metrics.csv"
    model = _Model()
    model.epoch = tf.Variable(0, dtype=tf.int64)

    def epoch(log, logs):
        log.set_model(model)
        log.on_epoch_begin(0)
        model.epoch.assign_add(1)
        model.step.assign_add(4)
        log.on_epoch_end(0, logs)

    epoch(callbacks.MetricsLog(str(path), ("d_loss", "r1_weight")), {"d_loss": 1.5, "r1_weight": 0.25})
    # A later process whose model logs other names (a resume of a run from an older version, say):
    # the file's columns decide, so every row still matches the header.
    epoch(callbacks.MetricsLog(str(path), ("d_loss", "augment_p")), {"d_loss": 0.5, "augment_p": 0.1})
    assert path.read_text().splitlines() == ["epoch,step,d_loss,r1_weight", "0,4,1.5,0.25", "1,8,0.5,nan"]


def test_epoch_lines_are_plain(capsys):
    lines = callbacks.EpochLines(epochs=3)
    model = _Model()
    lines.set_model(model)
    lines.on_epoch_begin(0)
    model.step.assign(4)
    lines.on_epoch_end(0, {"d_x": 0.75, "g_loss": 0.5, "d_g_z": 0.25, "d_loss": 1.25})
    out = capsys.readouterr().out
    # The losses first, then the rest alphabetically.
    assert out.startswith("Epoch 1/3: step 4, d_loss 1.2500, g_loss 0.5000, d_g_z 0.2500, d_x 0.7500 (")
    assert out.endswith(" s/step, less than a minute left)\n")
    assert "\x1b" not in out and out.count("\n") == 1


class _Clock:
    """A wall clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_the_time_left_is_the_mean_epoch_after_the_first_times_the_epochs_left():
    clock = _Clock()
    left = callbacks.TimeLeft(clock)
    left.epoch_began()
    assert left.seconds(10) is None and left.phrase(10) == ""  # no epoch has ended yet
    clock.now += 30  # the first epoch traces the step
    left.epoch_ended()
    assert left.seconds(10) == 300  # one epoch known: its time
    for seconds in (4, 6, 5):  # later epochs, one with a measurement of FID and KID in it
        left.epoch_began()  # only the first call starts the clock
        clock.now += seconds
        left.epoch_ended()
    assert left.seconds(2000) == 10000 and left.phrase(2000) == "about 2 h 47 min left"
    assert left.phrase(5) == "less than a minute left" and left.phrase(0) == ""
    # With --patience the training may end sooner: the estimate is a bound.
    left.at_most = True
    assert left.phrase(2000) == "at most about 2 h 47 min left" and left.phrase(5) == "less than a minute left"


def test_durations_are_said_to_the_minute():
    assert callbacks.describe_duration(10) == "1 min"
    assert callbacks.describe_duration(12 * 60 + 20) == "12 min"
    assert callbacks.describe_duration(59 * 60 + 40) == "1 h 00 min"
    assert callbacks.describe_duration(5 * 3600 + 4 * 60) == "5 h 04 min"
    assert callbacks.describe_duration(30 * 3600) == "30 h 00 min"


def test_epoch_lines_say_the_time_left_but_not_after_the_last_epoch_or_a_stop(capsys):
    clock = _Clock()
    model = _Model()
    lines = callbacks.EpochLines(epochs=2000, time_left=callbacks.TimeLeft(clock))
    lines.set_model(model)
    said = []
    for epoch, seconds in enumerate((30, 12, 12)):
        lines.on_epoch_begin(epoch)
        clock.now += seconds
        model.step.assign_add(4)
        lines.on_epoch_end(epoch, {"d_loss": 1.0})
        said.append(capsys.readouterr().out)
    assert said[0].endswith(" s/step, about 16 h 40 min left)\n")  # 1999 epochs at the first's 30 s
    assert said[2].endswith(" s/step, about 6 h 39 min left)\n")  # 1997 at 12 s
    lines.epochs = 4  # the last epoch: nothing is left
    lines.on_epoch_begin(3)
    model.step.assign_add(4)
    lines.on_epoch_end(3, {"d_loss": 1.0})
    assert capsys.readouterr().out.endswith(" s/step)\n")
    lines.epochs = 2000
    model.stop_training = True  # a stop: the training ends here
    lines.on_epoch_begin(4)
    model.step.assign_add(1)
    lines.on_epoch_end(4, {"d_loss": 1.0})
    assert capsys.readouterr().out.endswith(" s/step)\n")


def test_the_progress_bar_heads_each_epoch_with_the_time_left(capsys):
    clock = _Clock()
    bar = callbacks.ProgressBar(callbacks.TimeLeft(clock))
    bar.set_model(_Model())
    bar.set_params({"epochs": 100, "steps": 2, "verbose": 1})
    bar.on_train_begin()
    for epoch in range(3):
        bar.on_epoch_begin(epoch)
        clock.now += 60
        for batch in range(2):
            bar.on_train_batch_end(batch, {"d_loss": 1.0})
        bar.on_epoch_end(epoch, {"d_loss": 1.0})
    heads = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Epoch ")]
    assert heads == ["Epoch 1/100", "Epoch 2/100 (about 1 h 39 min left)", "Epoch 3/100 (about 1 h 38 min left)"]


def test_epoch_lines_count_the_steps_time_not_a_slow_callback_after_them(capsys):
    class Slow(keras.callbacks.Callback):  # a measurement of FID and KID, say
        def on_train_batch_end(self, batch, logs=None):
            time.sleep(0.3)

    clock = callbacks.StepClock()
    model = _Model()
    hooks = keras.callbacks.CallbackList([clock, Slow(), callbacks.EpochLines(epochs=1, clock=clock)], model=model)
    hooks.on_epoch_begin(0)
    for batch in range(2):
        hooks.on_train_batch_begin(batch)
        time.sleep(0.05)  # the step
        model.step.assign_add(1)
        hooks.on_train_batch_end(batch)
    hooks.on_epoch_end(0, {"d_loss": 1.0})
    out = capsys.readouterr().out
    seconds = float(out.rsplit("(", 1)[1].split(" s/step")[0])
    assert 0.04 < seconds < 0.2 and 0.1 < clock.seconds < 0.4
    # The epoch of the first step says that its rate holds the tracing; later epochs do not.
    assert out.endswith(" s/step, the first step's tracing included)\n"), out
    hooks.on_epoch_begin(1)
    hooks.on_train_batch_begin(0)
    model.step.assign_add(1)
    hooks.on_train_batch_end(0)
    hooks.on_epoch_end(1, {"d_loss": 1.0})
    assert "tracing" not in capsys.readouterr().out


def test_the_final_grid_is_named_by_the_epoch_of_its_step(workdir):
    config = tiny_config(workdir, epoch=2, sample_freq=100, ckpt_freq=100)
    train.train(config, verbose=0)
    # Step 4 is the last step of epoch index 1, as a mid-run grid of that step would be named.
    assert os.listdir(config.run_sample_dir) == ["train_01_0004.png"]
    train.train(config, verbose=0)  # Already finished: no step runs and no second grid of step 4.
    assert os.listdir(config.run_sample_dir) == ["train_01_0004.png"]


def test_a_stopped_command_runs_nothing_after_the_stop(workdir, monkeypatch, capsys):
    # `--train --export` stopped by SIGTERM: the checkpoint is saved, then the command ends at once,
    # without the training report or the export (both take seconds on a long run; a stop must be prompt).
    from dcgan_tf import actions

    stopping = train.train
    monkeypatch.setattr(train, "train", lambda config: stopping(
        config, verbose=0, extra_callbacks=[signal_after_step(signal.SIGTERM, 1)]))
    config = tiny_config(workdir, epoch=2, ckpt_freq=100, sample_freq=100, train=True, export=True)
    assert actions.run_actions(config) == 0
    out = capsys.readouterr().out
    assert "stopped by SIGTERM at step 1" in out and "--report in place of --train" in out
    assert tf.train.latest_checkpoint(config.run_checkpoint_dir).endswith("ckpt-1")
    assert not os.path.exists(config.export_dir)
    assert not [name for name in os.listdir(config.run_checkpoint_dir) if name.endswith((".png", ".gif"))]


def test_a_cluster_workers_stop_line_says_when_the_chief_could_not_save(workdir, monkeypatch, capsys):
    # What the other workers' TrainResult says after the chief's write failed (a cluster run ends so).
    from dcgan_tf import actions

    stopping = train.train
    monkeypatch.setattr(train, "train", lambda config: dataclasses.replace(
        stopping(config, verbose=0, extra_callbacks=[signal_after_step(signal.SIGTERM, 1)]),
        chief=False, saved=False, stopped_by=train.STOPPED_BY_ANOTHER_WORKER))
    config = tiny_config(workdir, epoch=2, ckpt_freq=100, sample_freq=100, train=True)
    assert actions.run_actions(config) == 0
    assert ("stopped by another worker of the cluster at step 1; the chief could not write its files (its "
            "error line says why), so nothing was saved.") in capsys.readouterr().out


def test_a_hangup_saves_like_sigterm_and_nothing_more_reaches_the_closed_terminal(workdir):
    # A training in a terminal whose session drops (ssh): SIGHUP, and writes to the terminal fail.
    import pty
    import subprocess

    from tests.conftest import MAIN, TINY_FLAGS

    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, MAIN, "--dataset", "faces", *TINY_FLAGS, "--train", "--epoch", "500",
                             "--ckpt_freq", "1000", "--sample_freq", "1000"], cwd=workdir,
                            stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal,
                            # Hangups as in a login shell, even where the suite runs under nohup.
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    os.close(terminal)
    seen = b""
    try:
        while b"Epoch 3/" not in seen:  # Steps after the first: past the tracing.
            seen += os.read(controller, 4096)
    finally:
        os.close(controller)  # The terminal is gone: its reads and writes fail from here.
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=120) == 0
    run_dir = workdir / "checkpoints" / "faces_4_32_32_z8_gf4_df4"
    step = int(tf.train.latest_checkpoint(str(run_dir)).rsplit("-", 1)[1])
    assert 4 <= step < 1000  # Saved at the stop, not by --ckpt_freq nor at the 500th epoch.


def _closed_pipe_stdout(monkeypatch):
    """sys.stdout writing into a pipe whose reader is gone (writes fail with EPIPE: Python ignores SIGPIPE)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    piped = os.fdopen(write_end, "w")
    monkeypatch.setattr(sys, "stdout", piped)
    return piped


def test_a_closed_stdout_pipe_stops_the_training_and_gives_the_real_stdout_back(monkeypatch):
    piped = _closed_pipe_stdout(monkeypatch)
    stop = callbacks.GracefulStop()
    stop.set_model(_Model())
    stop.on_train_begin()
    try:
        stop.on_train_batch_end(0)
        print("Epoch 1/9: a line nobody reads", flush=True)
        print("and one more", flush=True)
        assert stop.pipe_closed and os.path.samestat(os.fstat(piped.fileno()), os.stat(os.devnull))
        assert stop.model.stop_training and stop.received == callbacks.GracefulStop.CLOSED_PIPE
        # A signal after it: its name is what stopped the training; the pipe stays on record.
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.received == "SIGTERM" and stop.pipe_closed
        stop.on_train_end()
        assert sys.stdout is not piped  # Still guarded: the other callbacks' last lines come after this.
    finally:
        stop.release()
    assert sys.stdout is piped
    piped.close()


@pytest.mark.parametrize("stderr_too", [False, True])
def test_a_closed_pipe_saves_like_sigterm_and_ends_as_sigpipe_would(workdir, stderr_too):
    # `main.py --train ... | head` (and `2>&1 | head`): the reader goes away while the training runs.
    import subprocess

    from tests.conftest import MAIN, TINY_FLAGS

    proc = subprocess.Popen([sys.executable, MAIN, "--dataset", "faces", *TINY_FLAGS, "--train", "--epoch", "500",
                             "--ckpt_freq", "1000", "--sample_freq", "1000"], cwd=workdir, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT if stderr_too else subprocess.PIPE,
                            text=True)
    for line in proc.stdout:
        if line.startswith("Epoch 3/"):  # Steps after the first: past the tracing.
            break
    read_step = int(line.split("step ")[1].split(",")[0])
    proc.stdout.close()
    # With stderr in the same pipe, the closing line is lost with it; the status is not 120 (a failed
    # flush at exit), nor 1 (a traceback).
    errors = "" if stderr_too else proc.stderr.read()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in errors, errors[-3000:]
    if not stderr_too:
        said = [line for line in errors.splitlines() if "closed pipe" in line]
        assert said and said[0].startswith("dcgan_tf: ") and said[0].endswith("Run the same command to resume."), errors
    run_dir = workdir / "checkpoints" / "faces_4_32_32_z8_gf4_df4"
    step = int(tf.train.latest_checkpoint(str(run_dir)).rsplit("-", 1)[1])
    assert read_step < step < 1000  # Saved at the stop, after the last line read; not by --ckpt_freq.


def test_a_training_that_fails_gives_back_the_signal_handlers_and_stdout(workdir):
    class Failing(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise RuntimeError("a callback failed")

    config = tiny_config(workdir, epoch=2, ckpt_freq=100, sample_freq=100)
    handler, stdout = signal.getsignal(signal.SIGTERM), sys.stdout
    try:
        train.train(config, verbose=0, extra_callbacks=[Failing()])
        raise AssertionError("the failure did not reach the caller")
    except RuntimeError:
        pass
    assert signal.getsignal(signal.SIGTERM) is handler and sys.stdout is stdout
