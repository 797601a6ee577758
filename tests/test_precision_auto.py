"""--precision auto: the choice from CPU flags and GPU compute capabilities, how a run settles it, and
one real training start on this machine."""

import dataclasses
import glob
import json
import os

import pytest

from dcgan_tf import cli
from dcgan_tf import config as config_module
from dcgan_tf.training import run_options
from dcgan_tf.training import precision
from tests.conftest import TINY_FLAGS, tiny_config, write_images

# /proc/cpuinfo flags lines (abridged to the vector extensions that matter, plus some noise).
EPYC_ZEN2 = "fpu vme de pse tsc msr pae mce cx8 apic sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2 bmi2"
XEON_CASCADE_LAKE = EPYC_ZEN2 + " avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni"  # no bf16
XEON_COOPER_LAKE = XEON_CASCADE_LAKE + " avx512_bf16"
XEON_SAPPHIRE_RAPIDS = XEON_COOPER_LAKE + " avx512_fp16 amx_bf16 amx_tile amx_int8"
EPYC_ZEN4 = EPYC_ZEN2 + " avx512f avx512_vnni AVX512_BF16"  # case does not matter


@pytest.mark.parametrize("flags,policy,reason", [
    (EPYC_ZEN2, "float32", "no native bfloat16 on this CPU"),
    (XEON_CASCADE_LAKE, "float32", "no native bfloat16 on this CPU"),
    ("", "float32", "no native bfloat16 on this CPU"),
    (XEON_COOPER_LAKE, "mixed_bfloat16", "native bfloat16 on this CPU (avx512_bf16)"),
    (XEON_SAPPHIRE_RAPIDS, "mixed_bfloat16", "native bfloat16 on this CPU (avx512_bf16, amx_bf16)"),
    (EPYC_ZEN4, "mixed_bfloat16", "native bfloat16 on this CPU (avx512_bf16)"),
    ("avx2 amx_bf16", "mixed_bfloat16", "native bfloat16 on this CPU (amx_bf16)"),
    ("avx512_bf16x avx2", "float32", "no native bfloat16 on this CPU"),  # whole flags only
])
def test_cpus_get_bfloat16_only_where_it_is_native(flags, policy, reason):
    assert precision.choose(flags) == precision.Choice(policy, reason)


@pytest.mark.parametrize("gpus,policy", [
    ([(9, 0)], "mixed_bfloat16"),  # H100
    ([(8, 0)], "mixed_bfloat16"),  # A100
    ([(8, 6), (8, 9)], "mixed_bfloat16"),
    ([(7, 5)], "mixed_float16"),  # T4
    ([(7, 0)], "mixed_float16"),  # V100
    ([(8, 0), (7, 0)], "mixed_float16"),  # the slowest GPU decides
    ([(6, 1)], "float32"),  # P40
    ([None], "float32"),  # capability not reported
    ([(9, 0), None], "float32"),
])
def test_gpus_decide_by_compute_capability_whatever_the_cpu(gpus, policy):
    for flags in (EPYC_ZEN2, XEON_SAPPHIRE_RAPIDS):
        assert precision.choose(flags, gpus).policy == policy
    assert "GPU" in precision.choose(EPYC_ZEN2, gpus).reason


def test_cpu_info_reads_the_first_cpus_model_and_flags(tmp_path):
    text = ("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B12\n"
            f"flags\t\t: {EPYC_ZEN2}\n\nprocessor\t: 1\nmodel name\t: other\nflags\t\t: avx512_bf16\n")
    (tmp_path / "cpuinfo").write_text(text)
    assert precision.cpu_info(str(tmp_path / "cpuinfo")) == ("AMD EPYC 7B12", EPYC_ZEN2)
    assert precision.cpu_info(str(tmp_path / "missing")) == ("", "")


def test_the_machine_choice_reads_cpu_flags_and_gpus(monkeypatch):
    monkeypatch.setattr(precision.sys, "platform", "linux")
    monkeypatch.setattr(precision, "cpu_info", lambda: ("Xeon", XEON_SAPPHIRE_RAPIDS))
    monkeypatch.setattr(precision, "gpu_capabilities", lambda: [])
    precision.machine_choice.cache_clear()
    try:
        assert precision.machine_choice().policy == "mixed_bfloat16"
        precision.machine_choice.cache_clear()
        monkeypatch.setattr(precision, "gpu_capabilities", lambda: [(7, 5)])
        assert precision.machine_choice().policy == "mixed_float16"
    finally:
        precision.machine_choice.cache_clear()


def test_explicit_values_win_and_auto_continues_a_saved_run():
    assert precision.resolve("mixed_bfloat16") == precision.Choice("mixed_bfloat16", "")
    assert precision.resolve("float32", saved="mixed_bfloat16").policy == "float32"
    assert precision.resolve("auto", saved="mixed_float16").policy == "mixed_float16"
    assert precision.resolve("auto") == precision.machine_choice()
    assert precision.describe("float32", precision.Choice("float32", "")) == "float32"
    assert (precision.describe("auto", precision.Choice("float32", "no native bfloat16 on this CPU"))
            == "float32 (auto: no native bfloat16 on this CPU)")


def test_auto_is_the_default_and_a_valid_choice(tmp_path):
    field = {f.name: f for f in dataclasses.fields(config_module.RunConfig)}["precision"]
    assert field.default == "auto" and config_module.PRECISIONS[0] == "auto"
    assert "auto" in field.metadata["help"] and "AVX-512 BF16" in field.metadata["help"]
    assert config_module.RunConfig.create(dataset="faces").precision == "auto"


@pytest.mark.parametrize("saved", ["float32", "mixed_bfloat16", "mixed_float16", None])
def test_auto_resumes_in_the_saved_runs_precision_never_refusing(tmp_path, saved):
    before = tiny_config(tmp_path, c_dim=3, precision=saved or "float32")
    values = before.to_dict()
    if saved is None:
        del values["precision"]  # a run saved before the option existed trained in float32
    os.makedirs(before.run_checkpoint_dir)
    with open(os.path.join(before.run_checkpoint_dir, "config.json"), "w") as f:
        json.dump(values, f)
    resumed = run_options.continue_saved_run(tiny_config(tmp_path, c_dim=3, precision="auto"))
    assert resumed.precision == (saved or "float32")
    config, text = precision.settle(resumed, "auto")
    assert config.precision == (saved or "float32")
    assert text == f"{saved or 'float32'} (auto: the run's own, from its config.json)"


def test_settle_gives_a_fresh_auto_the_machines_choice_and_keeps_explicit_values(tmp_path):
    config, text = precision.settle(tiny_config(tmp_path, precision="auto"), "auto")
    choice = precision.machine_choice()
    assert config.precision == choice.policy and text == f"{choice.policy} (auto: {choice.reason})"
    config, text = precision.settle(tiny_config(tmp_path, precision="mixed_bfloat16"), "mixed_bfloat16")
    assert config.precision == "mixed_bfloat16" and text == "mixed_bfloat16"


def test_on_this_machine_the_start_line_and_config_json_say_the_concrete_choice(tmp_path, monkeypatch, capsys):
    """The real machine: its /proc/cpuinfo and TensorFlow's GPU list (the development machine, an
    AVX2-only AMD EPYC without GPUs, gets float32)."""
    precision.machine_choice.cache_clear()
    choice = precision.machine_choice()
    flags = precision.cpu_info()[1].split()
    if not precision.gpu_capabilities() and not {"avx512_bf16", "amx_bf16"} & set(flags):
        assert choice == precision.Choice("float32", "no native bfloat16 on this CPU")
    write_images(tmp_path / "data" / "faces", 8)
    monkeypatch.chdir(tmp_path)
    assert cli.execute(["main.py", "--train", *TINY_FLAGS, "--epoch", "1", "--sample_freq", "2",
                        "--ckpt_freq", "2", "--dataset", "faces"]) == 0
    out = capsys.readouterr().out
    start = [line for line in out.splitlines() if line.startswith("dcgan_tf: 8 images from")]
    assert len(start) == 1 and f"; precision {choice.policy} (auto: {choice.reason}); " in start[0], out
    [path] = glob.glob(str(tmp_path / "checkpoint*" / "*" / "config.json"))
    with open(path) as f:
        assert json.load(f)["precision"] == choice.policy
