"""--precision (Keras mixed precision) and --steps_per_execution."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from dcgan_tf import cli
from dcgan_tf import config as config_module
from dcgan_tf.use import export
from dcgan_tf.model import nets
from dcgan_tf.training import train
from dcgan_tf.training import build
from dcgan_tf.errors import RunWarning, UserError
from tests.conftest import TINY_FLAGS, tiny_config, write_images

MIXED = {"mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("precision")
    write_images(folder / "data" / "faces", 8)
    return folder


def _images(seed=0):
    return tf.constant(np.random.default_rng(seed).uniform(-1, 1, (4, 32, 32, 3)).astype("float32"))


@pytest.mark.parametrize("precision", sorted(MIXED))
def test_layers_compute_in_16_bits_with_float32_variables_and_no_policy_leaks(root, precision):
    generator, discriminator = nets.build_networks(tiny_config(root, c_dim=3, precision=precision))
    assert keras.config.dtype_policy().name == "float32"  # restored after building
    for net in (generator, discriminator):
        layers = [l for l in net._flatten_layers(include_self=False) if l.weights]
        assert layers and {l.dtype_policy.name for l in layers} == {precision}
        assert {l.compute_dtype for l in layers} == {MIXED[precision]}
        assert {v.dtype for v in net.weights} == {"float32"}


def test_the_policy_is_restored_when_building_fails():
    with pytest.raises(RuntimeError):
        with nets.dtype_policy("mixed_bfloat16"):
            assert keras.config.dtype_policy().name == "mixed_bfloat16"
            raise RuntimeError("boom")
    assert keras.config.dtype_policy().name == "float32"


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_a_train_step_gives_finite_float32_metrics_and_float32_images(root, precision):
    run = build.build_run(tiny_config(root, c_dim=3, precision=precision,
                                      checkpoint_dir=str(root / f"step_{precision}")))
    metrics = run.model.train_step(_images())  # eager: no tracing cost
    assert set(metrics) == {"d_loss", "d_loss_real", "d_loss_fake", "g_loss", "d_x", "d_g_z"}
    for name, value in metrics.items():
        assert value.dtype == tf.float32 and np.isfinite(value.numpy()), (name, value)
    assert run.model(run.sample_z).dtype == tf.float32
    assert {v.dtype for v in run.model.d_optimizer.variables + run.model.g_optimizer.variables} <= {
        "float32", "int64"}
    is_scaled = isinstance(run.model.d_optimizer, keras.optimizers.LossScaleOptimizer)
    assert is_scaled == isinstance(run.model.g_optimizer, keras.optimizers.LossScaleOptimizer)
    assert is_scaled == (precision == "mixed_float16")


def test_float16_loss_scale_is_checkpointed_and_restored(root):
    config = tiny_config(root, c_dim=3, precision="mixed_float16", checkpoint_dir=str(root / "scale"))
    run = build.build_run(config)
    run.model.train_step(_images())
    run.model.d_optimizer.dynamic_scale.assign(1024.0)
    run.model.g_optimizer.dynamic_scale.assign(256.0)
    run.manager.save(checkpoint_number=1)
    again = build.build_run(config)
    assert again.resumed_from.endswith("ckpt-1")
    assert float(again.model.d_optimizer.dynamic_scale.numpy()) == 1024.0
    assert float(again.model.g_optimizer.dynamic_scale.numpy()) == 256.0


def test_float32_and_bfloat16_checkpoints_are_interchangeable_but_float16_ones_are_not(root):
    saved_as = tiny_config(root, c_dim=3, precision="float32", checkpoint_dir=str(root / "switch"))
    first = build.build_run(saved_as)
    first.model.train_step(_images())
    first.manager.save(checkpoint_number=1)
    resumed = build.build_run(tiny_config(root, c_dim=3, precision="mixed_bfloat16",
                                          checkpoint_dir=str(root / "switch")))
    for a, b in zip(first.model.generator.weights, resumed.model.generator.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    saved = saved_as.to_dict()
    config_module.check_same_precision(tiny_config(root, precision="mixed_bfloat16"), saved, "f")
    with pytest.raises(UserError, match="made with --precision float32, not mixed_float16"):
        config_module.check_same_precision(tiny_config(root, precision="mixed_float16"), saved, "f")
    with pytest.raises(UserError, match="--precision mixed_float16 to continue"):
        config_module.check_same_precision(tiny_config(root, precision="float32"), {"precision": "mixed_float16"},
                                           "f")
    config_module.check_same_precision(tiny_config(root), {}, "f")  # configs saved before the option
    # An unsettled "auto" saved by an earlier --import_tf1 says nothing about the checkpoint.
    config_module.check_same_precision(tiny_config(root, precision="mixed_float16"), {"precision": "auto"}, "f")


def test_a_bfloat16_run_exports_a_float32_savedmodel(root, tmp_path):
    run = build.build_run(tiny_config(root, c_dim=3, precision="mixed_bfloat16",
                                      checkpoint_dir=str(root / "export")))
    path = export.export_generator(run.model.generator, run.config, str(tmp_path / "model"))
    out = tf.saved_model.load(path).signatures["serving_default"](z=run.sample_z[:3])
    assert out["images"].dtype == tf.float32 and out["pixels"].dtype == tf.uint8
    images = out["images"].numpy()
    assert images.shape == (3, 32, 32, 3) and np.all(np.abs(images) <= 1)
    # The same bfloat16 computation as the Keras generator (not a float32 copy of it).
    np.testing.assert_allclose(images, run.model(run.sample_z[:3]).numpy(), atol=1e-2)


@pytest.mark.parametrize("flags,fragment", [
    (["--precision", "bogus"], "--precision=bogus: value should be one of <auto|float32|mixed_bfloat16|mixed_float16>"),
    (["--steps_per_execution", "0"], "--steps_per_execution must be a positive whole number, got 0"),
    (["--steps_per_execution", "two"], "--steps_per_execution=two"),
    (["--steps_per_execution", "3"], "--sample_freq 100 is not a multiple of --steps_per_execution 3"),
])
def test_bad_flags_are_one_line_errors(tmp_path, monkeypatch, capsys, flags, fragment):
    monkeypatch.chdir(tmp_path)
    assert cli.execute(["main.py", "--train", *TINY_FLAGS, *flags]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("dcgan_tf: error:")]
    assert "Traceback" not in err and len(lines) == 1 and fragment in lines[0], err


def test_bad_values_are_refused_by_the_config(tmp_path):
    with pytest.raises(UserError, match="--precision must be one of"):
        tiny_config(tmp_path, precision="float64")
    with pytest.raises(UserError, match="--sample_freq 3 is not a multiple of --steps_per_execution 2"):
        tiny_config(tmp_path, steps_per_execution=2, sample_freq=3)
    with pytest.raises(UserError, match="--ckpt_freq 5 is not a multiple of --steps_per_execution 2"):
        tiny_config(tmp_path, steps_per_execution=2, sample_freq=2, ckpt_freq=5)


def test_an_epoch_must_be_whole_executions(root):
    # Keras runs whole executions across an epoch's end; 8 images in batches of 4 are 2 steps.
    config = tiny_config(root, steps_per_execution=4, sample_freq=4, ckpt_freq=4,
                         checkpoint_dir=str(root / "uneven"))
    with pytest.raises(UserError, match="does not divide the 2 steps of an epoch.*use one of 1, 2"):
        train.train(config, verbose=0)


def test_a_misaligned_resume_runs_fewer_steps_per_execution():
    class Model:
        steps_per_execution = 4

    model = Model()
    assert train.aligned_steps_per_execution(model, 0, 4) == 4
    assert train.aligned_steps_per_execution(model, 12, 4) == 4 and model.steps_per_execution == 4
    with pytest.warns(RunWarning, match="resumes at step 6, not a multiple of --steps_per_execution 4"):
        assert train.aligned_steps_per_execution(model, 6, 4) == 2
    assert model.steps_per_execution == 2


def _scalar_steps(log_dir):
    steps = {}
    for root, _, files in os.walk(log_dir):
        for name in files:
            for event in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
                for value in event.summary.value:
                    steps.setdefault(value.tag, []).append(event.step)
    return {tag: sorted(s) for tag, s in steps.items()}


def test_steps_per_execution_changes_nothing_but_speed(root):
    runs = {}
    for n in (1, 2):
        config = tiny_config(root, epoch=3, steps_per_execution=n, sample_freq=2, ckpt_freq=4,
                             checkpoint_dir=str(root / f"spe{n}" / "ckpt"), sample_dir=str(root / f"spe{n}" / "s"),
                             log_dir=str(root / f"spe{n}" / "logs"))
        result = train.train(config, verbose=0)
        csv = (root / f"spe{n}" / "ckpt" / config.run / "metrics.csv").read_text().splitlines()
        runs[n] = dict(
            result=result, grids=sorted(os.listdir(config.run_sample_dir)),
            ckpts=sorted(f for f in os.listdir(config.run_checkpoint_dir) if f.endswith(".index")),
            rows=[line.split(",")[:2] for line in csv], values=np.array([line.split(",")[2:] for line in csv[1:]], float),
            scalars=_scalar_steps(config.run_log_dir))
    one, two = runs[1], runs[2]
    assert two["grids"] == one["grids"] == ["train_00_0002.png", "train_01_0004.png", "train_02_0006.png"]
    assert two["ckpts"] == one["ckpts"] == ["ckpt-4.index", "ckpt-6.index"]
    assert two["rows"] == one["rows"] == [["epoch", "step"], ["0", "2"], ["1", "4"], ["2", "6"]]
    np.testing.assert_allclose(two["values"], one["values"], rtol=1e-5)
    assert two["scalars"] == one["scalars"] and one["scalars"]["loss/d_loss"] == [1, 2, 3, 4, 5, 6]
    assert one["scalars"]["samples/G"] == [2, 4, 6] and one["scalars"]["z"] == [2, 4, 6]
    for model in (one["result"].run.model, two["result"].run.model):
        assert int(model.step.numpy()) == 6 and int(model.epoch.numpy()) == 3
    for a, b in zip(one["result"].run.model.weights, two["result"].run.model.weights):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), rtol=1e-5,
                                   atol=1e-7)


def test_xla_compiles_the_updates_and_the_step_keeps_its_values_for_summaries(root, tmp_path):
    # XLA compiles the updates; the step around them keeps its values, which the callback writes.
    from dcgan_tf.training.summaries import Summaries

    writer = tf.summary.create_file_writer(str(tmp_path / "logs"))
    run = build.build_run(tiny_config(root, c_dim=3, precision="mixed_bfloat16", jit_compile=True, g_steps=1,
                                      checkpoint_dir=str(root / "xla")))
    summaries = Summaries(writer, histogram_every=1)
    summaries.set_model(run.model)
    summaries.on_train_begin()
    metrics = tf.function(run.model.train_step)(_images())
    summaries.on_train_batch_end(0)
    summaries.on_train_end()
    writer.flush()
    assert all(np.isfinite(v.numpy()) for v in metrics.values()) and int(run.model.step.numpy()) == 1
    assert _scalar_steps(str(tmp_path / "logs"))["loss/d_loss"] == [1]
