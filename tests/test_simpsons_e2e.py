"""The real thing: the 100 Simpsons frames through main.py at the original's widths.

Needs DCGAN_TF_SIMPSONS pointing at the images (.ci/run sets it to ../shared/data/simpsons_64).
"""

import os

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_main

SIMPSONS = os.environ.get("DCGAN_TF_SIMPSONS", "")


@pytest.mark.skipif(not os.path.isdir(SIMPSONS), reason="DCGAN_TF_SIMPSONS does not point at the images")
def test_simpsons_train_checkpoint_samples_events_export(tmp_path):
    os.makedirs(tmp_path / "data")
    os.symlink(os.path.abspath(SIMPSONS), tmp_path / "data" / "Simpsons_64")
    # Full widths, batch 25 and z 100 as the original; 64x64 output keeps the test affordable on a CPU.
    proc = run_main(["--train", "--crop", "--dataset", "simpsons_64", "--output_height", "64", "--epoch", "1",
                     "--sample_freq", "2", "--ckpt_freq", "2", "--export", "--seed", "3"], cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "100 images from data/Simpsons_64 at 64x64x3" in proc.stdout
    run = "Simpsons_64_25_64_64"
    ckpts = sorted(f for f in os.listdir(tmp_path / "checkpoints" / run) if f.endswith(".index"))
    assert ckpts == ["ckpt-2.index", "ckpt-4.index"]
    samples = sorted(os.listdir(tmp_path / "samples" / run))
    assert samples == ["train_00_0002.png", "train_00_0004.png"]
    grid = np.asarray(Image.open(tmp_path / "samples" / run / samples[-1]))
    assert grid.shape == (5 * 64, 5 * 64, 3) and grid.std() > 0  # 25 samples as a 5x5 grid
    events = os.listdir(tmp_path / "logs" / run)
    assert any(e.startswith("events.out.tfevents") for e in events)

    import tensorflow as tf

    model = tf.saved_model.load(str(tmp_path / "export" / run / "4"))  # the version of step 4
    out = model.signatures["serving_default"](z=tf.random.uniform([2, 100], -1, 1))
    assert out["images"].shape == (2, 64, 64, 3)
    assert out["pixels"].dtype == tf.uint8
