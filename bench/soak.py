"""Soak benchmark: thousands of tiny training steps with sampling, summaries and checkpoints at
short intervals. Reports resident memory over the run (it must stay flat) and the files kept (only
max_to_keep checkpoints). Not a test: run it by hand.

    python bench/soak.py --steps 4000 --out bench/results/soak.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dcgan_tf import quiet  # noqa: E402

quiet.quiet_tensorflow()  # Before TensorFlow's import: none of its C++ start-up lines.

import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from dcgan_tf.training import train  # noqa: E402
from dcgan_tf.config import RunConfig  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class MemoryProbe(keras.callbacks.Callback):
    def __init__(self, every: int):
        super().__init__()
        self.every, self.points = every, []

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.step.numpy())
        if step % self.every == 0:
            self.points.append((step, rss_mb()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--sample_freq", type=int, default=50)
    parser.add_argument("--ckpt_freq", type=int, default=100)
    parser.add_argument("--max_to_keep", type=int, default=3)
    parser.add_argument("--out", default="bench/results/soak.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as root:
        folder = os.path.join(root, "data", "soak")
        os.makedirs(folder)
        rng = np.random.default_rng(0)
        for i in range(8):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(f"{folder}/{i}.png")
        config = RunConfig.create(
            data_dir=os.path.join(root, "data"), dataset="soak", output_height=32, gf_dim=4, df_dim=4,
            batch_size=4, z_dim=8, epoch=args.steps // 2, seed=0, sample_freq=args.sample_freq,
            ckpt_freq=args.ckpt_freq, max_to_keep=args.max_to_keep,
            checkpoint_dir=os.path.join(root, "checkpoints"), sample_dir=os.path.join(root, "samples"),
            log_dir=os.path.join(root, "logs"), export_dir=os.path.join(root, "export"))
        probe = MemoryProbe(every=max(1, args.steps // 40))
        started = time.time()
        result = train.train(config, verbose=0, extra_callbacks=[probe])
        seconds = time.time() - started
        run_dir = result.run.config.run_checkpoint_dir
        kept = sorted(n for n in os.listdir(run_dir) if n.endswith(".index"))
        samples = len(os.listdir(result.run.config.run_sample_dir))
        event_bytes = sum(os.path.getsize(os.path.join(dp, f))
                          for dp, _, fs in os.walk(result.run.config.run_log_dir) for f in fs)

    # Memory after warm-up (the first tenth: tracing, first checkpoint) against the end.
    warm = probe.points[len(probe.points) // 10]
    end = probe.points[-1]
    report = {
        "steps": result.steps_run, "seconds": round(seconds, 1),
        "steps_per_second": round(result.steps_run / seconds, 1),
        "sample_freq": args.sample_freq, "ckpt_freq": args.ckpt_freq, "max_to_keep": args.max_to_keep,
        "rss_mb_after_warmup": round(warm[1], 1), "warmup_step": warm[0],
        "rss_mb_end": round(end[1], 1), "rss_growth_mb": round(end[1] - warm[1], 1),
        "rss_growth_per_1000_steps_mb": round((end[1] - warm[1]) / max(1, end[0] - warm[0]) * 1000, 2),
        "checkpoints_kept": kept, "sample_grids_written": samples, "event_file_bytes": event_bytes,
        "rss_trace": probe.points,
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    for key, value in report.items():
        if key != "rss_trace":
            print(f"{key:32s} {value}")
    flat = report["rss_growth_mb"] <= max(20.0, 0.05 * warm[1])
    kept_ok = len(kept) == args.max_to_keep
    print("memory flat:", flat, "| checkpoints kept == max_to_keep:", kept_ok)
    return 0 if flat and kept_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
