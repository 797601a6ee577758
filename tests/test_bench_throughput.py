"""bench/throughput.py's turn-taking: the fits and loops it compares run one at a time, in rotation."""

from __future__ import annotations

import importlib.util
import os
import threading

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def throughput():
    spec = importlib.util.spec_from_file_location("throughput", os.path.join(REPO, "bench", "throughput.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rotate(scheduler, index, turns, log, running, fail_at=None):
    scheduler.start(index)
    try:
        for turn in range(turns):
            running.append(index)
            assert len(running) == 1, f"{running} ran at once"
            if turn == fail_at:
                raise RuntimeError("participant failed")
            log.append(index)
            running.remove(index)
            if turn < turns - 1:
                scheduler.pass_turn(index)
                scheduler.wait(index)
    finally:
        if index in running:
            running.remove(index)
        scheduler.leave(index)


def _run_all(scheduler, turns_of, fail_at=None):
    log, running, errors = [], [], []

    def body(i):
        try:
            _rotate(scheduler, i, turns_of[i], log, running, fail_at=fail_at if i == 0 else None)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(len(turns_of))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a participant hung"
    return log, errors


def test_participants_take_turns_in_a_fixed_rotation(throughput):
    log, errors = _run_all(throughput.TakeTurns(3, timeout=20), [3, 3, 3])
    assert not errors
    assert log == [0, 1, 2] * 3


def test_a_finished_participant_leaves_the_rotation(throughput):
    log, errors = _run_all(throughput.TakeTurns(2, timeout=20), [1, 3])
    assert not errors
    assert log == [0, 1, 1, 1]


def test_a_failing_participant_does_not_hang_the_others(throughput):
    log, errors = _run_all(throughput.TakeTurns(2, timeout=20), [3, 3], fail_at=1)
    assert [str(e) for e in errors] == ["participant failed"]
    assert log == [0, 1, 1, 1]


def test_a_participant_that_never_starts_releases_the_others(throughput):
    scheduler = throughput.TakeTurns(2, timeout=20)
    scheduler.leave(1)  # Failed before its warm-up ended.
    with pytest.raises(threading.BrokenBarrierError):
        scheduler.start(0)


def test_window_stats_are_rates_of_consecutive_turns(throughput):
    # 4 turns of 10 images: 1 s, 1 s, then 2 s, 2 s (CPU half the wall time).
    stats = throughput.window_stats([(1, 0.5), (1, 0.5), (2, 1.0), (2, 1.0)], 2, 10)
    assert stats["windows"] == [10.0, 5.0]
    assert stats["median"] == pytest.approx(7.5)
    assert stats["cpu_s_per_image"] == pytest.approx(0.075)
