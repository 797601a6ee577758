"""`--precision auto`: the Keras dtype policy that is fastest on this machine, and why.

bfloat16 only pays on hardware that multiplies it natively. On a CPU without AVX512_BF16 or AMX,
TensorFlow's oneDNN kernels convert bfloat16 to float32 and back around every matmul: a 4096x4096
matmul measured 156 GFLOP/s in float32 and 46 in bfloat16 on such a Xeon, while on a CPU with
AVX512_BF16 mixed_bfloat16 trained 1.6x faster than float32 (docs/speed.md). So:

- GPUs (all of them, by the lowest compute capability): 8.0 and up (Ampere, Hopper, ...) compute
  bfloat16 natively: mixed_bfloat16 (float32's range, no loss scaling); 7.x (Volta, Turing) have
  float16 tensor cores only: mixed_float16; below 7.0: float32.
- Otherwise the CPU: mixed_bfloat16 where /proc/cpuinfo's flags name `avx512_bf16` or `amx_bf16`,
  else float32.

`choose()` decides from explicit inputs (testable with any machine's flags); `machine_choice()` reads
this machine and calls it. TensorFlow is imported only to look for GPUs.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from typing import Optional, Sequence, Tuple

AUTO = "auto"
# CPU flags (as /proc/cpuinfo spells them) of native bfloat16 arithmetic that oneDNN uses.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# Flags worth printing beside a throughput figure: the vector units the kernels can use.
REPORTED_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
                      "amx_bf16", "amx_int8")


@dataclasses.dataclass(frozen=True)
class Choice:
    """A concrete Keras dtype policy and the reason it was picked, e.g. ("float32", "no native
    bfloat16 on this CPU")."""

    policy: str
    reason: str


def choose(cpu_flags: str, gpu_capabilities: Sequence[Optional[Tuple[int, int]]] = ()) -> Choice:
    """The policy for a machine with these CPU flags (the text of /proc/cpuinfo's `flags` line, any
    case, space separated) and GPUs of these compute capabilities ((major, minor) each; None where a
    GPU's is unknown). GPUs decide when there are any: training runs on them."""
    if gpu_capabilities:
        known = [tuple(c) for c in gpu_capabilities if c]
        if len(known) < len(gpu_capabilities):
            return Choice("float32", "a GPU of unknown compute capability")
        lowest = min(known)
        where = f"GPU compute capability {lowest[0]}.{lowest[1]}"
        if lowest >= (8, 0):
            return Choice("mixed_bfloat16", f"{where}: native bfloat16")
        if lowest >= (7, 0):
            return Choice("mixed_float16", f"{where}: float16 tensor cores, no native bfloat16")
        return Choice("float32", f"{where}: no fast 16-bit arithmetic")
    flags = set(cpu_flags.lower().split())
    native = [flag for flag in BF16_CPU_FLAGS if flag in flags]
    if native:
        return Choice("mixed_bfloat16", f"native bfloat16 on this CPU ({', '.join(native)})")
    return Choice("float32", "no native bfloat16 on this CPU")


def cpu_info(path: str = "/proc/cpuinfo") -> Tuple[str, str]:
    """(model name, flags text) of this machine's first CPU; ("", "") where unreadable (not Linux)."""
    model, flags = "", ""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key == "model name" and not model:
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = value.strip()
                if model and flags:
                    break
    except OSError:
        pass
    return model, flags


def gpu_capabilities() -> list:
    """Compute capabilities of the GPUs TensorFlow sees ((major, minor), or None when not reported)."""
    import tensorflow as tf

    out = []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        except (ValueError, RuntimeError):
            capability = None
        out.append(tuple(capability) if capability else None)
    return out


@functools.lru_cache(maxsize=1)
def machine_choice() -> Choice:
    """choose() for this machine (read once per process)."""
    flags = cpu_info()[1] if sys.platform.startswith("linux") else ""
    return choose(flags, gpu_capabilities())


def resolve(requested: str, saved: Optional[str] = None) -> Choice:
    """The concrete policy of `--precision requested`: an explicit value as given; `auto` continuing a
    saved run takes the run's own (`saved`, from its config.json), so a resume never switches (a
    mixed_float16 checkpoint holds a loss scale the others lack); a fresh `auto` the machine's."""
    if requested != AUTO:
        return Choice(requested, "")
    if saved and saved != AUTO:
        return Choice(saved, "the run's own, from its config.json")
    return machine_choice()


def describe(requested: str, choice: Choice) -> str:
    """For the start line: "float32" (explicit) or "float32 (auto: no native bfloat16 on this CPU)"."""
    if requested != AUTO:
        return choice.policy
    return f"{choice.policy} (auto: {choice.reason})"


def settle(config, requested: str):
    """(config with a concrete precision, the start line's words for it): the one place a run's
    precision is decided, by resolve(). `requested`: the precision the command asked for;
    `config.precision`: the same, or, continuing a saved run, that run's own (run_options.continue_saved_run)."""
    choice = resolve(requested, config.precision)
    return dataclasses.replace(config, precision=choice.policy), describe(requested, choice)
