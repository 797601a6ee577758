"""The moving average of G's weights (dcgan_tf/model/ema.py): its maths, the train step, checkpoints, and
the actions that use it by default."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from dcgan_tf import cli
from dcgan_tf.model import ema
from dcgan_tf.training import train
from dcgan_tf.training import build
from dcgan_tf.model import latent
from tests.conftest import TINY_FLAGS, tiny_config


def _numpy(variables):
    return [keras.ops.convert_to_numpy(v).copy() for v in variables]


@pytest.mark.parametrize("step,expected", [(0, 0.1), (8, 0.5), (90, 0.91), (990, 0.991), (10**6, 0.999)])
def test_rampup_one_ninth_is_tensorflow_s_num_updates_rule(step, expected):
    assert float(ema.decay_at(step, 0.999, 1 / 9)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("step,window", [(0, 1.05), (999, 51), (9999, 501), (19979, 1000), (10**6, 1000)])
def test_default_rampup_grows_the_window_by_one_step_in_twenty(step, window):
    # StyleGAN2-ADA's 0.05: the window is 1 + 0.05 (1 + step) steps, reaching decay 0.999's 1000 at 19979.
    assert 1 / (1 - float(ema.decay_at(step, 0.999))) == pytest.approx(window, rel=1e-4)


@pytest.mark.parametrize("rampup,step,window", [(1 / 3, 0, 4 / 3), (1 / 3, 299, 101), (1.0, 99, 101), (1 / 9, 989, 111)])
def test_rampup_sets_how_fast_the_window_grows(rampup, step, window):
    # The window 1 / (1 - decay) is 1 + rampup * (1 + step) steps, until the asked decay's.
    assert 1 / (1 - float(ema.decay_at(step, 0.999, rampup))) == pytest.approx(window, rel=1e-4)
    assert float(ema.decay_at(10**6, 0.999, rampup)) == pytest.approx(0.999)


def test_decay_never_exceeds_the_asked_one():
    assert float(ema.decay_at(5000, 0.9)) == pytest.approx(0.9)


def test_move_towards_is_the_exponential_average():
    average, value = tf.Variable([1.0, -2.0, 4.0]), tf.Variable([3.0, 2.0, 4.0])
    ema.move_towards([average], [value], 0.75)
    np.testing.assert_allclose(average.numpy(), 0.75 * np.array([1.0, -2.0, 4.0]) + 0.25 * np.array([3.0, 2.0, 4.0]))


# decay_at(0): with --ema_rampup 1/9 the first update moves 90% of the way, with --ema_rampup 1 half.
@pytest.mark.parametrize("rampup,decay", [(1 / 9, 0.1), (1.0, 0.5)])
def test_train_step_averages_g_weights_and_tracks_the_average_s_own_batch_norm_statistics(workdir, rampup, decay):
    run = build.build_run(tiny_config(workdir, c_dim=3, ema_decay=0.999, ema_rampup=rampup))
    model = run.model
    start = _numpy(model.generator.trainable_variables)
    # At the start the average is G itself.
    for a, b in zip(_numpy(model.ema_generator.weights), _numpy(model.generator.weights)):
        np.testing.assert_array_equal(a, b)
    images = tf.random.uniform((4, 32, 32, 3), -1, 1, seed=1)
    model.train_step(images)
    after = _numpy(model.generator.trainable_variables)
    averaged = _numpy(model.ema_generator.trainable_variables)
    for w0, w1, avg in zip(start, after, averaged):
        np.testing.assert_allclose(avg, decay * w0 + (1 - decay) * w1, rtol=1e-5, atol=1e-7)
    assert any(not np.allclose(w0, w1) for w0, w1 in zip(start, after))
    # Batch norm's moving statistics: not averaged from G's, but updated by the average's own forward pass.
    ema_stats = _numpy(model.ema_generator.non_trainable_variables)
    live_stats = _numpy(model.generator.non_trainable_variables)
    assert any(not np.allclose(a, b) for a, b in zip(ema_stats, live_stats))
    initial_bn = build.build_run(tiny_config(workdir, c_dim=3, ema_decay=0.999, checkpoint_dir=str(workdir / "x")))
    assert any(not np.allclose(a, b) for a, b in
               zip(ema_stats, _numpy(initial_bn.model.ema_generator.non_trainable_variables)))


def test_ema_off_keeps_no_second_generator(workdir):
    model = build.build_run(tiny_config(workdir, c_dim=3, ema_decay=0.0)).model
    assert model.ema_generator is None and model.sampler() is model.generator
    assert (model.sampler_weights(), model.sampler_weights(live=True)) == ("generator", "live")


def test_checkpoint_round_trip_keeps_the_average_and_sampling_uses_it(workdir):
    result = train.train(tiny_config(workdir, epoch=2), verbose=0)
    saved_average = _numpy(result.run.model.ema_generator.weights)
    saved_live = _numpy(result.run.model.generator.weights)
    run = build.load_trained(tiny_config(workdir))
    assert run.model.sampler() is run.model.ema_generator
    for a, b in zip(_numpy(run.model.ema_generator.weights), saved_average):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(_numpy(run.model.generator.weights), saved_live):
        np.testing.assert_array_equal(a, b)
    assert any(not np.allclose(a, b) for a, b in zip(saved_average, saved_live))
    assert run.model.sampler(live=True) is run.model.generator
    assert (run.model.sampler_weights(), run.model.sampler_weights(live=True)) == ("average", "live")


def test_checkpoint_without_an_average_loads_and_the_average_starts_from_g(workdir):
    """A run trained without the average (or before it existed) resumes with it: it starts as G."""
    train.train(tiny_config(workdir, epoch=1, ema_decay=0.0), verbose=0)
    run = build.build_run(tiny_config(workdir, c_dim=3, ema_decay=0.999))
    assert run.resumed_from.endswith("ckpt-2") and int(run.model.step.numpy()) == 2
    for a, b in zip(_numpy(run.model.ema_generator.weights), _numpy(run.model.generator.weights)):
        np.testing.assert_array_equal(a, b)
    # Its config.json has no average: using it by name builds none.
    again = build.load_trained(tiny_config(workdir))
    assert again.model.ema_generator is None


def _images_of(generator, z):
    return keras.ops.convert_to_numpy(generator(z, training=False))


def test_grids_test_mode_and_export_use_the_average_unless_live_weights(workdir, monkeypatch):
    result = train.train(tiny_config(workdir, epoch=1), verbose=0)
    model, sample_z = result.run.model, result.run.sample_z
    from PIL import Image
    from dcgan_tf.data.images import make_grid

    grid = np.asarray(Image.open(result.samples[-1]))
    np.testing.assert_array_equal(grid, make_grid(_images_of(model.ema_generator, sample_z)))
    assert not np.array_equal(grid, make_grid(_images_of(model.generator, sample_z)))

    monkeypatch.chdir(workdir)
    common = ["main.py", "--dataset", "faces", *TINY_FLAGS]
    # Test mode's grid: the average's images of z drawn with --seed.
    assert cli.execute(common + ["--seed", "5"]) == 0
    [test_grid] = [name for name in os.listdir(workdir / "samples" / "faces_4_32_32_z8_gf4_df4") if name.startswith("test_")]
    test_z = latent.z_numpy(4, 8, "uniform_signed", seed=5)  # as --visualize 0 draws it
    np.testing.assert_array_equal(np.asarray(Image.open(workdir / "samples" / "faces_4_32_32_z8_gf4_df4" / test_grid)),
                                  make_grid(_images_of(model.ema_generator, test_z)))
    # --generate (and --visualize, --interpolate, --eval, which load the same source) likewise.
    assert cli.execute(common + ["--generate", "2", "--grid", "--seed", "3"]) == 0
    samples = workdir / "samples" / "faces_4_32_32_z8_gf4_df4" / f"step{int(model.step.numpy())}"
    generated = np.asarray(Image.open(samples / "generate_s3_n2.png"))
    np.testing.assert_array_equal(generated, make_grid(_images_of(model.ema_generator,
                                                                  latent.z_numpy(2, 8, "uniform_signed", seed=3))))
    # The live weights' grid of the same seed goes into live/ and leaves the average's in place.
    assert cli.execute(common + ["--generate", "2", "--grid", "--seed", "3", "--live_weights"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(samples / "generate_s3_n2.png")), generated)
    np.testing.assert_array_equal(np.asarray(Image.open(samples / "live" / "generate_s3_n2.png")),
                                  make_grid(_images_of(model.generator, latent.z_numpy(2, 8, "uniform_signed", seed=3))))
    z = np.random.default_rng(0).uniform(-1, 1, (3, 8)).astype("float32")
    # Exports: the average into export/<run>/<step>/, the live weights into export/<run>/live/<step>/;
    # neither replaces the other.
    step = str(int(model.step.numpy()))
    for extra in ([], ["--live_weights"]):
        assert cli.execute(common + ["--export"] + extra) == 0
    for folder, generator in ((step, model.ema_generator), (os.path.join("live", step), model.generator)):
        loaded = tf.saved_model.load(os.path.join(workdir, "export", "faces_4_32_32_z8_gf4_df4", folder))
        exported = loaded.signatures["serving_default"](z=tf.constant(z))
        images = exported["images"].numpy()
        np.testing.assert_allclose(images, _images_of(generator, z), atol=1e-5)
