"""bench/throughput.py's turn-taking: the fits and loops it compares run one at a time, in rotation."""

from __future__ import annotations

import dataclasses
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


def test_matmul_rate_is_measured_in_both_dtypes(throughput):
    for dtype in ("float32", "bfloat16"):
        assert throughput.matmul_rate(64, dtype, repeats=1) > 0


def test_achieved_flops_and_their_fraction_of_the_matmul_rates(throughput):
    row = {"step_flops": 4e9, "batch": 10, "fit": {"median": 50.0}}  # 5 steps/s of 4 GFLOP
    out = throughput.achieved(row, {"float32": 40.0, "bfloat16": 10.0})
    assert out == pytest.approx({"gflops": 20.0, "of_float32_matmul": 0.5, "of_bfloat16_matmul": 2.0})
    assert throughput.achieved(row, {}) == pytest.approx({"gflops": 20.0})


def test_machine_info_names_the_cpu_its_flags_and_the_auto_choice(throughput):
    from dcgan_tf.training import precision

    info = throughput.machine_info()
    assert info["cpu_model"] and set(info["cpu_flags"]) <= set(precision.REPORTED_CPU_FLAGS)
    assert (info["auto_precision"], info["auto_reason"]) == dataclasses.astuple(precision.machine_choice())


def test_small_sizes_are_accepted_and_the_report_prints_the_roofline(throughput, capsys):
    args = throughput.parse_args(["--size", "32", "--batch", "4", "--width", "4", "--precision", "auto", "float32",
                                  "--matmul_size", "32", "--steps", "1", "--repeats", "1", "--warmup", "1",
                                  "--threads", "1", "--out", "x.json"])
    assert (args.size, args.width, args.matmul_size, args.threads, args.out) == ([32], 4, 32, 1, "x.json")
    assert args.precision == ["auto", "float32"]
    fit = {"median": 100.0, "min": 90.0, "max": 110.0, "cpu_s_per_image": 0.01}
    row = {"arch": "simpsons", "size": 32, "batch": 4, "precision": "auto", "policy": "float32", "fit": fit,
           "step_flops": 4e7}
    row["roofline"] = throughput.achieved(row, {"float32": 10.0, "bfloat16": 2.0})
    report = {"args": vars(args), "matmul_gflops": {"float32": 10.0, "bfloat16": 2.0},
              "machine": {"load_average_start": (1, 1, 1), "load_average_end": (1, 1, 1), "cpus": 2,
                          **throughput.machine_info()},
              "train": [row], "pipeline": [], "generation": [],
              "goals": [throughput.goal("auto/best", 0.99, arch="simpsons")]}
    throughput.print_report(report)
    out = capsys.readouterr().out
    assert "matmul float32 10.0 GFLOP/s, bfloat16 2.0 GFLOP/s" in out
    assert "auto->float32" in out and " 1.0 " in out and "10%" in out and "50%" in out  # 1 GFLOP/s
    assert "PASS  auto/best" in out


def test_a_tiny_bench_run_writes_the_roofline_into_its_json(throughput, tmp_path, capsys):
    import json

    out = tmp_path / "report.json"
    assert throughput.main(["--size", "32", "--batch", "4", "--width", "4", "--precision", "auto", "--steps", "1",
                            "--repeats", "1", "--warmup", "1", "--matmul_size", "32", "--matmul_repeats", "1",
                            "--skip", "loop", "pipeline", "generation", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("CPU: ") and "--precision auto -> " in printed.splitlines()[0]
    report = json.loads(out.read_text())
    assert report["machine"]["cpu_model"] and report["machine"]["auto_precision"]
    assert set(report["matmul_gflops"]) == {"float32", "bfloat16"}
    [row] = report["train"]
    assert row["precision"] == "auto" and row["policy"] == report["machine"]["auto_precision"]
    assert row["step_flops"] > 0 and row["roofline"]["gflops"] > 0 and "of_bfloat16_matmul" in row["roofline"]


def test_without_precision_flags_bfloat16_is_left_out_only_where_auto_picks_float32(throughput):
    from dcgan_tf.training import precision

    assert throughput.parse_args([]).precision is None  # main() fills it in from the machine's choice
    native = throughput.default_precisions(precision.choose("avx512f avx512_bf16"))
    assert native == (["float32", "mixed_bfloat16"], "")
    measured, note = throughput.default_precisions(precision.choose("avx2 fma"))
    assert measured == ["float32"]
    assert "mixed_bfloat16 left out (no native bfloat16 on this CPU;" in note and "--precision" in note
    # A GPU picks a mixed precision: both are measured.
    assert throughput.default_precisions(precision.choose("avx2", [(8, 0)]))[0] == ["float32", "mixed_bfloat16"]


def test_fit_is_compared_with_a_loop_of_the_runs_own_train_step(throughput, tmp_path):
    args = throughput.parse_args(["--size", "32", "--batch", "4", "--width", "4"])
    config = throughput.make_config(args, str(tmp_path), "simpsons", 32, 4, "float32", 4, 1)
    loop = throughput.StepLoop(config)
    wall, cpu = loop.run(2)
    assert wall > 0 and cpu > 0
    # The recipe's own step (the default's adaptive R1 weight among its outputs), not the
    # original's arithmetic that PlainLoop keeps for PyTorch; and none of the fit's folders written.
    assert {"d_loss", "g_loss", "r1_weight"} <= set(loop.step(loop.real))
    assert not any(os.path.exists(getattr(config, name)) for name in ("checkpoint_dir", "sample_dir", "log_dir"))
