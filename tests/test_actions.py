"""actions.py's own wording (the actions themselves are exercised through the command line elsewhere)."""

from __future__ import annotations

from types import SimpleNamespace

from dcgan_tf import actions


def _result(steps_run, step_seconds, first_seconds, first_steps=1):
    return SimpleNamespace(steps_run=steps_run, step_seconds=step_seconds, first_seconds=first_seconds,
                           first_steps=first_steps)


def test_step_rate_leaves_the_first_execution_out():
    # 11 steps: the first took 6 s (tracing), the other ten 0.5 s each.
    assert actions._step_rate(_result(11, 11.0, 6.0)) == "0.500 s/step after the first, which took 6.0 s with tracing"
    # Four steps per execution: the first execution held four of the twelve steps.
    assert actions._step_rate(_result(12, 10.0, 6.0, first_steps=4)).startswith("0.500 s/step after the first")


def test_step_rate_of_a_single_execution_says_it_includes_tracing():
    assert actions._step_rate(_result(1, 6.0, 6.0)) == "6.000 s/step, tracing included"
    assert actions._step_rate(_result(4, 8.0, 8.0, first_steps=4)) == "2.000 s/step, tracing included"
