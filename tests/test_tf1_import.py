"""Import of checkpoints written by the original TF1 program, tested on one this test writes itself
with tf.compat.v1 variables under the original's names, at tiny sizes."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from dcgan_tf.training import build, precision
from dcgan_tf.data.pipeline import to_pixels
from dcgan_tf.errors import UserError
from dcgan_tf.model.latent import z_numpy
from dcgan_tf.use.tf1_import import import_tf1_checkpoint
from tests.conftest import TINY_FLAGS, run_main, tiny_config

Z, GF, DF, C = 8, 4, 4, 3  # Output 32: the dense layer feeds a 1x1 map.


def tf1_shapes(z=Z, gf=GF, df=DF, c=C, cells=1):
    """The original's variables and shapes (REFERENCE.md) for these sizes."""
    shapes = {"generator/g_h0_lin/Matrix": [z, cells * gf * 16], "generator/g_h0_lin/bias": [cells * gf * 16]}
    channels = [gf * 16, gf * 8, gf * 4, gf * 2, gf, c]
    for i in range(5):
        for name in ("beta", "gamma", "moving_mean", "moving_variance"):
            shapes[f"generator/g_bn{i}/{name}"] = [channels[i]]
        shapes[f"generator/g_h{i + 1}/w"] = [5, 5, channels[i + 1], channels[i]]  # [k, k, out, in]
        shapes[f"generator/g_h{i + 1}/biases"] = [channels[i + 1]]
    d_channels = [c, df, df * 2, df * 4, df * 8, df * 16]
    for i in range(5):
        shapes[f"discriminator/d_h{i}_conv/w"] = [5, 5, d_channels[i], d_channels[i + 1]]
        shapes[f"discriminator/d_h{i}_conv/biases"] = [d_channels[i + 1]]
        if i:
            for name in ("beta", "gamma", "moving_mean", "moving_variance"):
                shapes[f"discriminator/d_bn{i}/{name}"] = [d_channels[i + 1]]
    shapes["discriminator/d_h5_lin/Matrix"] = [cells * df * 16, 1]
    shapes["discriminator/d_h5_lin/bias"] = [1]
    return shapes


def write_tf1_checkpoint(prefix, shapes, seed=0):
    """Writes a TF1-format checkpoint the way the original program did (graph mode, tf.train.Saver)."""
    rng = np.random.default_rng(seed)
    values = {}
    for name, shape in shapes.items():
        if name.endswith("moving_variance"):
            values[name] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        else:
            values[name] = rng.normal(0, 0.3, shape).astype(np.float32)
    with tf.Graph().as_default():
        for name, value in values.items():
            tf.compat.v1.get_variable(name, initializer=value)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saved = tf.compat.v1.train.Saver().save(sess, prefix)
    return saved, values


@pytest.fixture(scope="module")
def tf1_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tf1") / "checkpoint" / "faces_4_32_32_z8_gf4_df4"
    os.makedirs(folder)
    return write_tf1_checkpoint(str(folder / "DCGAN.model-1234"), tf1_shapes())


def _config(root, **overrides):
    return tiny_config(root, **{"c_dim": 0, **overrides})


def test_every_variable_is_copied_exactly_and_saved_as_a_checkpoint(tf1_checkpoint, tmp_path):
    prefix, values = tf1_checkpoint
    saved = import_tf1_checkpoint(os.path.dirname(prefix), _config(tmp_path, precision="auto"))  # folder works too
    assert saved.endswith("ckpt-1234")  # the original kept its step in the file name
    with open(os.path.join(os.path.dirname(saved), "config.json")) as f:  # the concrete precision, not "auto"
        assert json.load(f)["precision"] == precision.machine_choice().policy
    run = build.load_trained(_config(tmp_path))  # what test mode and --generate do
    assert run.config.c_dim == 3 and int(run.model.step.numpy()) == 1234
    run = build.build_run(run.config)  # what --train resumes from: D too
    g, d = run.model.generator, run.model.discriminator
    keras_values = {v.path: np.asarray(v.numpy()) for v in g.weights + d.weights}
    names = {"Matrix": "kernel", "w": "kernel", "biases": "bias"}
    for name, value in values.items():
        scope, layer, variable = name.split("/")
        np.testing.assert_array_equal(keras_values[f"{scope}/{layer}/{names.get(variable, variable)}"], value,
                                      err_msg=name)
    assert len(values) == len(keras_values) == 60  # REFERENCE.md's count; no model weight left out


def test_imported_generator_computes_what_the_tf1_weights_define(tf1_checkpoint, tmp_path):
    prefix, v = tf1_checkpoint
    import_tf1_checkpoint(prefix, _config(tmp_path))
    run = build.build_run(build.load_trained(_config(tmp_path)).config)  # G and D
    g, d = run.model.generator, run.model.discriminator
    z = z_numpy(3, Z, "uniform_signed", seed=0)

    # The first layer by hand: dense, batch norm with the moving averages (epsilon 1e-5), ReLU.
    bn = lambda x, s: (v[f"{s}/gamma"] * (x - v[f"{s}/moving_mean"]) / np.sqrt(v[f"{s}/moving_variance"] + 1e-5)
                       + v[f"{s}/beta"])
    h0 = np.maximum(bn(z @ v["generator/g_h0_lin/Matrix"] + v["generator/g_h0_lin/bias"], "generator/g_bn0"), 0)
    keras_h0 = np.maximum(g.g_bn0(g.reshape(g.g_h0_lin(z)), training=False), 0)
    np.testing.assert_allclose(keras_h0.reshape(3, -1), h0, rtol=1e-5, atol=1e-5)

    # The whole generator with the TF1 ops the original used (conv2d_transpose with [k, k, out, in]).
    x = tf.reshape(h0.astype(np.float32), [3, 1, 1, GF * 16])
    for i in range(1, 6):
        w = v[f"generator/g_h{i}/w"]
        size = 2 ** i
        x = tf.nn.conv2d_transpose(x, w, [3, size, size, w.shape[2]], strides=2, padding="SAME")
        x = x + v[f"generator/g_h{i}/biases"]
        x = tf.nn.relu(bn(x, f"generator/g_bn{i}")) if i < 5 else tf.tanh(x)
    images = g(z, training=False)
    np.testing.assert_allclose(images, x, rtol=1e-4, atol=1e-5)

    # And the discriminator: conv2d, LeakyReLU 0.2, batch norm on all but the first, dense.
    y = images
    for i in range(5):
        y = tf.nn.conv2d(y, v[f"discriminator/d_h{i}_conv/w"], strides=2, padding="SAME")
        y = y + v[f"discriminator/d_h{i}_conv/biases"]
        y = tf.nn.leaky_relu(bn(y, f"discriminator/d_bn{i}") if i else y, 0.2)
    logits = tf.reshape(y, [3, -1]) @ v["discriminator/d_h5_lin/Matrix"] + v["discriminator/d_h5_lin/bias"]
    np.testing.assert_allclose(d(images, training=False), logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("overrides,fragments", [
    (dict(gf_dim=8), ["generator/g_h5/w has shape [5, 5, 3, 4] but this model's is [5, 5, 3, 8]",
                      "use --gf_dim 4"]),
    (dict(z_dim=16), ["generator/g_h0_lin/Matrix has shape [8, 64] but this model's is [16, 64]",
                      "use --z_dim 8"]),
    (dict(df_dim=2), ["discriminator/d_h0_conv/w has shape [5, 5, 3, 4] but this model's is [5, 5, 3, 2]",
                      "use --df_dim 4"]),
    (dict(c_dim=1), ["generator/g_h5/w has shape [5, 5, 3, 4] but this model's is [5, 5, 1, 4]",
                     "use --c_dim 3"]),
    (dict(output_height=64), ["generator/g_h0_lin/Matrix has shape [8, 64] but this model's is [8, 256]",
                              "--output_height/--output_width", "--output_height 32"]),
])
def test_shape_mismatch_names_variable_shapes_and_flag(tf1_checkpoint, tmp_path, overrides, fragments):
    with pytest.raises(UserError) as info:
        import_tf1_checkpoint(tf1_checkpoint[0], _config(tmp_path, **overrides))
    for fragment in fragments:
        assert fragment in str(info.value)
    assert tf.train.latest_checkpoint(_config(tmp_path).run_checkpoint_dir) is None  # nothing saved


def test_foreign_or_missing_checkpoints_and_existing_runs_are_refused(tf1_checkpoint, tmp_path):
    shapes = tf1_shapes()
    del shapes["generator/g_bn2/gamma"]
    prefix, _ = write_tf1_checkpoint(str(tmp_path / "other" / "model-7"), shapes)
    with pytest.raises(UserError, match="no variable generator/g_bn2/gamma, so it is not a checkpoint"):
        import_tf1_checkpoint(prefix, _config(tmp_path))
    with pytest.raises(UserError, match="no such checkpoint"):
        import_tf1_checkpoint(str(tmp_path / "nowhere" / "DCGAN.model-1"), _config(tmp_path))
    import_tf1_checkpoint(tf1_checkpoint[0], _config(tmp_path))
    with pytest.raises(UserError, match="already holds checkpoints"):
        import_tf1_checkpoint(tf1_checkpoint[0], _config(tmp_path))
    # A run that a --train holds (starting afresh, no checkpoint yet) is not imported into.
    from dcgan_tf.training.runlock import RunLock

    held = _config(tmp_path / "held")
    with RunLock(held.run_checkpoint_dir, held.run):
        with pytest.raises(UserError, match="is being trained by"):
            import_tf1_checkpoint(tf1_checkpoint[0], held)
    assert tf.train.latest_checkpoint(held.run_checkpoint_dir) is None


def test_import_then_generate_interpolate_and_visualize_through_main(tf1_checkpoint, tmp_path):
    prefix, _ = tf1_checkpoint
    proc = run_main(["--import_tf1", prefix, "--dataset", "faces", *TINY_FLAGS, "--generate", "2", "--seed", "3",
                     "--interpolate", "3", "--interpolate_steps", "2", "--visualize", "1",
                     "--visualize_dims", "2"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ckpt-1234" in proc.stdout
    samples = tmp_path / "samples" / "faces_4_32_32_z8_gf4_df4" / "step1234"  # The imported checkpoint's step.
    assert sorted(os.listdir(samples)) == ["generate_s3", "interpolate_s3_k3.gif", "interpolate_s3_k3_strip.png",
                                           "test_arange_0.png", "test_arange_1.png"]
    run = build.load_trained(dataclasses.replace(_config(tmp_path), checkpoint_dir=str(tmp_path / "checkpoints")))
    expected = to_pixels(run.model.generator(z_numpy(2, Z, "uniform_signed", seed=3), training=False))
    for i in range(2):
        np.testing.assert_array_equal(np.asarray(Image.open(samples / "generate_s3" / f"{i:04d}.png")), expected[i])
    assert Image.open(samples / "interpolate_s3_k3.gif").n_frames == 6
    assert Image.open(samples / "interpolate_s3_k3_strip.png").size == (3 * 32, 2 * 32)
