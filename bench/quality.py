"""Quality benchmark: the same training budget with and without DiffAugment (or in another
precision), each scored with FID and KID against the real images. A benchmark, not a test.

    python bench/quality.py --data ../shared/data/simpsons_64 --size 64 --steps 1000 \
        --variants none color,translation,cutout --seeds 1 2

Every variant trains from scratch on the same images for the same number of steps; it writes its
last sample grid, and --eval_samples images from the same fixed z (the z that --eval_freq uses), as
`<out>/<variant>.npz`. Scoring then measures each against up to --eval_samples real images with the
standard FID network and prints a table (also <out>/quality.json and <out>/quality.md).

`--phase train` and `--phase score` split the two halves, e.g. to train on a larger machine and
score where the FID weights are. `--jobs N` trains N variants side by side, each with its share of
the CPU's threads.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def variant_name(diffaug: str, precision: str, seed: int) -> str:
    return f"{(diffaug or 'none').replace(',', '-')}_{precision}_s{seed}"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "simpsons_64"),
                   help="image folder to train on")
    p.add_argument("--size", type=int, default=64, help="output height and width")
    p.add_argument("--steps", type=int, default=1000, help="training steps per variant (rounded up to epochs)")
    p.add_argument("--batch", type=int, default=25)
    p.add_argument("--gf_dim", type=int, default=32)
    p.add_argument("--df_dim", type=int, default=32)
    p.add_argument("--learning_rate", type=float, default=2e-4)
    p.add_argument("--arch", default="simpsons")
    p.add_argument("--variants", nargs="+", default=["none", "color,translation,cutout"],
                   help="DiffAugment policies ('none' for off)")
    p.add_argument("--precisions", nargs="+", default=["float32"])
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--eval_samples", type=int, default=500)
    p.add_argument("--fid_weights", default="")
    p.add_argument("--out", default="")
    p.add_argument("--work", default="", help="where the runs' checkpoints go (default <out>/runs)")
    p.add_argument("--phase", choices=("all", "train", "score"), default="all")
    p.add_argument("--jobs", type=int, default=1, help="variants trained side by side")
    p.add_argument("--reuse", action="store_true", help="continue runs already in --work instead of "
                   "starting afresh (a finished run is only re-exported)")
    p.add_argument("--one", default="", help=argparse.SUPPRESS)  # A single variant (used by --jobs).
    args = p.parse_args(argv)
    args.out = args.out or os.path.join(REPO, "bench", "results", f"quality_{args.size}")
    return args


def plan(args):
    return [(("" if d == "none" else d), prec, seed)
            for seed in args.seeds for prec in args.precisions for d in args.variants]


def train_variant(args, diffaug: str, precision: str, seed: int) -> dict:
    """Trains one variant; writes <out>/<name>.npz (generated images), <name>_grid.png, <name>.json."""
    from dcgan_tf import data, evaluate, train
    from dcgan_tf.config import RunConfig
    from dcgan_tf.gan import generated_images
    from dcgan_tf.latent import draw_z

    name = variant_name(diffaug, precision, seed)
    work = os.path.join(args.work or os.path.join(args.out, "runs"), name)
    if not args.reuse:
        shutil.rmtree(work, ignore_errors=True)
    folder = os.path.abspath(args.data)
    per_epoch = data.steps_per_epoch(len(data.find_image_files(folder)), args.batch)
    epochs = math.ceil(args.steps / per_epoch)
    extra = {"diffaug": diffaug} if diffaug else {}
    if precision != "float32":
        extra["precision"] = precision
    config = RunConfig.create(
        train=True, arch=args.arch, data_dir=os.path.dirname(folder), dataset=os.path.basename(folder),
        output_height=args.size, batch_size=args.batch, gf_dim=args.gf_dim, df_dim=args.df_dim,
        learning_rate=args.learning_rate, epoch=epochs, seed=seed, checkpoint_dir=os.path.join(work, "ckpt"),
        sample_dir=os.path.join(work, "samples"), log_dir=os.path.join(work, "logs"),
        sample_freq=epochs * per_epoch, ckpt_freq=epochs * per_epoch, max_to_keep=1,
        eval_samples=args.eval_samples, **extra)
    result = train.train(config, verbose=0)
    run = result.run
    # The same z as --eval_freq's measurements (evaluate.make_evaluator).
    z = draw_z(args.eval_samples, config.z_dim, config.z_dist, seed=config.seed + 2)
    pixels = evaluate.generated_pixels(lambda batch: generated_images(run.model.generator, batch), z)
    grid = read_png(result.samples[-1]) if result.samples else np.zeros((1, 1, 3), np.uint8)
    history = result.history or {}
    info = {"name": name, "diffaug": diffaug or "none", "precision": precision, "seed": seed,
            "steps": int(run.model.step.numpy()), "train_seconds": round(result.seconds, 1),
            "seconds_per_step": round(result.seconds / max(result.steps_run, 1), 4),
            "final": {k: float(v[-1]) for k, v in history.items() if v},
            "size": args.size, "batch": args.batch, "gf_dim": args.gf_dim, "df_dim": args.df_dim,
            "learning_rate": args.learning_rate, "arch": args.arch}
    # One file per variant (images, last grid, facts), so a run elsewhere returns few files.
    np.savez_compressed(os.path.join(args.out, f"{name}.npz"), images=pixels, grid=grid,
                        info=np.array(json.dumps(info)))
    print(f"trained {name}: {info['steps']} steps in {info['train_seconds']} s "
          f"({info['seconds_per_step']} s/step)", flush=True)
    return info


def read_png(path):
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def train_all(args):
    os.makedirs(args.out, exist_ok=True)
    todo = plan(args)
    if args.jobs <= 1:
        for diffaug, precision, seed in todo:
            train_variant(args, diffaug, precision, seed)
        return
    threads = max(1, (os.cpu_count() or 2) // args.jobs)
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": "2",
           "OMP_NUM_THREADS": str(threads), "TF_CPP_MIN_LOG_LEVEL": "2"}
    pending, running, failed = list(todo), [], []
    while pending or running:
        while pending and len(running) < args.jobs:
            diffaug, precision, seed = pending.pop(0)
            cmd = [sys.executable, os.path.abspath(__file__), "--phase", "train",
                   "--one", f"{diffaug or 'none'}|{precision}|{seed}", *_forwarded(args)]
            running.append(subprocess.Popen(cmd, env=env))
        time.sleep(1)
        failed += [p.args for p in running if p.poll() not in (None, 0)]
        running = [p for p in running if p.poll() is None]
    if failed:
        raise SystemExit(f"{len(failed)} variant(s) failed to train: {failed}")


def _forwarded(args):
    out = []
    for key in ("data", "size", "steps", "batch", "gf_dim", "df_dim", "learning_rate", "arch", "eval_samples",
                "out", "work"):
        out += [f"--{key}", str(getattr(args, key))]
    return out


def score_all(args):
    from PIL import Image

    from dcgan_tf import data, evaluate, metrics

    infos = []
    for diffaug, precision, seed in plan(args):
        path = os.path.join(args.out, f"{variant_name(diffaug, precision, seed)}.npz")
        if os.path.exists(path):
            with np.load(path) as f:
                infos.append(json.loads(str(f["info"])))
                Image.fromarray(f["grid"]).save(os.path.join(args.out, f"{infos[-1]['name']}_grid.png"))
    if not infos:
        raise SystemExit(f"nothing trained in {args.out}; run --phase train first")
    features_fn = evaluate.inception_features_fn(args.fid_weights)
    image_set = data.load_image_folder(os.path.abspath(args.data), crop=False, crop_size=(64, 64),
                                       output_size=(args.size, args.size), c_dim=0)
    started = time.time()
    real = evaluate.real_features(features_fn, evaluate.select_real(image_set.images, args.eval_samples,
                                                                    infos[0]["seed"]), args.out)
    print(f"real features: {len(real)} images in {time.time() - started:.0f} s", flush=True)
    rows = []
    for info in infos:
        with np.load(os.path.join(args.out, f"{info['name']}.npz")) as f:
            fake = np.asarray(features_fn(f["images"]), dtype=np.float64)
        kid, kid_std = metrics.kid_from_features(real, fake)
        rows.append({**info, "fid": float(metrics.fid_from_features(real, fake)), "kid": float(kid),
                     "kid_std": float(kid_std), "num_real": len(real), "num_fake": len(fake)})
        print(f"{info['name']}: FID {rows[-1]['fid']:.1f}, KID {kid:.4f} +- {kid_std:.4f}", flush=True)
    table = ["| variant | precision | seed | steps | s/step | FID | KID (x1000) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['diffaug']} | {r['precision']} | {r['seed']} | {r['steps']} | {r['seconds_per_step']:.3f} "
                     f"| {r['fid']:.1f} | {1000 * r['kid']:.1f} +- {1000 * r['kid_std']:.1f} |")
    with open(os.path.join(args.out, "quality.json"), "w") as f:
        json.dump(rows, f, indent=2)
    with open(os.path.join(args.out, "quality.md"), "w") as f:
        f.write("\n".join(table) + "\n")
    print("\n".join(table))
    return rows


def main(argv=None):
    args = parse_args(argv)
    if args.one:
        if os.environ.get("TF_NUM_INTRAOP_THREADS"):
            import tensorflow as tf  # Side by side: each variant keeps to its share of the cores.

            tf.config.threading.set_intra_op_parallelism_threads(int(os.environ["TF_NUM_INTRAOP_THREADS"]))
            tf.config.threading.set_inter_op_parallelism_threads(int(os.environ["TF_NUM_INTEROP_THREADS"]))
        diffaug, precision, seed = args.one.split("|")
        train_variant(args, "" if diffaug == "none" else diffaug, precision, int(seed))
        return
    if args.phase in ("all", "train"):
        train_all(args)
    if args.phase in ("all", "score"):
        score_all(args)


if __name__ == "__main__":
    main()
