"""Convolution forms benchmark: TensorFlow's native convolutions against the matmul form of small ones
(dcgan_tf/model/conv.py), layer by layer and for the whole training step.

    python bench/conv_forms.py --size 64 128 --width 64 --precision float32 mixed_bfloat16

For each network layer of the simpsons architecture (forward and backward, batch 25): the time of the
native convolution and of the matmul form, and which one the thresholds in model/conv.py choose
(layers with more positions than 16x16 -> 8x8 are not timed as a matmul: far slower, never chosen).
Then the real training step (DCGAN.train_step of the default recipe, built by training/build.py)
traced twice, once with native convolutions everywhere and once with the thresholds, called in
turns; the figure is the ratio of the medians. Not a test: run it by hand, on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from dcgan_tf import quiet  # noqa: E402

quiet.quiet_tensorflow()  # Before TensorFlow's import: none of its C++ start-up lines.

import tensorflow as tf  # noqa: E402

from dcgan_tf.config import RunConfig  # noqa: E402
from dcgan_tf.model import conv, nets  # noqa: E402
from dcgan_tf.model.nets import simpsons  # noqa: E402
from dcgan_tf.training import build  # noqa: E402
from dcgan_tf.training import precision as auto_precision  # noqa: E402


# The matmul form's patch selection has (input positions x output positions x taps) entries: layers
# with more pairs than this (32x32 -> 16x16 and larger) are left out; they are many times slower as a
# matmul (64x64 full width, 2026-12-07: 16x16 -> 8x8 0.7x, 32x32 -> 16x16 0.15x, 64x64 -> 32x32 0.01x).
MATMUL_FORM_MAX_POSITION_PAIRS = 16 * 16 * 8 * 8


class convolution_form:
    """Inside the block, layers traced take one form everywhere: "native" or "matmul"."""

    def __init__(self, form: str):
        self.threshold = 10 ** 15 if form == "native" else 0

    def __enter__(self):
        self.saved, conv.MATMUL_MIN_WEIGHTS_PER_POSITION = conv.MATMUL_MIN_WEIGHTS_PER_POSITION, self.threshold

    def __exit__(self, *exc):
        conv.MATMUL_MIN_WEIGHTS_PER_POSITION = self.saved


def _in_turns(functions: dict, repeats: int) -> dict:
    """{name: median seconds} of calling each function in turn, `repeats` times (after one untimed call)."""
    for function in functions.values():
        function()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(t) for name, t in times.items()}


def _forward_backward(layer, x):
    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) ** 2)
        return [g for g in tape.gradient(loss, [x, *layer.trainable_variables])]
    return lambda: [g.numpy() for g in step()]


def bench_layers(size: int, width: int, policy: str, batch: int, repeats: int) -> list:
    """Every convolution of the simpsons G and D: native and matmul form, forward and backward."""
    generator, discriminator = nets.build("simpsons", height=size, width=size, c_dim=3, z_dim=100, gf_dim=width,
                                          df_dim=width, hidden_dim=0, precision=policy)
    sizes = simpsons.layer_sizes(size)
    # (layer, its input shape): D's i-th convolution sees sizes[i]; G's i-th transpose sizes[5 - i + 1].
    layers = [(layer, (batch, sizes[i], sizes[i], 3 if i == 0 else width * 2 ** (i - 1)))
              for i, layer in enumerate(discriminator.convs)]
    layers += [(layer, (batch, sizes[simpsons.NUM_LAYERS - i], sizes[simpsons.NUM_LAYERS - i],
                        width * 2 ** (simpsons.NUM_LAYERS - 1 - i)))
               for i, layer in enumerate(generator.deconvs)]
    rows = []
    for layer, shape in layers:
        x = tf.random.uniform(shape, -1, 1, dtype=layer.compute_dtype)
        out_shape = layer.compute_output_shape(shape)
        positions = shape[1] * shape[2] if isinstance(layer, conv.Conv2DTranspose) else math.prod(out_shape[1:3])
        row = {"layer": layer.name, "input": list(shape), "filters": layer.filters, "native_ms": None,
               "matmul_ms": None, "chosen": "matmul" if conv.takes_matmul_form(layer, positions) else "native"}
        rows.append(row)
        if shape[1] * shape[2] * out_shape[1] * out_shape[2] > MATMUL_FORM_MAX_POSITION_PAIRS:
            continue
        forms = {}
        for form in ("native", "matmul"):
            with convolution_form(form):
                forms[form] = _forward_backward(layer, x)
                forms[form]()  # Traced inside the block.
        median = _in_turns(forms, repeats)
        row.update(native_ms=1000 * median["native"], matmul_ms=1000 * median["matmul"])
    return rows


def bench_step(size: int, width: int, policy: str, batch: int, repeats: int) -> dict:
    """The default recipe's DCGAN.train_step, native convolutions against the thresholds, in turns."""
    real = tf.random.uniform([batch, size, size, 3], -1, 1)
    steps = {}
    for form in ("native", "thresholds"):
        root = pathlib.Path(tempfile.mkdtemp())
        config = RunConfig.create(data_dir=str(root), dataset="bench", output_height=size, gf_dim=width, df_dim=width,
                                  batch_size=batch, c_dim=3, precision=policy, checkpoint_dir=str(root / "c"),
                                  sample_dir=str(root / "s"), log_dir=str(root / "l"))
        function = tf.function(build.build_run(config).model.train_step)
        if form == "native":
            with convolution_form("native"):
                function(real)  # Traced inside the block.
        else:
            function(real)
        steps[form] = (lambda f: lambda: tf.nest.map_structure(lambda v: v.numpy(), f(real)))(function)
    median = _in_turns(steps, repeats)
    return {"native_s": median["native"], "thresholds_s": median["thresholds"],
            "speedup": median["native"] / median["thresholds"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, nargs="+", default=[64])
    p.add_argument("--width", type=int, default=64, help="gf_dim = df_dim")
    p.add_argument("--precision", nargs="+", default=["auto"], choices=["auto", "float32", "mixed_bfloat16"])
    p.add_argument("--batch", type=int, default=25)
    p.add_argument("--layer_repeats", type=int, default=5)
    p.add_argument("--step_repeats", type=int, default=4)
    p.add_argument("--skip_layers", action="store_true", help="only the whole step")
    p.add_argument("--out", default="", help="JSON path for the figures")
    args = p.parse_args(argv)
    model, cpu_flags = auto_precision.cpu_info()
    flags = [f for f in auto_precision.REPORTED_CPU_FLAGS if f in cpu_flags.split()]
    print(f"CPU: {model}; flags: {' '.join(flags) or '-'}; TensorFlow threads: "
          f"{os.environ.get('TF_NUM_INTRAOP_THREADS', 'all')}", flush=True)
    results = []
    for size in args.size:
        for name in args.precision:
            policy = auto_precision.resolve(name).policy
            entry = {"size": size, "width": args.width, "precision": policy}
            if not args.skip_layers:
                entry["layers"] = bench_layers(size, args.width, policy, args.batch, args.layer_repeats)
                for row in entry["layers"]:
                    times = ("not timed (many positions)" if row["native_ms"] is None else
                             f"native {row['native_ms']:8.1f} ms, matmul {row['matmul_ms']:8.1f} ms "
                             f"({row['native_ms'] / row['matmul_ms']:.2f}x)")
                    print(f"{size:4d} {policy:15s} {row['layer']:12s} {str(row['input']):20s} -> {row['filters']:5d}: "
                          f"{times}; chosen: {row['chosen']}", flush=True)
            entry["step"] = bench_step(size, args.width, policy, args.batch, args.step_repeats)
            step = entry["step"]
            print(f"{size:4d} {policy:15s} train step: native {step['native_s']:.3f} s, with the thresholds "
                  f"{step['thresholds_s']:.3f} s: {step['speedup']:.2f}x", flush=True)
            results.append(entry)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"cpu": model, "flags": flags, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
