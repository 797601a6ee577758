import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dcgan_tf.use import export
from dcgan_tf.training import build
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
    run = build.build_run(tiny_config(workdir, c_dim=3))
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


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

KERAS_LOADER = r"""
import sys
import numpy as np
{imports}
model = keras.saving.load_model(sys.argv[1], safe_mode=True)
z = np.load(sys.argv[2])
np.save(sys.argv[3], np.asarray(model(z, training=False), dtype="float32"))
print(type(model).__module__ + "." + type(model).__name__)
"""


@pytest.mark.parametrize("imports", ["import dcgan_tf\nimport keras", "import keras\nimport dcgan_tf"],
                         ids=["dcgan_tf_first", "keras_first"])
def test_keras_file_round_trip_in_a_fresh_process(exported, tmp_path, imports):
    """generator.keras beside the SavedModel loads with keras.saving.load_model (safe mode) in a new
    process once dcgan_tf is imported, before or after Keras, and makes the same images."""
    _, run, path = exported
    keras_file = os.path.join(path, export.KERAS_FILE)
    assert os.path.isfile(keras_file)
    z = np.random.default_rng(11).uniform(-1, 1, (3, 8)).astype("float32")
    np.save(tmp_path / "z.npy", z)
    script = tmp_path / "load_keras.py"
    script.write_text(KERAS_LOADER.format(imports=imports))
    proc = subprocess.run([sys.executable, str(script), keras_file, str(tmp_path / "z.npy"), str(tmp_path / "out.npy")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == type(run.model.generator).__module__ + ".Generator"
    expected = np.asarray(run.model.generator(z, training=False))
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-6)


def _readme_line(start):
    """The one command line of README.md that starts with `start` (in a code block)."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        found = [line.strip() for line in f if line.strip().startswith(start)]
    assert len(found) == 1, found
    return found[0]


def test_readme_saved_model_cli_run_command_works(exported, tmp_path):
    """The README's `saved_model_cli run` command, run as written (only --dir points at the tiny export)."""
    import shlex

    _, run, path = exported
    args = shlex.split(_readme_line("saved_model_cli run "))
    args[args.index("--dir") + 1] = path
    inputs = args[args.index("--inputs") + 1]
    assert inputs.startswith("z=") and inputs.endswith(".npy"), inputs
    z = np.random.default_rng(3).uniform(-1, 1, (4, 8)).astype("float32")
    np.save(tmp_path / inputs[2:], z)
    args[0] = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    outdir = tmp_path / args[args.index("--outdir") + 1]
    images, pixels = np.load(outdir / "images.npy"), np.load(outdir / "pixels.npy")
    np.testing.assert_allclose(images, np.asarray(run.model.generator(z, training=False)), atol=1e-5)
    assert pixels.dtype == np.uint8 and pixels.shape == (4, 32, 32, 3)


def _check_runner(runner, z, expected):
    result = runner(z=z)
    np.testing.assert_allclose(result["images"], expected, atol=1e-4)
    assert result["pixels"].dtype == np.uint8


def test_tflite_interpreter_falls_back_to_tensorflow_without_a_warning(exported, tmp_path, monkeypatch):
    import warnings

    _, run, path = exported
    tflite = export.to_tflite(path, str(tmp_path / "model.tflite"))
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # As if LiteRT were not installed.
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        interpreter = export.tflite_interpreter(tflite)
    assert [str(w.message) for w in caught if "deprecat" in str(w.message).lower()] == []
    assert type(interpreter).__module__.startswith("tensorflow.")
    z = np.random.default_rng(4).uniform(-1, 1, (2, 8)).astype("float32")
    _check_runner(interpreter.get_signature_runner("serving_default"), z,
                  np.asarray(run.model.generator(z, training=False)))


def test_tflite_through_litert_and_the_readme_snippet(exported, tmp_path):
    """With ai-edge-litert installed: tflite_interpreter uses it, and the README's TF Lite snippet
    runs in a fresh process without a deprecation warning."""
    pytest.importorskip("ai_edge_litert.interpreter")
    _, run, path = exported
    tflite = export.to_tflite(path)  # Where the README's snippet looks: model.tflite in the export folder.
    interpreter = export.tflite_interpreter(tflite)
    assert type(interpreter).__module__.startswith("ai_edge_litert")
    z = np.random.default_rng(6).uniform(-1, 1, (2, 8)).astype("float32")
    _check_runner(interpreter.get_signature_runner("serving_default"), z,
                  np.asarray(run.model.generator(z, training=False)))

    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    snippet = readme.split("<!-- tflite snippet -->")[1].split("```python")[1].split("```")[0]
    snippet = snippet.replace("export/simpsons_64_25_128_128", path).replace("100)", "8)")
    proc = subprocess.run([sys.executable, "-W", "always", "-c", snippet + "\nprint(pixels.shape, pixels.dtype)"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "PYTHONPATH": "", "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "(16, 32, 32, 3) uint8"
    assert "deprecat" not in (proc.stdout + proc.stderr).lower(), proc.stderr[-3000:]
