"""Quality benchmark: training recipes side by side, each scored with FID and KID as it trains.

    python bench/quality.py --recipes default original --steps 8000 --eval_freq 500

Every variant is an ordinary run of main.py (`--train --eval_freq N`, so `--eval` semantics: the
generated images of fixed z, the generator in inference mode, against all real images), in
`<work>/<variant>_s<seed>/` with its own checkpoints, samples, logs and `train.log`. `--reuse`
continues runs already there from their newest checkpoint (e.g. in a later session, with a larger
--steps); without it an existing run folder is an error, so nothing is overwritten. The scores come
from each run's quality.json. Output in --out: `quality.json` (every variant's curve),
`quality.md` (a table of KID at each measured step) and `kid_vs_step.png`, KID against step for every
variant beside the reference curves of an independent implementation (full width, on a GPU).

A variant is a recipe name (`default`, `original`) or `NAME=FLAGS`, e.g. `"noaverage=--ema_decay 0"`
(flags added to the default recipe). `--start_from RUN:STEP` starts every new variant from step STEP
of an earlier benchmark run (a `<work>/<variant>_s<seed>` folder that still holds that checkpoint),
to compare remedies on one trajectory: each variant's folder gets that checkpoint and the run's
files up to it (measurements, metrics rows, sample grids), then trains on with its own flags
(its config.json is its own). `--jobs N` trains N variants side by side, each with its share of the
CPU's threads.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # frames, beside this file
import frames  # noqa: E402
from dcgan_tf import quiet  # noqa: E402

quiet.quiet_tensorflow()  # Before TensorFlow's import (--start_from reads checkpoints): none of its C++ lines.

# KID of an independent PyTorch copy of this network (full width 64, batch 25, 500 generated images of
# fixed z against all 100 frames), as the README cites it: {label: {size: [(step, kid)]}}.
REFERENCE = {
    "reference DiffAugment, lr 2e-4": {64: [(1000, 0.37), (2000, 0.35), (3000, 0.28), (4500, 0.24)]},
    "reference DiffAugment, lr 1e-4": {64: [(1000, 0.43), (2000, 0.34), (3000, 0.30), (4500, 0.26)],
                                       128: [(2000, 0.34), (3000, 0.26), (5000, 0.14), (6200, 0.13)]},
    "reference original recipe": {64: [(7500, 0.435)], 128: [(5000, 0.50), (5300, 0.43)]},
}


def parse_variant(text: str):
    """'default' -> ('default', ['--recipe', 'default']); 'x=--ema_decay 0' -> ('x', [..., '--ema_decay', '0'])."""
    name, _, flags = text.partition("=")
    if not name.replace("_", "").replace("-", "").isalnum():
        raise SystemExit(f"variant name {name!r}: use letters, digits, '_' and '-'")
    extra = shlex.split(flags)
    recipe = [] if "--recipe" in extra else ["--recipe", name if name in ("default", "original") else "default"]
    return name, recipe + extra


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=frames.default_frames(),
                   help="image folder to train on (default: data/simpsons_64 once --download has filled it)")
    p.add_argument("--size", type=int, default=64, help="output height and width")
    p.add_argument("--steps", type=int, default=4000, help="training steps per variant (rounded up to epochs)")
    p.add_argument("--batch", type=int, default=25)
    p.add_argument("--gf_dim", type=int, default=16, help="generator width (64 is the original's full width)")
    p.add_argument("--df_dim", type=int, default=16)
    p.add_argument("--recipes", nargs="+", default=["default", "original"], metavar="VARIANT",
                   help="recipe names or NAME=FLAGS")
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--eval_freq", type=int, default=500)
    p.add_argument("--eval_samples", type=int, default=500)
    p.add_argument("--sample_freq", type=int, default=500)
    p.add_argument("--out", default="", help="default bench/results/quality_<size>")
    p.add_argument("--work", default="", help="where the runs go (default <out>/runs)")
    p.add_argument("--jobs", type=int, default=1, help="variants trained side by side")
    p.add_argument("--reuse", action="store_true", help="continue the runs already in --work")
    p.add_argument("--start_from", default="", metavar="RUN:STEP",
                   help="start new variants from step STEP of this earlier run folder (<work>/<variant>_s<seed>)")
    p.add_argument("--plot_only", action="store_true", help="only collect the curves and draw the plot")
    args = p.parse_args(argv)
    args.out = args.out or os.path.join(REPO, "bench", "results", f"quality_{args.size}")
    args.work = args.work or os.path.join(args.out, "runs")
    return args


def plan(args):
    """[(variant folder name, main.py arguments)] for every variant and seed."""
    folder = os.path.abspath(args.data)
    per_epoch = max(1, _count_images(folder) // args.batch)
    epochs = math.ceil(args.steps / per_epoch)
    runs = []
    for seed in args.seeds:
        for text in args.recipes:
            name, flags = parse_variant(text)
            work = os.path.join(args.work, f"{name}_s{seed}")
            argv = ["--train", "--crop", "--data_dir", os.path.dirname(folder), "--dataset", os.path.basename(folder),
                    "--output_height", str(args.size), "--batch_size", str(args.batch), "--gf_dim", str(args.gf_dim),
                    "--df_dim", str(args.df_dim), "--seed", str(seed), "--epoch", str(epochs),
                    "--eval_freq", str(args.eval_freq), "--eval_samples", str(args.eval_samples), "--keep_best", "kid",
                    "--sample_freq", str(args.sample_freq), "--ckpt_freq", str(args.eval_freq),
                    "--checkpoint_dir", os.path.join(work, "checkpoints"), "--sample_dir", os.path.join(work, "samples"),
                    "--log_dir", os.path.join(work, "logs"), *flags]
            runs.append((f"{name}_s{seed}", work, argv))
    return runs


def _count_images(folder: str) -> int:
    from dcgan_tf.data import pipeline as data

    return len(data.find_image_files(folder))


def train_all(args, runs) -> None:
    threads = max(1, (os.cpu_count() or 2) // max(1, args.jobs))
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    for name, work, _ in runs:
        if os.path.isdir(work) and not args.reuse:
            raise SystemExit(f"{work} already holds a run; add --reuse to continue it, or choose another --work")
    if args.start_from:
        source, step = parse_start(args.start_from)
        for _, work, _ in runs:
            if not os.path.isdir(work):
                branch(source, step, work)
    pending, running, failed = list(runs), [], []
    while pending or running:
        while pending and len(running) < args.jobs:
            name, work, argv = pending.pop(0)
            os.makedirs(work, exist_ok=True)
            log = open(os.path.join(work, "train.log"), "a")
            print(f"training {name} (log: {log.name})", flush=True)
            running.append((name, subprocess.Popen([sys.executable, os.path.join(REPO, "main.py"), *argv],
                                                   stdout=log, stderr=subprocess.STDOUT, env=env), log))
        time.sleep(2)
        for name, proc, log in [r for r in running if r[1].poll() is not None]:
            log.close()
            if proc.returncode:
                failed.append(name)
        running = [r for r in running if r[1].poll() is None]
    if failed:
        raise SystemExit(f"{len(failed)} variant(s) failed to train (see their train.log): {', '.join(failed)}")


def parse_start(text: str):
    """'RUN:STEP' -> (RUN, STEP); SystemExit unless RUN is a benchmark run folder holding ckpt-STEP."""
    source, _, step = text.rpartition(":")
    if not source or not step.isdigit():
        raise SystemExit(f"--start_from {text!r}: give RUN:STEP, e.g. runs/default_s1:5000")
    from dcgan_tf.runs import checkpoint_path

    if not glob.glob(checkpoint_path(os.path.join(source, "checkpoints", "*"), int(step)) + ".index"):
        raise SystemExit(f"--start_from {text}: {source} holds no checkpoint of step {int(step)} "
                         f"(see {os.path.join(source, 'checkpoints', '<run>')})")
    return source, int(step)


def branch(source: str, step: int, work: str) -> None:
    """Makes `work` a copy of the benchmark run `source` as it was at `step`: the checkpoint of that
    step as its only one, the real images' FID features, the measurements and metrics.csv rows up to
    that step (and the best checkpoint if it is not later) and the sample grids up to it. TensorBoard
    logs are not copied; the variant's start after `step`. Nor is config.json: a run with checkpoints
    continues only with its own training options, and a branch trains with other ones; its first
    start writes its own."""
    from dcgan_tf import runs as run_files
    from dcgan_tf.training.checkpoints import write_state_file

    for folder in glob.glob(os.path.join(source, "checkpoints", "*", "")):
        folder = os.path.dirname(folder)
        target = os.path.join(work, "checkpoints", os.path.basename(folder))
        os.makedirs(target)
        for name in [run_files.REAL_FEATURES_FILE] + [
                os.path.basename(p) for p in glob.glob(run_files.checkpoint_path(folder, step) + ".*")]:
            if os.path.exists(os.path.join(folder, name)):
                shutil.copy2(os.path.join(folder, name), target)
        write_state_file(os.path.join(target, run_files.STATE_FILE), [run_files.checkpoint_path(target, step)])
        quality_file = os.path.join(folder, run_files.QUALITY_FILE)
        if os.path.exists(quality_file):
            with open(quality_file) as f:
                quality = json.load(f)
            quality["evaluations"] = [r for r in quality["evaluations"] if r.get("step", 0) <= step]
            best = quality.get("best") or {}
            if best.get("step", step + 1) <= step and os.path.isdir(os.path.join(folder, run_files.BEST_DIR)):
                shutil.copytree(os.path.join(folder, run_files.BEST_DIR), os.path.join(target, run_files.BEST_DIR))
            else:
                quality.pop("best", None)
            with open(os.path.join(target, run_files.QUALITY_FILE), "w") as f:
                json.dump(quality, f, indent=2)
        metrics_file = os.path.join(folder, run_files.METRICS_FILE)
        if os.path.exists(metrics_file):
            with open(metrics_file) as f:
                lines = f.read().splitlines()
            kept = lines[:1] + [line for line in lines[1:] if line.count(",") and int(line.split(",")[1]) <= step]
            with open(os.path.join(target, run_files.METRICS_FILE), "w") as f:
                f.write("\n".join(kept) + "\n")
    for grids in glob.glob(os.path.join(source, "samples", "*", "")):
        grids = os.path.dirname(grids)
        for grid_step, _, path in run_files.sample_grids(grids):
            if grid_step <= step:
                target = os.path.join(work, "samples", os.path.basename(grids))
                os.makedirs(target, exist_ok=True)
                shutil.copy2(path, target)


def collect(runs) -> dict:
    """{variant: {"steps": [...], "kid": [...], "fid": [...], "kid_live": [...], "best": {...}}} from quality.json."""
    curves = {}
    for name, work, _ in runs:
        ckpt_root = os.path.join(work, "checkpoints")
        folders = [os.path.join(ckpt_root, d) for d in sorted(os.listdir(ckpt_root))] if os.path.isdir(ckpt_root) else []
        for folder in folders:
            path = os.path.join(folder, "quality.json")
            if not os.path.exists(path):
                continue
            with open(path) as f:
                quality = json.load(f)
            records = sorted({r["step"]: r for r in quality["evaluations"]}.values(), key=lambda r: r["step"])
            curve = {key: [r.get(key) for r in records] for key in ("step", "kid", "kid_std", "fid", "kid_live", "fid_live")}
            curve["best"] = quality.get("best")
            curves[name] = curve
    return curves


def table(curves) -> str:
    steps = sorted({s for c in curves.values() for s in c["step"]})
    lines = ["| step | " + " | ".join(f"{n} KID" for n in curves) + " |", "|---|" + "---|" * len(curves)]
    for step in steps:
        cells = []
        for c in curves.values():
            i = c["step"].index(step) if step in c["step"] else None
            if i is None:
                cells.append("")
            else:
                live = f" (live {c['kid_live'][i]:.3f})" if c["kid_live"][i] is not None else ""
                cells.append(f"{c['kid'][i]:.3f}{live}")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(curves, size: int, path: str, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for name, c in curves.items():
        line, = ax.plot(c["step"], c["kid"], marker="o", ms=3, label=name)
        if any(v is not None for v in c["kid_live"]):
            ax.plot(c["step"], c["kid_live"], ls=":", color=line.get_color(), label=f"{name} (live weights)")
    for label, by_size in REFERENCE.items():
        if size in by_size:
            xs, ys = zip(*by_size[size])
            ax.plot(xs, ys, ls="--", marker="x", color="grey", alpha=0.7, label=label)
    ax.set_xlabel("training step (batch 25)")
    ax.set_ylabel("KID (lower is better)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv=None):
    args = parse_args(argv)
    runs = plan(args)
    if not args.plot_only:
        train_all(args, runs)
    curves = collect(runs)
    if not curves:
        raise SystemExit(f"no measurements in {args.work} yet")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "quality.json"), "w") as f:
        json.dump(curves, f, indent=2)
    md = table(curves)
    with open(os.path.join(args.out, "quality.md"), "w") as f:
        f.write(md + "\n")
    title = (f"{args.size}x{args.size}, widths {args.gf_dim}/{args.df_dim}, batch {args.batch}, "
             f"{args.eval_samples} generated vs all real images")
    print(md)
    print(f"wrote {plot(curves, args.size, os.path.join(args.out, 'kid_vs_step.png'), title)}")


if __name__ == "__main__":
    main()
