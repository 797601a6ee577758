import json
import os
import subprocess
import sys

import numpy as np
import pytest

from PIL import Image

from dcgan_tf import runs
from dcgan_tf.data.images import make_grid
from dcgan_tf.model.latent import z_numpy
from dcgan_tf.use import export
from dcgan_tf.training import build
from tests.conftest import TINY_RUN, main_in, tiny_config

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
    path = export.export_generator(run.model.generator, run.config,
                                   runs.export_version_dir(run.config.export_dir, run.config.run, 0), step=0)
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
    assert path == os.path.join(str(workdir), "export", run.config.run, "0")
    meta = json.loads(open(os.path.join(path, runs.EXPORT_METADATA_FILE)).read())
    assert meta["z_dim"] == 8 and meta["z_dist"] == "uniform_signed" and meta["c_dim"] == 3
    assert meta["step"] == 0 and meta["weights"] == "average"
    # A killed export's partial folder (its process gone) is cleared by the next export of that version.
    os.makedirs(path + ".partial-999999999")
    again = export.export_generator(run.model.generator, run.config, path, step=0)  # the same version: replaced
    assert again == path and os.path.exists(os.path.join(path, "saved_model.pb"))
    assert sorted(os.listdir(os.path.dirname(path))) == [os.path.basename(path)]  # no .partial-*, .replaced


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
    assert export.to_tflite(path) == os.path.join(path, runs.TFLITE_FILE)


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
    keras_file = os.path.join(path, runs.EXPORT_KERAS_FILE)
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


def _usage_docs_line(start):
    """The one command line of docs/usage.md that starts with `start` (in a code block)."""
    with open(os.path.join(REPO, "docs", "usage.md"), encoding="utf-8") as f:
        found = [line.strip() for line in f if line.strip().startswith(start)]
    assert len(found) == 1, found
    return found[0]


def test_usage_docs_saved_model_cli_run_command_works(exported, tmp_path):
    """The usage docs' `saved_model_cli run` command, run as written (only --dir points at the tiny export)."""
    import shlex

    _, run, path = exported
    args = shlex.split(_usage_docs_line("saved_model_cli run "))
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


def test_tflite_through_litert_and_the_usage_docs_snippet(exported, tmp_path):
    """With ai-edge-litert installed: tflite_interpreter uses it, and the usage docs' TF Lite snippet
    runs in a fresh process without a deprecation warning."""
    pytest.importorskip("ai_edge_litert.interpreter")
    _, run, path = exported
    tflite = export.to_tflite(path)  # Where the usage docs' snippet looks: model.tflite in the export folder.
    interpreter = export.tflite_interpreter(tflite)
    assert type(interpreter).__module__.startswith("ai_edge_litert")
    z = np.random.default_rng(6).uniform(-1, 1, (2, 8)).astype("float32")
    _check_runner(interpreter.get_signature_runner("serving_default"), z,
                  np.asarray(run.model.generator(z, training=False)))

    with open(os.path.join(REPO, "docs", "usage.md"), encoding="utf-8") as f:
        usage = f.read()
    snippet = usage.split("<!-- tflite snippet -->")[1].split("```python")[1].split("```")[0]
    snippet = snippet.replace("export/simpsons_64_25_128_128/10000", path).replace("100)", "8)")
    proc = subprocess.run([sys.executable, "-W", "always", "-c", snippet + "\nprint(pixels.shape, pixels.dtype)"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "PYTHONPATH": "", "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "(16, 32, 32, 3) uint8"
    assert "deprecat" not in (proc.stdout + proc.stderr).lower(), proc.stderr[-3000:]


# ------------------------------------------------------------------------------------------------
# Versions: --export keeps one folder per checkpoint step (TensorFlow Serving's layout).




def _checkpoint_at(run, step, seed):
    """Moves G's live weights and, differently, their average, and checkpoints the run as step `step`."""
    import keras

    rng = np.random.default_rng(seed)
    for v in run.model.generator.trainable_variables + run.model.ema_generator.trainable_variables:
        v.assign(keras.ops.convert_to_numpy(v) + rng.normal(0, 0.2, v.shape).astype("float32"))
    run.model.step.assign(step)
    run.manager.save(checkpoint_number=step)


def _serve(path, z):
    import tensorflow as tf

    return tf.saved_model.load(str(path)).signatures["serving_default"](z=tf.constant(z))["images"].numpy()


def _images(generator, z):
    return np.asarray(generator(z, training=False))


def test_exports_of_each_step_and_of_the_live_weights_are_kept_apart(workdir, capsys):
    """--export writes export/<run>/<step>/, --live_weights export/<run>/live/<step>/; an export of a
    later step or of the other weights never replaces an earlier one, and --saved_model export/<run>
    takes the newest version."""
    config = tiny_config(workdir, c_dim=3)
    run = build.build_run(config)
    assert run.model.ema_generator is not None  # The simpsons preset keeps an average of G.
    config.save(config.run_checkpoint_dir)
    z = np.random.default_rng(1).uniform(-1, 1, (3, 8)).astype("float32")
    base = workdir / "export" / TINY_RUN

    _checkpoint_at(run, 2, seed=0)
    assert main_in(workdir, "--export") == 0
    assert f"exported the generator as a SavedModel to {base / '2'}" in capsys.readouterr().out
    step2 = _images(run.model.ema_generator, z)
    _checkpoint_at(run, 4, seed=1)
    assert main_in(workdir, "--export") == 0
    assert main_in(workdir, "--export", "--live_weights") == 0
    assert sorted(os.listdir(base)) == ["2", "4", "live"] and os.listdir(base / "live") == ["4"]
    np.testing.assert_allclose(_serve(base / "2", z), step2, atol=1e-5)
    np.testing.assert_allclose(_serve(base / "4", z), _images(run.model.ema_generator, z), atol=1e-5)
    np.testing.assert_allclose(_serve(base / "live" / "4", z), _images(run.model.generator, z), atol=1e-5)
    assert not np.allclose(_serve(base / "2", z), _serve(base / "4", z), atol=1e-3)
    assert not np.allclose(_serve(base / "4", z), _serve(base / "live" / "4", z), atol=1e-3)
    for folder, step, weights in (("2", 2, "average"), ("4", 4, "average"), ("live/4", 4, "live")):
        meta = json.loads((base / folder / runs.EXPORT_METADATA_FILE).read_text())
        assert (meta["step"], meta["weights"], meta["run_name"]) == (step, weights, TINY_RUN), folder
    capsys.readouterr()

    # The base folder means its newest version; pictures go where the checkpoint's own would.
    assert main_in(workdir, "--saved_model", str(base), "--generate", "2", "--grid", "--seed", "3") == 0
    out = capsys.readouterr().out
    assert f"--saved_model {base}: taking its newest version, 4 ({base / '4'})" in out
    assert f"drawing from {base / '4'}" in out
    grid = workdir / "samples" / TINY_RUN / "step4" / "generate_s3_n2.png"
    assert grid.exists()
    assert main_in(workdir, "--saved_model", str(base / "live"), "--generate", "1", "--seed", "3") == 0
    assert (workdir / "samples" / TINY_RUN / "step4" / "live" / "generate_s3" / "0000.png").exists()
    capsys.readouterr()
    assert main_in(workdir, "--saved_model", str(base / "2"), "--generate", "1", "--seed", "3") == 0
    assert "taking its newest version" not in capsys.readouterr().out
    assert (workdir / "samples" / TINY_RUN / "step2" / "generate_s3" / "0000.png").exists()
    # Test mode (no action) with --saved_model draws from that SavedModel, not the newest checkpoint.
    assert main_in(workdir, "--saved_model", str(base / "2"), "--seed", "5", "--batch_size", "9") == 0
    assert f"drawing from {base / '2'}" in capsys.readouterr().out
    [test_grid] = [n for n in os.listdir(workdir / "samples" / TINY_RUN) if n.startswith("test_")]
    z5 = z_numpy(9, config.z_dim, config.z_dist, seed=5)
    np.testing.assert_array_equal(np.asarray(Image.open(workdir / "samples" / TINY_RUN / test_grid)),
                                  make_grid(_serve(base / "2", z5)))

    # --tflite of the base folder converts its newest version, into that version's folder.
    assert main_in(workdir, "--saved_model", str(base), "--tflite") == 0
    assert f"wrote {base / '4' / runs.TFLITE_FILE}" in capsys.readouterr().out
    # --tflite alone exports the newest checkpoint again (the same version, replaced) and converts it.
    os.remove(base / "4" / runs.TFLITE_FILE)
    assert main_in(workdir, "--tflite", "--live_weights") == 0
    assert (base / "live" / "4" / runs.TFLITE_FILE).exists() and not (base / "4" / runs.TFLITE_FILE).exists()
    assert sorted(os.listdir(base)) == ["2", "4", "live"] and os.listdir(base / "live") == ["4"]


def test_exports_made_before_versions_still_load(workdir, capsys):
    """An export of the old layout (saved_model.pb in export/<run>/, no step in dcgan_tf.json) works
    as before, pictures in samples/<run>/; once versions are exported beside it, the newest of them
    is taken; a folder with neither is one line."""
    config = tiny_config(workdir, c_dim=3)
    run = build.build_run(config)
    config.save(config.run_checkpoint_dir)
    _checkpoint_at(run, 2, seed=0)
    base = workdir / "export" / TINY_RUN
    export.export_generator(run.model.ema_generator, config, str(base))
    meta_path = base / runs.EXPORT_METADATA_FILE
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({k: v for k, v in meta.items() if k not in ("step", "weights")}))

    assert main_in(workdir, "--saved_model", str(base), "--generate", "1", "--seed", "3") == 0
    out = capsys.readouterr().out
    assert "taking its newest version" not in out and f"drawing from {base} " in out
    assert sorted(os.listdir(workdir / "samples" / TINY_RUN)) == ["generate_s3"]

    assert main_in(workdir, "--export") == 0  # A version beside the old export, which stays.
    assert os.path.isfile(base / "saved_model.pb") and os.path.isfile(base / "2" / "saved_model.pb")
    assert main_in(workdir, "--saved_model", str(base), "--generate", "1", "--seed", "4") == 0
    assert "taking its newest version, 2" in capsys.readouterr().out
    assert (workdir / "samples" / TINY_RUN / "step2" / "generate_s4" / "0000.png").exists()

    (workdir / "empty" / "7.partial-4242").mkdir(parents=True)
    assert main_in(workdir, "--saved_model", str(workdir / "empty"), "--generate", "1") == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("dcgan_tf: error:")]
    assert len(errors) == 1 and "is not a SavedModel folder" in errors[0] and "version folder" in errors[0], errors


def test_version_folders(tmp_path):
    """runs.export_version_dir names them; runs.export_versions finds those that hold a SavedModel,
    not one being written (<N>.partial-<pid>), live/ or a numbered folder without saved_model.pb."""
    assert runs.export_version_dir("export", "r", 12) == os.path.join("export", "r", "12")
    assert runs.export_version_dir("export", "r", 12, live=True) == os.path.join("export", "r", "live", "12")
    for name in ("2", "10", "9", "11.partial-4242", "live", "7"):
        (tmp_path / name).mkdir()
        if name != "7":
            (tmp_path / name / "saved_model.pb").write_bytes(b"")
    assert runs.export_versions(str(tmp_path)) == [2, 9, 10]  # by number, not by name
    assert runs.export_versions(str(tmp_path / "missing")) == []
