"""Does the averaged generator need batch-norm statistics of its own? A benchmark, not a test.

    python bench/ema_batchnorm.py RUN_CHECKPOINT_FOLDER [--eval_samples 500] [--from_best]

For a run trained with a moving average of G (--ema_decay), measures FID and KID (the --eval
protocol) of three generators at the same checkpoint:
  - average, own statistics: the averaged weights with the batch-norm statistics that training kept
    for them (the averaged generator's own forward pass every step; what the product uses);
  - average, live statistics: the averaged weights with the live generator's batch-norm statistics
    (what copying or averaging G's statistics would approximate);
  - live: G's own weights and statistics.
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
    p.add_argument("--fid_weights", default="")
    args = p.parse_args(argv)

    from dcgan_tf.quality import evaluate
    from dcgan_tf.training import build
    from dcgan_tf import runs
    from dcgan_tf.config import RunConfig
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
    results = {"checkpoint": run.resumed_from, "step": int(model.step.numpy())}
    results["average, own statistics"] = evaluator.evaluate(lambda z: generated_images(model.ema_generator, z))
    results["live"] = evaluator.evaluate(lambda z: generated_images(model.generator, z))
    own = [v.numpy() for v in model.ema_generator.non_trainable_variables]
    for target, source in zip(model.ema_generator.non_trainable_variables, model.generator.non_trainable_variables):
        target.assign(source)
    results["average, live statistics"] = evaluator.evaluate(lambda z: generated_images(model.ema_generator, z))
    for target, value in zip(model.ema_generator.non_trainable_variables, own):
        target.assign(value)
    print(json.dumps(results, indent=2))
    for name in ("average, own statistics", "average, live statistics", "live"):
        print(f"{name}: {evaluate.describe(results[name])}")


if __name__ == "__main__":
    main()
