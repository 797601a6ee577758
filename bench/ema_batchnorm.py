"""Does the averaged generator need batch-norm statistics of its own? A benchmark, not a test.

    python bench/ema_batchnorm.py RUN_CHECKPOINT_FOLDER [--eval_samples 500] [--from_best | --steps N ...]

For a run trained with a moving average of G (--ema_decay), measures FID and KID (the --eval
protocol) of three generators at the same checkpoint:
  - average, own statistics: the averaged weights with the batch-norm statistics that training kept
    for them (the averaged generator's own forward pass every step; what the product uses);
  - average, live statistics: the averaged weights with the live generator's batch-norm statistics
    (what copying or averaging G's statistics would approximate);
  - live: G's own weights and statistics;
  - average and live with standing statistics: each batch-norm layer's mean and variance recomputed
    as the plain average over --standing_batches batches of the training batch size drawn from z
    in training mode (BigGAN's "standing statistics"), instead of the momentum-0.9 moving average
    that training keeps (which weighs about the last ten batches).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from dcgan_tf import quiet  # noqa: E402

quiet.quiet_tensorflow()  # Before TensorFlow's import: none of its C++ start-up lines.


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_folder", help="the run's checkpoint folder (holds config.json)")
    p.add_argument("--eval_samples", type=int, default=500)
    p.add_argument("--from_best", action="store_true", help="the run's best checkpoint instead of its newest")
    p.add_argument("--steps", type=int, nargs="*", default=[],
                   help="measure these checkpoints (ckpt-N of the run folder) instead of the newest")
    p.add_argument("--standing_batches", type=int, default=200)
    p.add_argument("--fid_weights", default="")
    args = p.parse_args(argv)

    from dcgan_tf.quality import evaluate
    from dcgan_tf.training import build
    from dcgan_tf import runs
    from dcgan_tf.config import RunConfig
    from dcgan_tf.model import latent
    from dcgan_tf.model.gan import generated_images

    folder = os.path.abspath(args.run_folder)
    saved = runs.read_config(folder)
    config = RunConfig.create(**{**saved, "run": os.path.basename(folder), "checkpoint_dir": os.path.dirname(folder), "train": False,
                                 "init_from": "", "from_best": args.from_best, "eval_samples": args.eval_samples})
    run = build.load_trained(config)
    model = run.model
    if model.ema_generator is None:
        raise SystemExit(f"{folder} was trained without --ema_decay; nothing to compare")
    data_config, image_set = build.prepare_data(dataclasses.replace(run.config, eval_samples=args.eval_samples))
    evaluator = evaluate.make_evaluator(image_set.images, evaluate.inception_features_fn(args.fid_weights),
                                        z_dim=run.config.z_dim, z_dist=run.config.z_dist,
                                        samples=args.eval_samples, seed=data_config.seed, cache_folder=folder)
    checkpoints = [runs.checkpoint_path(run.config.run_checkpoint_dir, step) for step in args.steps]
    z = latent.z_numpy(args.standing_batches * run.config.batch_size, run.config.z_dim, run.config.z_dist,
                       seed=12345).reshape(args.standing_batches, run.config.batch_size, -1)
    for checkpoint in checkpoints or [None]:
        if checkpoint is not None:
            build.restore_into_run(run, [checkpoint])
        results = {"checkpoint": checkpoint or run.resumed_from, "step": int(model.step.numpy())}
        results["average, own statistics"] = evaluator.evaluate(lambda z: generated_images(model.ema_generator, z))
        results["live"] = evaluator.evaluate(lambda z: generated_images(model.generator, z))
        ema_own = _statistics(model.ema_generator)
        live_own = _statistics(model.generator)
        _set_statistics(model.ema_generator, live_own)
        results["average, live statistics"] = evaluator.evaluate(lambda z: generated_images(model.ema_generator, z))
        for name, generator, own in (("average", model.ema_generator, ema_own), ("live", model.generator, live_own)):
            _set_statistics(generator, own)
            standing = standing_statistics(generator, z)
            _set_statistics(generator, standing)
            results[f"{name}, standing statistics"] = evaluator.evaluate(lambda z: generated_images(generator, z))
            _set_statistics(generator, own)
        print(json.dumps(results, indent=2), flush=True)
        for name in ("average, own statistics", "average, live statistics", "average, standing statistics",
                     "live", "live, standing statistics"):
            print(f"step {results['step']}, {name}: {evaluate.describe(results[name])}", flush=True)


def _batch_norm_layers(generator):
    import keras

    return [layer for layer in generator._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.BatchNormalization)]


def _statistics(generator):
    return [[layer.moving_mean.numpy(), layer.moving_variance.numpy()] for layer in _batch_norm_layers(generator)]


def _set_statistics(generator, values):
    for layer, (mean, variance) in zip(_batch_norm_layers(generator), values):
        layer.moving_mean.assign(mean)
        layer.moving_variance.assign(variance)


def standing_statistics(generator, z_batches):
    """Each batch-norm layer's moving mean and variance as the plain average of its training-mode
    batch statistics over `z_batches` ([batches, batch_size, z_dim]); the weights are untouched.
    Momentum 1 - 1/k at the k-th batch makes Keras's moving update a running mean."""
    layers = _batch_norm_layers(generator)
    kept = [layer.momentum for layer in layers]
    try:
        for k, z in enumerate(z_batches, start=1):
            for layer in layers:
                layer.momentum = 1.0 - 1.0 / k
            generator(z, training=True)
    finally:
        for layer, momentum in zip(layers, kept):
            layer.momentum = momentum
    return _statistics(generator)


if __name__ == "__main__":
    main()
