"""Throughput benchmark: training images/s through the product's fit (train.train with its callbacks)
and through a plain tf.function loop of the same math, the input pipeline, and generation (Keras
generator and exported SavedModel). Prints a table and the project's goals with PASS/FAIL, and writes
JSON into bench/results/. Not a test: run it by hand on a quiet machine.

    python bench/throughput.py --arch simpsons --size 64 128 --batch 25 64 \\
        --precision float32 mixed_bfloat16
    python bench/throughput.py --quick        # tiny widths, few steps: a smoke check

Steady state: the first `--warmup` steps (tracing included) are not timed; then `--repeats` windows of
`--steps` steps each are timed from the timestamps of batch ends (fit) or of synchronised calls
(loop). Each figure is the median of the windows, with their min and max.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from dcgan_tf import data, export, generate, losses, nets, train  # noqa: E402
from dcgan_tf.config import PRECISIONS, PRESETS, RunConfig  # noqa: E402
from dcgan_tf.latent import sample_z  # noqa: E402

GOALS = {"fit/loop": 0.95, "mixed_bfloat16/float32": 1.4, "pipeline/training": 5.0}
DEFAULT_DATA = os.path.join(REPO, "..", "shared", "data", "simpsons_64")


def summarize(rates, cpu=None):
    """Median and spread of per-window rates; with `cpu`, the median process CPU seconds per image
    (all threads), which other programs' load on the machine disturbs far less than wall time."""
    out = {"median": statistics.median(rates), "min": min(rates), "max": max(rates),
           "windows": [round(r, 3) for r in rates]}
    if cpu:
        out["cpu_s_per_image"] = statistics.median(cpu)
    return out


def clock():
    return time.perf_counter(), time.process_time()


def window_rates(marks, warmup, steps, repeats, images_per_step):
    """(images/s, CPU s per image) of each window of `steps` steps after `warmup`, from
    {step: (wall, cpu)} marks."""
    edges = [warmup + i * steps for i in range(repeats + 1)]
    images = steps * images_per_step
    return ([images / (marks[b][0] - marks[a][0]) for a, b in zip(edges, edges[1:])],
            [(marks[b][1] - marks[a][1]) / images for a, b in zip(edges, edges[1:])])


class BatchEndClock(keras.callbacks.Callback):
    """Timestamps of batch ends by model step (reading the step waits for the execution to finish)."""

    def __init__(self):
        super().__init__()
        self.marks = {}

    def on_train_batch_end(self, batch, logs=None):
        self.marks[int(self.model.step.numpy())] = clock()


def write_images(folder, count, size, channels):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        arr = rng.integers(0, 256, (size, size, channels), dtype=np.uint8)
        Image.fromarray(arr[..., 0] if channels == 1 else arr).save(os.path.join(folder, f"{i}.png"))


def make_config(args, root, arch, size, batch, precision, total_steps, epoch_steps):
    n = args.steps_per_execution
    never = n * 10**6  # Grids and checkpoints only at the end, outside the timed windows.
    widths = {"gf_dim": args.width, "df_dim": args.width} if args.width else {}
    return RunConfig.create(
        arch=arch, output_height=size, batch_size=batch, precision=precision, seed=0, data_dir=root,
        dataset=f"{arch}_{size}", epoch=math.ceil(total_steps / epoch_steps), sample_freq=never,
        ckpt_freq=never, steps_per_execution=n, jit_compile=args.jit_compile,
        checkpoint_dir=os.path.join(root, "ckpt", precision), sample_dir=os.path.join(root, "samples", precision),
        log_dir=os.path.join(root, "logs", precision), export_dir=os.path.join(root, "export", precision),
        c_dim=1 if arch == "mnist" else 3, **widths)


def bench_fit(args, config):
    """train.train as the command line runs it (callbacks, summaries, pipeline), timed at batch ends."""
    clock = BatchEndClock()
    result = train.train(config, verbose=0, extra_callbacks=[clock])
    return summarize(*window_rates(clock.marks, args.warmup, args.steps, args.repeats, config.batch_size)), result.run


def bench_loop(args, config):
    """The same math as DCGAN.train_step (1 D update, g_steps G updates, same z) in a bare tf.function
    called from Python: same networks, optimizers and batch, no fit, callbacks, metrics or summaries."""
    keras.utils.set_random_seed(config.seed)
    generator, discriminator = nets.build_networks(config)
    d_opt, g_opt = train.make_optimizer(config), train.make_optimizer(config)
    seed = keras.random.SeedGenerator(config.seed)
    rng = np.random.default_rng(0)
    real = tf.constant(rng.uniform(-1, 1, (config.batch_size, config.output_height, config.output_width,
                                           config.c_dim)).astype("float32"))

    @tf.function(jit_compile=config.jit_compile)
    def step(real_images):
        z = sample_z(config.batch_size, config.z_dim, config.z_dist, seed=seed)
        with tf.GradientTape() as tape:
            real_logits = discriminator(real_images, training=True)
            fake_logits = discriminator(generator(z, training=True), training=True)
            d_loss = tf.add_n(losses.discriminator_losses(real_logits, fake_logits))
            scaled = d_opt.scale_loss(d_loss)
        d_vars = discriminator.trainable_variables
        d_opt.apply_gradients(zip(tape.gradient(scaled, d_vars), d_vars))
        g_vars = generator.trainable_variables
        for _ in range(config.g_steps):
            with tf.GradientTape() as tape:
                g_loss = losses.generator_loss(discriminator(generator(z, training=True), training=True))
                scaled = g_opt.scale_loss(g_loss)
            g_opt.apply_gradients(zip(tape.gradient(scaled, g_vars), g_vars))
        return d_loss + g_loss

    for _ in range(args.warmup):
        step(real).numpy()
    marks = {0: clock()}
    for i in range(1, args.repeats + 1):
        for _ in range(args.steps):
            out = step(real)
        out.numpy()
        marks[i * args.steps] = clock()
    return summarize(*window_rates(marks, 0, args.steps, args.repeats, config.batch_size))


def bench_pipeline(args, folder, size, batch, channels):
    """Decoding once (load_image_folder), then the cached tf.data pipeline's steady batches."""
    started = time.perf_counter()
    image_set = data.load_image_folder(folder, crop=False, crop_size=(size, size), output_size=(size, size),
                                       c_dim=channels)
    decode_s = time.perf_counter() - started
    batch = min(batch, len(image_set.images))
    iterator = iter(data.make_dataset(image_set.images, batch, seed=0))
    for _ in range(5):
        next(iterator).numpy()
    rates = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for _ in range(args.pipeline_batches):
            next(iterator).numpy()
        rates.append(args.pipeline_batches * batch / (time.perf_counter() - t0))
    return {"images": len(image_set.images), "decode_s": decode_s,
            "decode_images_per_s": len(image_set.images) / decode_s, "batch": batch, **summarize(rates)}


def bench_generation(args, run, root):
    """images/s of generate's Keras path and of the exported SavedModel, batches of generate.BATCH."""
    config = run.config
    z = np.random.default_rng(0).uniform(-1, 1, (args.generate, config.z_dim)).astype("float32")
    path = export.export_generator(run.model.generator, config, os.path.join(root, "export", config.precision))
    sources = {"keras": generate.from_generator(run.model.generator, config.z_dim, config.z_dist, "bench"),
               "savedmodel": generate.from_saved_model(path)}
    out = {}
    for name, source in sources.items():
        source.images(z[:generate.BATCH])  # warm-up (tracing)
        rates = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            source.images(z)
            rates.append(len(z) / (time.perf_counter() - t0))
        out[name] = summarize(rates)
    return out


def goal(name, value, **where):
    return {"goal": name, "value": value, "target": GOALS[name], "pass": bool(value >= GOALS[name]), **where}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--arch", nargs="+", default=["simpsons"], choices=tuple(PRESETS))
    parser.add_argument("--size", nargs="+", type=int, default=[64], help="output size(s)")
    parser.add_argument("--batch", nargs="+", type=int, default=[25], help="batch size(s)")
    parser.add_argument("--precision", nargs="+", default=["float32", "mixed_bfloat16"], choices=PRECISIONS)
    parser.add_argument("--width", type=int, default=0, help="gf_dim = df_dim (0: the preset's)")
    parser.add_argument("--steps", type=int, default=4, help="steps per timed window")
    parser.add_argument("--repeats", type=int, default=5, help="timed windows")
    parser.add_argument("--warmup", type=int, default=4, help="untimed steps first (tracing included)")
    parser.add_argument("--steps_per_execution", type=int, default=1)
    parser.add_argument("--jit_compile", action="store_true")
    parser.add_argument("--data", default=DEFAULT_DATA, help="image folder for the pipeline figures")
    parser.add_argument("--pipeline_batches", type=int, default=50, help="batches per pipeline window")
    parser.add_argument("--generate", type=int, default=256, help="images per generation window")
    parser.add_argument("--skip", nargs="*", default=[], choices=("loop", "pipeline", "generation"))
    parser.add_argument("--quick", action="store_true", help="tiny widths and few steps: a smoke check")
    parser.add_argument("--out", default="", help="JSON path (default bench/results/throughput-<time>.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.batch, args.width = [32], [4], 4
        args.steps, args.repeats, args.warmup, args.pipeline_batches, args.generate = 4, 3, 2, 10, 64
    n = args.steps_per_execution
    if args.steps % n or args.warmup % n or args.warmup < n:
        parser.error("--steps and --warmup must be multiples of --steps_per_execution (and warmup >= it)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    report = {"args": vars(args), "machine": {
        "platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
        "tensorflow": tf.__version__, "keras": keras.__version__, "load_average_start": os.getloadavg()},
        "train": [], "pipeline": [], "generation": [], "goals": []}
    total_steps = args.warmup + args.steps * args.repeats
    with tempfile.TemporaryDirectory() as root:
        for arch, size, batch in itertools.product(args.arch, args.size, args.batch):
            channels = 1 if arch == "mnist" else 3
            epoch_steps = 4 * args.steps_per_execution
            write_images(os.path.join(root, f"{arch}_{size}"), batch * epoch_steps, size, channels)
            fits = {}
            for precision in args.precision:
                config = make_config(args, root, arch, size, batch, precision, total_steps, epoch_steps)
                print(f"... {arch} {size}x{size} batch {batch} {precision}: fit", flush=True)
                fit, run = bench_fit(args, config)
                row = {"arch": arch, "size": size, "batch": batch, "precision": precision, "fit": fit}
                if "loop" not in args.skip:
                    print(f"... {arch} {size}x{size} batch {batch} {precision}: plain loop", flush=True)
                    row["loop"] = bench_loop(args, run.config)
                    row["fit/loop"] = fit["median"] / row["loop"]["median"]
                    row["fit/loop_cpu"] = row["loop"]["cpu_s_per_image"] / fit["cpu_s_per_image"]
                    report["goals"].append(goal("fit/loop", row["fit/loop"], arch=arch, size=size, batch=batch,
                                                precision=precision))
                report["train"].append(row)
                fits[precision] = row
                first = batch == args.batch[0] and (precision == args.precision[0] or not args.quick)
                if "generation" not in args.skip and first:
                    print(f"... {arch} {size}x{size} {precision}: generation", flush=True)
                    report["generation"].append({"arch": arch, "size": size, "precision": precision,
                                                 **bench_generation(args, run, root)})
                del run
                keras.backend.clear_session()
            if "float32" in fits and "mixed_bfloat16" in fits:
                ratio = fits["mixed_bfloat16"]["fit"]["median"] / fits["float32"]["fit"]["median"]
                where = {"arch": arch, "size": size, "batch": batch}
                where["cpu_ratio"] = fits["float32"]["fit"]["cpu_s_per_image"] / fits["mixed_bfloat16"]["fit"]["cpu_s_per_image"]
                if "loop" in fits["float32"] and "loop" in fits["mixed_bfloat16"]:
                    where["loop_ratio"] = fits["mixed_bfloat16"]["loop"]["median"] / fits["float32"]["loop"]["median"]
                report["goals"].append(goal("mixed_bfloat16/float32", ratio, **where))
            if "pipeline" not in args.skip:
                folder = args.data if os.path.isdir(args.data) else os.path.join(root, f"{arch}_{size}")
                print(f"... pipeline from {folder} at {size}x{size} batch {batch}", flush=True)
                pipe = {"folder": os.path.relpath(folder, REPO) if folder == args.data else "synthetic",
                        "size": size, **bench_pipeline(args, folder, size, batch, channels)}
                report["pipeline"].append(pipe)
                fastest = max(row["fit"]["median"] for row in fits.values())
                report["goals"].append(goal("pipeline/training", pipe["median"] / fastest, size=size, batch=batch))
    report["machine"]["load_average_end"] = os.getloadavg()
    print_report(report)
    out = args.out or os.path.join(REPO, "bench", "results", f"throughput-{time.strftime('%Y%m%d-%H%M%S')}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {out}")
    return 0


def _spread(s):
    return f"{s['median']:8.1f} ({s['min']:.1f}-{s['max']:.1f})"


def print_report(report):
    print(f"\nload average {report['machine']['load_average_start']} -> {report['machine']['load_average_end']}"
          f" on {report['machine']['cpus']} CPUs")
    print(f"\n{'arch':10s} {'size':>4s} {'batch':>5s} {'precision':15s} {'fit img/s (min-max)':>26s} "
          f"{'loop img/s (min-max)':>26s} {'fit/loop':>8s} {'CPU ms/img fit, loop':>21s}")
    for row in report["train"]:
        loop = _spread(row["loop"]) if "loop" in row else "-"
        ratio = f"{row['fit/loop']:.3f}" if "fit/loop" in row else "-"
        cpu = f"{1000 * row['fit']['cpu_s_per_image']:.1f}, " + (
            f"{1000 * row['loop']['cpu_s_per_image']:.1f}" if "loop" in row else "-")
        print(f"{row['arch']:10s} {row['size']:4d} {row['batch']:5d} {row['precision']:15s} "
              f"{_spread(row['fit']):>26s} {loop:>26s} {ratio:>8s} {cpu:>21s}")
    for pipe in report["pipeline"]:
        print(f"\npipeline {pipe['folder']} {pipe['size']}x{pipe['size']} batch {pipe['batch']}: decode "
              f"{pipe['images']} images in {pipe['decode_s']:.2f} s ({pipe['decode_images_per_s']:.0f} img/s); "
              f"steady {_spread(pipe)} img/s")
    for gen in report["generation"]:
        print(f"generation {gen['arch']} {gen['size']}x{gen['size']} {gen['precision']}: keras "
              f"{_spread(gen['keras'])} img/s, savedmodel {_spread(gen['savedmodel'])} img/s")
    print()
    for g in report["goals"]:
        where = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in g.items() if k not in ("goal", "value", "target", "pass"))
        print(f"{'PASS' if g['pass'] else 'FAIL'}  {g['goal']:24s} {g['value']:.3f} (goal >= {g['target']}) [{where}]")


if __name__ == "__main__":
    raise SystemExit(main())
