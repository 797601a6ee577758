import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dcgan_tf.use import export
from dcgan_tf.training import train
from tests.conftest import tiny_config

LOADER = r"""
import json, sys
import numpy as np
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
z = np.load(sys.argv[2])
out = model.signatures["serving_default"](z=tf.constant(z))
np.save(sys.argv[3], out["images"].numpy())
np.save(sys.argv[4], out["pixels"].numpy())
print(json.dumps({"dcgan_tf_imported": any(m.startswith("dcgan_tf") for m in sys.modules)}))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from tests.conftest import write_images

    workdir = tmp_path_factory.mktemp("export")
    write_images(workdir / "data" / "faces", 8)
    run = train.build_run(tiny_config(workdir, c_dim=3))
    # Move batch-norm statistics off their initial values, so inference mode is really exercised.
    run.model.generator(np.random.default_rng(0).uniform(-1, 1, (16, 8)).astype("float32"), training=True)
    path = export.export_generator(run.model.generator, run.config, run.config.run_export_dir)
    return workdir, run, path


def test_savedmodel_matches_the_generator_in_a_process_without_the_package(exported, tmp_path):
    workdir, run, path = exported
    z = np.random.default_rng(5).uniform(-1, 1, (3, 8)).astype("float32")
    np.save(tmp_path / "z.npy", z)
    script = tmp_path / "load.py"
    script.write_text(LOADER)
    proc = subprocess.run(
        [sys.executable, str(script), path, str(tmp_path / "z.npy"), str(tmp_path / "img.npy"),
         str(tmp_path / "px.npy")],
        cwd=tmp_path, capture_output=True, text=True, timeout=240,
        env={**os.environ, "PYTHONPATH": "", "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"dcgan_tf_imported": False}
    images = np.load(tmp_path / "img.npy")
    expected = np.asarray(run.model.generator(z, training=False))
    assert images.shape == (3, 32, 32, 3)
    np.testing.assert_allclose(images, expected, atol=1e-5)
    pixels = np.load(tmp_path / "px.npy")
    assert pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, np.clip(np.round((expected + 1) * 127.5), 0, 255).astype(np.uint8))


def test_savedmodel_works_with_saved_model_cli(exported, tmp_path):
    _, _, path = exported
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    proc = subprocess.run([cli, "show", "--dir", path, "--tag_set", "serve", "--signature_def", "serving_default"],
                          capture_output=True, text=True, timeout=240, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "inputs['z']" in proc.stdout and "(-1, 8)" in proc.stdout
    assert "outputs['images']" in proc.stdout and "(-1, 32, 32, 3)" in proc.stdout
    np.save(tmp_path / "z.npy", np.zeros((2, 8), "float32"))
    proc = subprocess.run([cli, "run", "--dir", path, "--tag_set", "serve", "--signature_def", "serving_default",
                           "--inputs", f"z={tmp_path / 'z.npy'}", "--outdir", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=240, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert np.load(tmp_path / "out" / "images.npy").shape == (2, 32, 32, 3)


def test_export_metadata_and_replacement(exported):
    workdir, run, path = exported
    meta = json.loads(open(os.path.join(path, export.METADATA_FILE)).read())
    assert meta["z_dim"] == 8 and meta["z_dist"] == "uniform_signed" and meta["c_dim"] == 3
    again = export.export_generator(run.model.generator, run.config, path)  # replaces in place
    assert again == path and os.path.exists(os.path.join(path, "saved_model.pb"))
    assert not os.path.exists(path + ".partial")


def test_savedmodel_serves_through_keras_tfsmlayer_and_tflite(exported, tmp_path):
    import warnings

    import keras
    import tensorflow as tf

    _, run, path = exported
    z = np.random.default_rng(9).uniform(-1, 1, (2, 8)).astype("float32")
    expected = np.asarray(run.model.generator(z, training=False))

    layer = keras.layers.TFSMLayer(path, call_endpoint="serving_default")
    outputs = layer(z)
    np.testing.assert_allclose(np.asarray(outputs["images"]), expected, atol=1e-5)
    assert np.asarray(outputs["pixels"]).dtype == np.uint8

    tflite = export.to_tflite(path, str(tmp_path / "model.tflite"))
    with warnings.catch_warnings():  # tf.lite.Interpreter announces its move to ai_edge_litert.
        warnings.simplefilter("ignore", UserWarning)
        runner = tf.lite.Interpreter(model_path=tflite).get_signature_runner("serving_default")
    result = runner(z=z)
    assert result["images"].shape == (2, 32, 32, 3)
    np.testing.assert_allclose(result["images"], expected, atol=1e-4)
    np.testing.assert_array_equal(result["pixels"], np.clip(np.round((result["images"] + 1) * 127.5), 0, 255))
    one = runner(z=z[:1])  # the batch size is free
    np.testing.assert_allclose(one["images"], expected[:1], atol=1e-4)
    # Default place: next to the SavedModel's own files.
    assert export.to_tflite(path) == os.path.join(path, export.TFLITE_FILE)
