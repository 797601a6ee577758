"""Throughput benchmark: training images/s through the product's fit (train.train with its callbacks)
and through a plain tf.function loop of the same train step, the input pipeline, and generation (Keras
generator and exported SavedModel). Prints a table and the project's goals with PASS/FAIL, and writes
JSON into bench/results/. Not a test: run it by hand on a quiet machine.

    python bench/throughput.py --arch simpsons --size 64 128 --batch 25 64 \\
        --precision float32 mixed_bfloat16
    python bench/throughput.py --quick        # tiny widths, few steps: a smoke check (at 4 filters
                                              # fit's few ms per step fail the goals by design)

Roofline: the train step's FLOPs are counted from the layers' shapes (dcgan_tf/model/flops.py: one
D update and g_steps G updates, backward passes included), so fit's img/s becomes achieved GFLOP/s,
printed beside this machine's own matmul rate (`--matmul_size` square matmuls in float32 and
bfloat16, best of `--matmul_repeats`) as a fraction of each. The CPU model, its vector flags and the
precision `--precision auto` picks are printed first and kept in the JSON (`--out PATH`). Compare
`--precision auto float32 mixed_bfloat16`: auto should never be slower than the better of the two.
Without `--precision` it measures float32 and mixed_bfloat16, or float32 alone on a CPU without
native bfloat16 (there mixed_bfloat16 trains several times slower, and its windows would take most
of the run; name it to measure it anyway).
`--torch` adds PyTorch (bench/torch_reference.py, where torch is installed) in turns with a plain
loop of the same arithmetic: the original recipe's step, which is what that reference implements.

The precisions' fits and their plain loops take turns from the first step, one execution
(`--steps_per_execution` steps) at a time: fit in float32, its loop, fit in bfloat16, its loop, ...
(bench_training); the first `--warmup` steps (tracing included) are not timed. A shared machine's
slow spells then fall on all of them alike, so the ratios hold from run to run; run one after the
other, the same figures scattered by about 15%. The ratios are of total times over `--repeats` x `--steps`
steps each; img/s is the median of `--repeats` windows of `--steps` steps, with their min and max.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from typing import List, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # torch_reference, beside this file
from dcgan_tf import quiet  # noqa: E402

quiet.quiet_tensorflow()  # Before TensorFlow's import: none of its C++ start-up lines.

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from dcgan_tf.data import pipeline as data
from dcgan_tf.use import export
from dcgan_tf.use import generate
from dcgan_tf.model import losses
from dcgan_tf.model import nets
from dcgan_tf.training import build, optimizers, train  # noqa: E402
from dcgan_tf.training import precision as auto_precision  # noqa: E402
from dcgan_tf.model import flops as flop_count  # noqa: E402
from dcgan_tf.config import PRECISIONS, PRESETS, RunConfig  # noqa: E402
from dcgan_tf.model.latent import z_tensor  # noqa: E402

import frames  # noqa: E402
import torch_reference  # noqa: E402  (imports torch only when its row is asked for)

# roofline: fit's achieved FLOP/s over the float32 matmul rate (float32 runs); auto/best: auto's speed
# over the faster of float32 and mixed_bfloat16 ("never slower", within the turns' few % of noise).
GOALS = {"fit/loop": 0.95, "mixed_bfloat16/float32": 1.4, "pipeline/training": 5.0, "roofline": 0.9,
         "auto/best": 0.95, "tensorflow/pytorch": 1.2}


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


def matmul_rate(size: int, dtype: str, repeats: int = 3) -> float:
    """This machine's GFLOP/s for a size x size matmul in `dtype` (float32 or bfloat16): the best of
    `repeats` timed products after one untimed (tracing) one, as 2 size^3 / seconds."""
    rng = np.random.default_rng(0)
    a = tf.cast(tf.constant(rng.standard_normal((size, size)), tf.float32), dtype)
    b = tf.cast(tf.constant(rng.standard_normal((size, size)), tf.float32), dtype)
    product = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y)[:1, :1], tf.float32)),
                          autograph=False)
    product(a, b).numpy()
    best = math.inf
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        product(a, b).numpy()
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9


def machine_info() -> dict:
    """The CPU's model and vector flags and what `--precision auto` picks on this machine."""
    model, flags = auto_precision.cpu_info()
    present = set(flags.split())
    choice = auto_precision.machine_choice()
    return {"cpu_model": model or platform.processor(),
            "cpu_flags": [f for f in auto_precision.REPORTED_CPU_FLAGS if f in present],
            "gpus": [list(c) if c else None for c in auto_precision.gpu_capabilities()],
            "auto_precision": choice.policy, "auto_reason": choice.reason}


def achieved(row: dict, rates: dict) -> dict:
    """Fit's achieved GFLOP/s (counted step FLOPs x median steps/s) and its fraction of each measured
    matmul rate ({"float32": GFLOP/s, "bfloat16": ...})."""
    gflops = row["step_flops"] / row["batch"] * row["fit"]["median"] / 1e9
    out = {"gflops": gflops}
    for dtype, rate in rates.items():
        out[f"of_{dtype}_matmul"] = gflops / rate
    return out


class TakeTurns:
    """Runs several participants (threads) one at a time, in a fixed rotation: each waits for its turn,
    works, and passes the turn on. Timed work interleaved this finely sees the same machine, so slow
    spells of a shared host fall on all participants alike instead of on whichever ran then."""

    def __init__(self, count: int, timeout: float = 900.0):
        self._cond = threading.Condition()
        self._active = list(range(count))
        self._turn = 0
        self._ready = threading.Barrier(count)
        self._timeout = timeout

    def start(self, index: int) -> None:
        """Waits until every participant is ready to train, then for `index`'s turn."""
        self._ready.wait(self._timeout)
        self.wait(index)

    def wait(self, index: int) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._turn == index, self._timeout):
                raise RuntimeError(f"participant {index} waited over {self._timeout:.0f} s for its turn")

    def pass_turn(self, index: int) -> None:
        with self._cond:
            self._turn = self._next(index)
            self._cond.notify_all()

    def leave(self, index: int) -> None:
        """`index` is finished (or failed): the rotation goes on without it."""
        self._ready.abort()  # Everyone has passed it, or nobody should wait at it any longer.
        with self._cond:
            if index in self._active:
                following = self._next(index)
                self._active.remove(index)
                if self._turn == index:
                    self._turn = following
            self._cond.notify_all()

    def _next(self, index: int) -> int:
        position = self._active.index(index)
        return self._active[(position + 1) % len(self._active)]


class _Loop:
    real: tf.Tensor

    def run(self, steps: int):
        """(wall s, CPU s) of `steps` steps, finished."""
        started = clock()
        for _ in range(steps):
            out = self.step(self.real)
        tf.nest.map_structure(lambda value: value.numpy(), out)
        ended = clock()
        return ended[0] - started[0], ended[1] - started[1]

    def _real_images(self, config):
        rng = np.random.default_rng(0)
        return tf.constant(rng.uniform(-1, 1, (config.batch_size, config.output_height, config.output_width,
                                               config.c_dim)).astype("float32"))


class StepLoop(_Loop):
    """fit's own step without fit: the run's DCGAN.train_step (its whole recipe: DiffAugment, the
    moving average, R1, ...) in a bare tf.function called from Python, on a second model built as
    train.train builds it (in folders of its own, beside the fit's, so that the benchmark's temporary
    root holds and removes them), with no callbacks, data pipeline or summaries. What fit is compared
    with (fit/loop), so that the ratio is fit's own cost."""

    def __init__(self, config):
        config = dataclasses.replace(config, **{name: getattr(config, name) + "_step_loop" for name in
                                                ("checkpoint_dir", "sample_dir", "log_dir", "export_dir")})
        self.step = tf.function(build.build_run(config).model.train_step)
        self.real = self._real_images(config)


class PlainLoop(_Loop):
    """The original recipe's arithmetic (1 D update, g_steps G updates with the same z; no DiffAugment,
    moving average or R1), the step bench/torch_reference.py implements, in a bare tf.function called
    from Python: same networks, optimizers and batch, nothing else. What PyTorch is compared with."""

    def __init__(self, config):
        if config.precision == auto_precision.AUTO:
            config = dataclasses.replace(config, precision=auto_precision.machine_choice().policy)
        generator, discriminator = nets.build_networks(config)
        d_opt, g_opt = (optimizers.make_optimizer(rate, config.beta1, config.beta2, config.precision)
                        for rate in (config.d_learning_rate, config.g_learning_rate))
        seed = keras.random.SeedGenerator(config.seed)
        self.real = self._real_images(config)

        @tf.function(jit_compile=config.jit_compile)
        def step(real_images):
            z = z_tensor(config.batch_size, config.z_dim, config.z_dist, seed=seed)
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

        self.step = step


class TimedTurns(keras.callbacks.Callback):
    """A fit's participant in TakeTurns: it runs only in its turn, from the start of training to its
    end (TensorFlow functions executing at once in two threads can collide on their per-step
    resources). Each turn is one execution of fit (steps_per_execution steps, with everything fit does
    between them) and then, with a StepLoop, as many loop steps. The first `warmup` steps (tracing
    included) are not timed; then `turns` turns are, after which fit stops, keeping the turn until it
    has ended so that its closing work (checkpoint, grid) overlaps nobody's timing. Must be the last
    callback."""

    def __init__(self, scheduler: TakeTurns, index: int, warmup: int, turns: int, loop=None):
        super().__init__()
        self.scheduler, self.index, self.warmup, self.turns, self.loop = scheduler, index, warmup, turns, loop
        self.fit_times, self.loop_times = [], []
        self._started = None

    def on_train_begin(self, logs=None):
        self.scheduler.start(self.index)

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.step.numpy())  # Reading the step waits for the execution to finish.
        ended = clock()
        steps = self.model.steps_per_execution
        if self._started is not None:
            self.fit_times.append((ended[0] - self._started[0], ended[1] - self._started[1]))
            if self.loop is not None:
                self.loop_times.append(self.loop.run(steps))
            if len(self.fit_times) == self.turns:
                self.model.stop_training = True
                return  # Keeps the turn until on_train_end.
        elif step >= self.warmup and self.loop is not None:
            self.loop.run(steps)  # Traces the loop, untimed.
        self.scheduler.pass_turn(self.index)
        self.scheduler.wait(self.index)
        if step >= self.warmup:
            self._started = clock()

    def on_train_end(self, logs=None):
        self.scheduler.leave(self.index)


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


def window_stats(times, steps, images_per_turn):
    """summarize() of windows of `steps` consecutive turns, from per-turn (wall, CPU) times."""
    windows = [times[i:i + steps] for i in range(0, len(times) - steps + 1, steps)]
    images = steps * images_per_turn
    return summarize([images / sum(w for w, _ in window) for window in windows],
                     [sum(c for _, c in window) / images for window in windows])


def bench_training(args, configs):
    """train.train (the command line's fit, callbacks, summaries and pipeline) for every config at
    once, one per thread, taking turns step by step with each other and with their plain loops
    (TakeTurns). {precision: (row, run)}; ratios are of total times over the same number of steps."""
    turns_per_window = args.steps // args.steps_per_execution
    turns = turns_per_window * args.repeats
    scheduler = TakeTurns(len(configs))
    results, errors = {}, []

    def participate(index, config):
        try:
            loop = None if "loop" in args.skip else StepLoop(config)
            timer = TimedTurns(scheduler, index, args.warmup, turns, loop)
            result = train.train(config, verbose=0, extra_callbacks=[timer])
            if len(timer.fit_times) < turns:
                raise RuntimeError(f"{config.precision}: fit ended after {len(timer.fit_times)} of {turns} turns")
            results[config.precision] = (timer, result.run)
        except BaseException as e:  # noqa: BLE001 -- reported by the main thread
            errors.append(e)
        finally:
            scheduler.leave(index)

    threads = [threading.Thread(target=participate, args=(i, c), daemon=True) for i, c in enumerate(configs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    out = {}
    for config in configs:
        timer, run = results[config.precision]
        per_turn = config.steps_per_execution * config.batch_size
        row = {"fit": window_stats(timer.fit_times, turns_per_window, per_turn),
               "fit_total_s": sum(w for w, _ in timer.fit_times), "policy": run.config.precision,
               "step_flops": flop_count.model_step_flops(run.model, run.config.batch_size)}
        if timer.loop_times:
            row["loop"] = window_stats(timer.loop_times, turns_per_window, per_turn)
            row["loop_total_s"] = sum(w for w, _ in timer.loop_times)
            row["fit/loop"] = row["loop_total_s"] / row["fit_total_s"]
            row["fit/loop_cpu"] = sum(c for _, c in timer.loop_times) / sum(c for _, c in timer.fit_times)
        out[config.precision] = (row, run)
    return out


def bench_torch(args, config) -> dict:
    """The plain TensorFlow loop and the same step in PyTorch (bench/torch_reference.py), called in
    turns, `args.steps` steps at a time, after `args.warmup` untimed steps of each."""
    policy = auto_precision.resolve(config.precision).policy
    loop = PlainLoop(config)
    reference = torch_reference.TorchLoop(config.output_height, config.gf_dim, config.batch_size,
                                          bfloat16=policy == "mixed_bfloat16", g_steps=config.g_steps,
                                          threads=args.threads, learning_rate=config.learning_rate)
    loop.run(args.warmup)
    reference.run(args.warmup)
    times = {"loop": [], "torch": []}
    for _ in range(args.repeats):
        times["loop"].append(loop.run(args.steps))
        times["torch"].append(reference.run(args.steps))
    images = args.steps * config.batch_size
    out = {name: summarize([images / wall for wall, _ in t], [cpu / images for _, cpu in t]) for name, t in times.items()}
    out["tensorflow/pytorch"] = sum(w for w, _ in times["torch"]) / sum(w for w, _ in times["loop"])
    out["policy"] = policy
    return out


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


def bench_generation(args, run, root, label=None):
    """images/s of generate's Keras path and of the exported SavedModel, batches of generate.BATCH."""
    config = run.config
    z = np.random.default_rng(0).uniform(-1, 1, (args.generate, config.z_dim)).astype("float32")
    path = export.export_generator(run.model.generator, config,
                                   os.path.join(root, "export", label or config.precision))
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
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS,
                        help="default: float32 and mixed_bfloat16, or float32 alone on a CPU without native "
                             "bfloat16 (default_precisions)")
    parser.add_argument("--width", type=int, default=0, help="gf_dim = df_dim (0: the preset's)")
    parser.add_argument("--steps", type=int, default=4, help="steps per timed window")
    parser.add_argument("--repeats", type=int, default=5, help="timed windows")
    parser.add_argument("--warmup", type=int, default=4, help="untimed steps first (tracing included)")
    parser.add_argument("--steps_per_execution", type=int, default=1)
    parser.add_argument("--jit_compile", action="store_true")
    parser.add_argument("--data", default=frames.default_frames(), help="image folder for the pipeline figures")
    parser.add_argument("--pipeline_batches", type=int, default=50, help="batches per pipeline window")
    parser.add_argument("--generate", type=int, default=256, help="images per generation window")
    parser.add_argument("--skip", nargs="*", default=[], choices=("loop", "pipeline", "generation", "matmul"))
    parser.add_argument("--matmul_size", type=int, default=2048, help="side of the square matmuls of the roofline")
    parser.add_argument("--matmul_repeats", type=int, default=3, help="timed matmuls per dtype (the best counts)")
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow's intra-op threads (0: its default, all cores); inter-op 1 when set")
    parser.add_argument("--torch", action="store_true",
                        help="also the same step in PyTorch (bench/torch_reference.py; needs torch installed)")
    parser.add_argument("--quick", action="store_true", help="tiny widths and few steps: a smoke check")
    parser.add_argument("--out", default="", help="JSON path (default bench/results/throughput-<time>.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.batch, args.width = [32], [4], 4
        args.steps, args.repeats, args.warmup, args.pipeline_batches, args.generate = 4, 3, 2, 10, 64
        args.matmul_size, args.matmul_repeats = 256, 2
    n = args.steps_per_execution
    if args.steps % n or args.warmup % n or args.warmup < n:
        parser.error("--steps and --warmup must be multiples of --steps_per_execution (and warmup >= it)")
    return args


def default_precisions(choice) -> Tuple[List[str], str]:
    """The precisions measured when --precision is not given, and a line saying what was left out.
    Where `--precision auto` picks float32 (a CPU without native bfloat16), mixed_bfloat16 trains
    6-9x slower (docs/speed.md) and its windows would take most of the benchmark's time."""
    if choice.policy == "float32":
        return ["float32"], (f"... mixed_bfloat16 left out ({choice.reason}; it trains several times slower "
                             f"here): name it in --precision to measure it anyway")
    return ["float32", "mixed_bfloat16"], ""


def main(argv=None) -> int:
    args = parse_args(argv)
    left_out = ""
    if args.precision is None:
        args.precision, left_out = default_precisions(auto_precision.machine_choice())
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    report = {"args": vars(args), "machine": {
        "platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
        "tensorflow": tf.__version__, "keras": keras.__version__, "load_average_start": os.getloadavg(),
        **machine_info()}, "matmul_gflops": {}, "train": [], "pipeline": [], "generation": [], "torch": [], "goals": []}
    m = report["machine"]
    threads = f", TensorFlow on {args.threads} thread(s)" if args.threads else ""
    print(f"CPU: {m['cpu_model']} ({m['cpus']} CPUs{threads}); "
          f"flags: {' '.join(m['cpu_flags']) or 'none of ' + ' '.join(auto_precision.REPORTED_CPU_FLAGS)}; "
          f"GPUs: {m['gpus'] or 'none'}; --precision auto -> {m['auto_precision']} ({m['auto_reason']})", flush=True)
    if left_out:
        print(left_out, flush=True)
    if "matmul" not in args.skip:
        for dtype in ("float32", "bfloat16"):
            report["matmul_gflops"][dtype] = matmul_rate(args.matmul_size, dtype, args.matmul_repeats)
            print(f"... {args.matmul_size}x{args.matmul_size} matmul in {dtype}: "
                  f"{report['matmul_gflops'][dtype]:.1f} GFLOP/s", flush=True)
    if args.torch and not torch_reference.available():
        print("... no PyTorch row: torch is not installed (pip install torch)", flush=True)
        args.torch = False
    total_steps = args.warmup + args.steps * args.repeats
    with tempfile.TemporaryDirectory() as root:
        for arch, size, batch in itertools.product(args.arch, args.size, args.batch):
            channels = 1 if arch == "mnist" else 3
            epoch_steps = 4 * args.steps_per_execution
            write_images(os.path.join(root, f"{arch}_{size}"), batch * epoch_steps, size, channels)
            configs = [make_config(args, root, arch, size, batch, precision, total_steps, epoch_steps)
                       for precision in args.precision]
            print(f"... {arch} {size}x{size} batch {batch}: fit{'' if 'loop' in args.skip else ' and plain loop'} "
                  f"in {', '.join(args.precision)}, taking turns", flush=True)
            fits = {}
            for precision, (row, run) in bench_training(args, configs).items():
                row = {"arch": arch, "size": size, "batch": batch, "precision": precision, **row}
                row["roofline"] = achieved(row, report["matmul_gflops"])
                if row["policy"] == "float32" and "float32" in report["matmul_gflops"]:
                    report["goals"].append(goal("roofline", row["roofline"]["of_float32_matmul"], arch=arch,
                                                size=size, batch=batch, precision=precision))
                if "fit/loop" in row:
                    report["goals"].append(goal("fit/loop", row["fit/loop"], arch=arch, size=size, batch=batch,
                                                precision=precision))
                report["train"].append(row)
                fits[precision] = row
                first = batch == args.batch[0] and (precision == args.precision[0] or not args.quick)
                if "generation" not in args.skip and first:
                    print(f"... {arch} {size}x{size} {precision}: generation", flush=True)
                    report["generation"].append({"arch": arch, "size": size, "precision": precision,
                                                 **bench_generation(args, run, root, label=precision)})
                del run
            keras.backend.clear_session()
            if "float32" in fits and "mixed_bfloat16" in fits:
                ratio = fits["float32"]["fit_total_s"] / fits["mixed_bfloat16"]["fit_total_s"]
                where = {"arch": arch, "size": size, "batch": batch}
                where["cpu_ratio"] = fits["float32"]["fit"]["cpu_s_per_image"] / fits["mixed_bfloat16"]["fit"]["cpu_s_per_image"]
                if "loop" in fits["float32"] and "loop" in fits["mixed_bfloat16"]:
                    where["loop_ratio"] = fits["float32"]["loop_total_s"] / fits["mixed_bfloat16"]["loop_total_s"]
                report["goals"].append(goal("mixed_bfloat16/float32", ratio, **where))
            if auto_precision.AUTO in fits and ({"float32", "mixed_bfloat16"} & set(fits)):
                best = min(fits[p]["fit_total_s"] for p in ("float32", "mixed_bfloat16") if p in fits)
                report["goals"].append(goal("auto/best", best / fits["auto"]["fit_total_s"], arch=arch, size=size,
                                            batch=batch, auto=fits["auto"]["policy"]))
            if args.torch and arch == "simpsons":
                for config in configs:
                    if auto_precision.resolve(config.precision).policy == "mixed_float16":
                        continue  # PyTorch's CPU autocast has no float16 counterpart here.
                    print(f"... {arch} {size}x{size} {config.precision}: plain loop and PyTorch, taking turns", flush=True)
                    row = {"arch": arch, "size": size, "batch": batch, "precision": config.precision,
                           **bench_torch(args, config)}
                    report["torch"].append(row)
                    report["goals"].append(goal("tensorflow/pytorch", row["tensorflow/pytorch"], arch=arch, size=size,
                                                batch=batch, precision=row["policy"]))
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
    m, rates = report["machine"], report.get("matmul_gflops", {})
    if "cpu_model" in m:
        print(f"CPU {m['cpu_model']}; flags {' '.join(m['cpu_flags']) or '-'}; auto -> {m['auto_precision']} "
              f"({m['auto_reason']})")
    if rates:
        print("matmul " + ", ".join(f"{dtype} {rate:.1f} GFLOP/s" for dtype, rate in rates.items())
              + f" ({report['args']['matmul_size']}x{report['args']['matmul_size']}, best of "
                f"{report['args']['matmul_repeats']})")
    print(f"\n{'arch':10s} {'size':>4s} {'batch':>5s} {'precision':21s} {'fit img/s (min-max)':>26s} "
          f"{'loop img/s (min-max)':>26s} {'fit/loop':>8s} {'CPU ms/img fit, loop':>21s} {'GFLOP/step':>10s} "
          f"{'GFLOP/s':>8s} {'of f32 mm':>9s} {'of bf16 mm':>10s}")
    for row in report["train"]:
        loop = _spread(row["loop"]) if "loop" in row else "-"
        ratio = f"{row['fit/loop']:.3f}" if "fit/loop" in row else "-"
        cpu = f"{1000 * row['fit']['cpu_s_per_image']:.1f}, " + (
            f"{1000 * row['loop']['cpu_s_per_image']:.1f}" if "loop" in row else "-")
        name = row["precision"] if row.get("policy", row["precision"]) == row["precision"] else \
            f"{row['precision']}->{row['policy']}"
        roof = row.get("roofline", {})
        fractions = [f"{roof[k]:.0%}" if k in roof else "-" for k in ("of_float32_matmul", "of_bfloat16_matmul")]
        print(f"{row['arch']:10s} {row['size']:4d} {row['batch']:5d} {name:21s} "
              f"{_spread(row['fit']):>26s} {loop:>26s} {ratio:>8s} {cpu:>21s} "
              f"{row.get('step_flops', 0) / 1e9:10.3f} {roof.get('gflops', 0):8.1f} {fractions[0]:>9s} "
              f"{fractions[1]:>10s}")
    for row in report.get("torch", []):
        print(f"\nPyTorch {row['arch']} {row['size']}x{row['size']} batch {row['batch']} {row['policy']}: plain loop "
              f"{_spread(row['loop'])} img/s, PyTorch {_spread(row['torch'])} img/s, "
              f"TensorFlow/PyTorch {row['tensorflow/pytorch']:.2f}")
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
