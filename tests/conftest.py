"""Shared test helpers: small real image folders, tiny configs, and running main.py."""

from __future__ import annotations

import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(REPO, "main.py")

# Flags that keep a model tiny: 32x32 images, 4 filters, batch 4.
TINY_FLAGS = ["--output_height", "32", "--gf_dim", "4", "--df_dim", "4", "--batch_size", "4",
              "--z_dim", "8"]
# The run name TINY_FLAGS give on the "faces" dataset.
TINY_RUN = "faces_4_32_32_z8_gf4_df4"


def main_in(workdir, *args) -> int:
    """main.py's exit status for `args` on the "faces" dataset (in-process), every folder in `workdir`."""
    from dcgan_tf import cli

    folders = ["--data_dir", str(workdir / "data"), "--checkpoint_dir", str(workdir / "checkpoints"),
               "--sample_dir", str(workdir / "samples"), "--log_dir", str(workdir / "logs"),
               "--export_dir", str(workdir / "export")]
    return cli.execute(["main.py", "--dataset", "faces", *folders, *args])


def write_images(folder, count, size=(40, 40), mode="RGB", ext="png", seed=0):
    """Writes `count` random images of PIL `mode` into `folder`; returns their paths."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        channels = {"RGB": 3, "L": 1}[mode]
        arr = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
        img = Image.fromarray(arr[..., 0] if channels == 1 else arr, mode=mode)
        path = os.path.join(folder, f"img_{i:03d}.{ext}")
        img.save(path)
        paths.append(path)
    return paths


# The longest tests start first, so that with `-n 2` they do not end up as a tail on one core.
SLOW_FILES = ("test_crash_safety.py", "test_distribute.py", "test_simpsons_e2e.py")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.path.name not in SLOW_FILES)  # stable: the rest keep their order


@pytest.fixture
def workdir(tmp_path):
    """A folder laid out like a user's: data/faces with 8 small RGB images."""
    write_images(tmp_path / "data" / "faces", 8)
    return tmp_path


def tiny_config(workdir, **overrides):
    from dcgan_tf.config import RunConfig

    values = dict(data_dir=str(workdir / "data"), dataset="faces", output_height=32, gf_dim=4, df_dim=4,
                  batch_size=4, z_dim=8, epoch=1, seed=1, checkpoint_dir=str(workdir / "checkpoints"),
                  sample_dir=str(workdir / "samples"), log_dir=str(workdir / "logs"),
                  export_dir=str(workdir / "export"), sample_freq=2, ckpt_freq=2,
                  # float32 everywhere: --precision auto would pick mixed_bfloat16 on CPUs with AVX512_BF16.
                  precision="float32",
                  # No R1 (the default recipe's is adaptive, and off in runs this short anyway): its
                  # second-order graph would add tracing time to every test; R1's tests ask for it.
                  r1_gamma=0.0)
    values.update(overrides)
    return RunConfig.create(**values)


def signal_after_step(sig, step):
    """A callback that sends `sig` to this process once the model's step counter reaches `step`."""
    import keras

    class SignalAfterStep(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.step.numpy()) == step:
                os.kill(os.getpid(), sig)

    return SignalAfterStep()


def run_main(args, cwd, timeout=300, env=None):
    """Runs main.py in `cwd`; returns the CompletedProcess (text output)."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, MAIN, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def assert_one_line_error(proc, *fragments):
    """A user error: exit code 2, no traceback, one 'dcgan_tf: error:' line holding `fragments`."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr[-3000:]
    lines = [l for l in proc.stderr.splitlines() if l.startswith("dcgan_tf: error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def write_idx_images(path, count=8, size=28, seed=0, gz=True):
    """Writes an IDX3 uint8 image file (the MNIST format) of `count` random images; returns them."""
    import gzip
    import struct

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, size, size), dtype=np.uint8)
    payload = struct.pack(">IIII", 0x00000803, count, size, size) + images.tobytes()
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with (gzip.open if gz else open)(str(path), "wb") as f:
        f.write(payload)
    return images


def fid_weights_or_skip():
    """The FID network's weights file ($DCGAN_TF_FID_WEIGHTS, else ../shared/weights), or skip."""
    from dcgan_tf.quality import inception

    path = os.environ.get(inception.ENV_VAR) or os.path.join(REPO, "..", "shared", "weights",
                                                             inception.WEIGHTS_NAME)
    if not os.path.isfile(path):
        pytest.skip(f"FID weights not found (set {inception.ENV_VAR} to {inception.WEIGHTS_NAME})")
    return path
