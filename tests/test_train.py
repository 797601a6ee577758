import dataclasses
import json
import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

from dcgan_tf.training import train
from dcgan_tf.training import build
from dcgan_tf.errors import UserError
from tests.conftest import signal_after_step, tiny_config, write_images


def _weights(model):
    average = model.ema_generator.weights if model.ema_generator is not None else []
    return [keras.ops.convert_to_numpy(v) for v in model.generator.weights + model.discriminator.weights + average]


class _GraphOptimizerSeen(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.disabled = []

    def on_train_batch_end(self, batch, logs=None):
        self.disabled.append(tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer"))


def test_training_writes_checkpoints_samples_logs_and_config(workdir):
    # 8 images, batch 4: 2 steps an epoch; adaptive DiffAugment adds a metric of its own (augment_p).
    config = tiny_config(workdir, epoch=2, diffaug_target=0.7)
    seen = _GraphOptimizerSeen()
    result = train.train(config, verbose=0, extra_callbacks=[seen])
    # This machine has no GPU: grappler was off while it trained, and is on again afterwards.
    assert seen.disabled == [True] * 4
    assert not tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer")
    run_dir = workdir / "checkpoints" / "faces_4_32_32_z8_gf4_df4"
    assert sorted(os.listdir(workdir / "samples" / "faces_4_32_32_z8_gf4_df4")) == [
        "train_00_0002.png", "train_01_0004.png"]
    assert {"ckpt-2.index", "ckpt-4.index", "config.json", "metrics.csv", "checkpoint"} <= set(os.listdir(run_dir))
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["c_dim"] == 3 and saved["seed"] == 1 and saved["output_width"] == 32
    assert os.listdir(workdir / "logs" / "faces_4_32_32_z8_gf4_df4")
    assert result.steps_run == 4 and int(result.run.model.epoch.numpy()) == 2
    # The steps' own time is part of the wall-clock time, which also holds the grids and checkpoints.
    assert 0 < result.step_seconds < result.seconds
    # The first step (tracing) is timed apart, as part of them.
    assert result.first_steps == 1 and 0 < result.first_seconds < result.step_seconds
    rows = (run_dir / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2  # header + 2 epochs
    # Every metric the model logs, the adaptive ones' weights included, as the epoch lines show them.
    assert rows[0].split(",") == ["epoch", "step", *result.run.model.metric_names] and "augment_p" in rows[0]


@pytest.mark.parametrize("strategy, gpus, off", [("default", [], True), ("default", ["GPU:0"], False),
                                                  ("mirrored", [], False)])
def test_the_graph_optimizer_is_off_only_for_one_device_without_gpus(monkeypatch, strategy, gpus, off):
    listed = tf.config.list_physical_devices
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: gpus if kind == "GPU" else listed(kind))
    with train.graph_optimizer_off_on_cpus(strategy):
        assert bool(tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer")) is off
    assert not tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer")


def test_resume_mid_epoch_continues_counters_and_matches_an_uninterrupted_run(workdir, monkeypatch):
    """With DiffAugment, x-flips, D's dropout and spectral normalisation on, so their random draws and
    power iterations are covered too; with DiffAugment off the step runs the same code minus the
    augmentation (test_gan checks it then draws nothing)."""
    policy = "color,translation,cutout"
    options = {"diffaug": policy, "mirror": True, "d_dropout": 0.4, "d_spectral_norm": True}
    pipelines = []
    make_dataset = train.pipeline.make_dataset
    monkeypatch.setattr(train.pipeline, "make_dataset",
                        lambda *args, **kwargs: pipelines.append(kwargs) or make_dataset(*args, **kwargs))
    straight = train.train(tiny_config(workdir, epoch=2, checkpoint_dir=str(workdir / "a"), **options), verbose=0)

    # Stopped by SIGTERM after step 3, the first step of the second epoch (2 steps an epoch).
    first = train.train(tiny_config(workdir, epoch=2, checkpoint_dir=str(workdir / "b"), **options),
                        verbose=0, extra_callbacks=[signal_after_step(signal.SIGTERM, 3)])
    assert first.stopped_by == "SIGTERM"
    sample_z = keras.ops.convert_to_numpy(first.run.sample_z)
    second = train.train(tiny_config(workdir, epoch=2, checkpoint_dir=str(workdir / "b"), **options), verbose=0)
    assert [p["mirror"] for p in pipelines] == [True] * 3
    # The resume trained the second epoch's other batch alone (skipping the one trained before the stop).
    assert [(p["first_epoch"], p["skip_batches"]) for p in pipelines] == [(0, 0), (0, 0), (1, 1)]
    model = second.run.model
    assert second.run.resumed_from.endswith("ckpt-3")
    assert second.steps_run == 1
    assert int(model.step.numpy()) == 4 and int(model.epoch.numpy()) == 2
    assert int(model.d_optimizer.iterations.numpy()) == 4 and int(model.g_optimizer.iterations.numpy()) == 8
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(second.run.sample_z), sample_z)
    assert model.augment == ("color", "translation", "cutout")
    assert model.ema_generator is not None  # The default recipe: the average resumes exactly too.
    saved = json.loads((workdir / "b" / "faces_4_32_32_z8_gf4_df4" / "config.json").read_text())
    assert (saved["diffaug"], saved["mirror"], saved["d_dropout"], saved["d_spectral_norm"]) == (policy, True, 0.4, True)
    for resumed, unstopped in ((model.augment_seed, straight.run.model.augment_seed),
                               (model.discriminator.dropout_seed, straight.run.model.discriminator.dropout_seed)):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(resumed.state),
                                      keras.ops.convert_to_numpy(unstopped.state))
    # Same data order, same z stream, same augmentation draws, same optimizer state: the same weights
    # as without the stop.
    for a, b in zip(_weights(straight.run.model), _weights(model)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_adaptive_weights_and_lecam_anchors_resume_and_start_at_0_from_a_checkpoint_without_them(workdir):
    # D(x) is above 0.01 from the start: the R1 weight and DiffAugment's probability rise.
    adaptive = {"r1_gamma": 0.1, "r1_target": 0.01, "lecam_weight": 0.1, "diffaug_target": 0.01}
    first = train.train(tiny_config(workdir, epoch=1, **adaptive), verbose=0)
    weight = float(first.run.model.r1_weight.numpy())
    anchors = first.run.model.lecam_anchors.numpy()
    assert weight == pytest.approx(first.steps_run / 500) and np.all(anchors != 0.0)
    assert float(first.run.model.augment_p.numpy()) == pytest.approx(weight)
    assert json.loads((workdir / "checkpoints" / first.run.config.run / "config.json").read_text())["diffaug_target"] == 0.01
    again = build.build_run(tiny_config(workdir, c_dim=3, epoch=2, **adaptive))
    assert float(again.model.r1_weight.numpy()) == weight == float(again.model.augment_p.numpy())
    np.testing.assert_array_equal(again.model.lecam_anchors.numpy(), anchors)
    # A run trained without them turns them on when resumed: its checkpoint loads, they start at 0.
    plain = train.train(tiny_config(workdir, epoch=1, r1_gamma=0.0, checkpoint_dir=str(workdir / "p")), verbose=0)
    assert plain.run.model.r1_weight is None and plain.run.model.lecam_anchors is None
    switched = build.build_run(tiny_config(workdir, c_dim=3, epoch=2, checkpoint_dir=str(workdir / "p"), **adaptive))
    assert switched.resumed_from and float(switched.model.r1_weight.numpy()) == 0.0
    assert float(switched.model.augment_p.numpy()) == 0.0
    np.testing.assert_array_equal(switched.model.lecam_anchors.numpy(), [0.0, 0.0])


def test_each_network_gets_its_learning_rate_and_a_resume_takes_the_new_flags(workdir):
    first = train.train(tiny_config(workdir, d_learning_rate=4e-4, g_learning_rate=1e-4, beta2=0.99), verbose=0)
    model = first.run.model
    assert (float(model.d_optimizer.learning_rate), float(model.g_optimizer.learning_rate)) == \
           (pytest.approx(4e-4), pytest.approx(1e-4))
    assert (model.d_optimizer.beta_2, model.g_optimizer.beta_2) == (0.99, 0.99)
    saved = json.loads((workdir / "checkpoints" / first.run.config.run / "config.json").read_text())
    assert (saved["d_learning_rate"], saved["g_learning_rate"], saved["beta2"]) == (4e-4, 1e-4, 0.99)
    again = build.build_run(tiny_config(workdir, c_dim=3, epoch=2, learning_rate=3e-4))
    assert again.resumed_from
    assert (float(again.model.d_optimizer.learning_rate), float(again.model.g_optimizer.learning_rate)) == \
           (pytest.approx(3e-4), pytest.approx(3e-4))


def test_checkpoint_without_augmentation_state_still_restores(workdir):
    """Checkpoints written before DiffAugment existed lack its random state; they load, and it
    starts fresh."""
    import tensorflow as tf

    config = tiny_config(workdir, c_dim=3, diffaug="cutout")
    model = build.build_run(config).model
    fresh = keras.ops.convert_to_numpy(model.augment_seed.state).copy()
    model.step.assign(7)
    older = tf.train.Checkpoint(
        generator=model.generator, discriminator=model.discriminator, d_optimizer=model.d_optimizer,
        g_optimizer=model.g_optimizer, step=model.step, epoch=model.epoch, z_seed=model.z_seed.state,
        sample_z=tf.Variable(np.zeros((4, 8), "float32")))
    tf.train.CheckpointManager(older, config.run_checkpoint_dir, 1, checkpoint_name="ckpt").save()
    again = build.build_run(config)
    assert again.resumed_from.endswith("ckpt-1") and int(again.model.step.numpy()) == 7
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(again.model.augment_seed.state), fresh)


def test_finished_run_does_not_train_again_nor_forgets_its_length(workdir):
    train.train(tiny_config(workdir, epoch=2), verbose=0)
    again = train.train(tiny_config(workdir, epoch=1), verbose=0)
    assert again.steps_run == 0 and again.history == {}
    assert json.loads((workdir / "checkpoints" / "faces_4_32_32_z8_gf4_df4" / "config.json").read_text())["epoch"] == 2


def test_dataset_name_is_case_insensitive_and_run_uses_folder_name(workdir):
    result = train.train(tiny_config(workdir, dataset="FACES"), verbose=0)
    assert result.run.config.dataset == "faces"
    assert (workdir / "checkpoints" / "faces_4_32_32_z8_gf4_df4" / "ckpt-2.index").exists()


def test_grayscale_data_gives_one_channel_model(tmp_path):
    write_images(tmp_path / "data" / "faces", 4, mode="L")
    result = train.train(tiny_config(tmp_path), verbose=0)
    assert result.run.config.c_dim == 1
    assert tuple(result.run.model.generator(np.zeros((1, 8), "float32")).shape) == (1, 32, 32, 1)


def test_no_crop_input_larger_than_output_still_trains(workdir):
    """The original failed here (real images stayed at input size); both paths give output size."""
    for crop in (False, True):
        config = tiny_config(workdir, crop=crop, input_height=24, checkpoint_dir=str(workdir / f"c{crop}"))
        assert train.train(config, verbose=0).steps_run == 2


def test_load_trained_restores_generator_and_leaves_the_run_folder_as_it_was(workdir):
    trained = train.train(tiny_config(workdir), verbose=0).run
    # What a training running in another process may have there: a checkpoint being written, and
    # (between its writes) no list file. A reader changes neither.
    folder = trained.config.run_checkpoint_dir
    os.makedirs(os.path.join(folder, "ckpt-9_temp"))
    os.remove(os.path.join(folder, "checkpoint"))
    before = sorted(os.listdir(folder))
    loaded = build.load_trained(tiny_config(workdir, seed=99, dataset="Faces"))
    assert loaded.config.seed == 1  # options come from the run's config.json
    z = np.random.default_rng(0).uniform(-1, 1, (3, 8)).astype("float32")
    np.testing.assert_allclose(loaded.model.generator(z), trained.model.generator(z), atol=1e-6)
    assert sorted(os.listdir(folder)) == before
    build.build_run(loaded.config)  # The training's own start tidies up and rebuilds the list.
    assert "ckpt-9_temp" not in os.listdir(folder) and "checkpoint" in os.listdir(folder)


def test_initial_weights_are_drawn_only_for_networks_no_checkpoint_will_fill(workdir, monkeypatch):
    from dcgan_tf.model import nets

    drawn = []
    real_build = nets.build_networks

    def recording(config, with_discriminator=True, draw_initial_weights=True, **kwargs):
        drawn.append(("G+D" if with_discriminator else "G", draw_initial_weights))
        return real_build(config, with_discriminator=with_discriminator,
                          draw_initial_weights=draw_initial_weights, **kwargs)

    monkeypatch.setattr(nets, "build_networks", recording)
    trained = train.train(tiny_config(workdir), verbose=0).run
    # A fresh run draws G's and D's; the average (a second G) is G's copy and draws nothing.
    assert drawn == [("G+D", True), ("G", False)]
    drawn.clear()
    resumed = build.build_run(trained.config)
    # A run with checkpoints: every weight comes from the newest, so nothing is drawn, and it is all there.
    assert drawn == [("G+D", False), ("G", False)] and resumed.resumed_from
    for mine, theirs in zip(_weights(resumed.model), _weights(trained.model)):
        np.testing.assert_array_equal(mine, theirs)
    drawn.clear()
    # Loaded to draw images: G and its average alone, from the newest checkpoint, and no manager to save with.
    loaded = build.load_trained(tiny_config(workdir))
    assert drawn == [("G", False), ("G", False)] and loaded.resumed_from == resumed.resumed_from
    assert loaded.model.discriminator is None and loaded.manager is None
    assert int(loaded.model.step.numpy()) == int(trained.model.step.numpy())
    generator_side = lambda model: [keras.ops.convert_to_numpy(v) for v in
                                    model.generator.weights + model.ema_generator.weights]
    for mine, theirs in zip(generator_side(loaded.model), generator_side(trained.model)):
        np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_array_equal(loaded.sample_z.numpy(), trained.sample_z.numpy())


def test_load_trained_without_checkpoint_is_a_user_error(workdir):
    with pytest.raises(UserError, match="no run named faces_4_32_32_z8_gf4_df4 in .*train it first with --train"):
        build.load_trained(tiny_config(workdir))


def test_other_model_shape_is_another_run_and_never_resumes_this_one(workdir):
    first = train.train(tiny_config(workdir), verbose=0).run.config
    other = train.train(tiny_config(workdir, gf_dim=8), verbose=0).run.config
    assert other.run == "faces_4_32_32_z8_gf8_df4" and other.run_checkpoint_dir != first.run_checkpoint_dir
    # Forced into the first run's folder by name, the other shape is refused.
    with pytest.raises(UserError, match="--gf_dim 4, not 8"):
        train.train(tiny_config(workdir, gf_dim=8, run=first.run), verbose=0)


def test_batch_larger_than_dataset_stops_before_writing(workdir):
    with pytest.raises(UserError, match="--batch_size 16 is larger than the 8 usable images"):
        train.train(tiny_config(workdir, batch_size=16), verbose=0)
    assert not (workdir / "checkpoints").exists()


def test_divergence_stops_with_the_step_and_keeps_the_good_checkpoint(workdir):
    import tensorflow as tf

    class Overflow(keras.callbacks.Callback):
        """Before the third step a weight overflows, as an absurd learning rate would make it."""

        def on_train_batch_begin(self, batch, logs=None):
            if int(self.model.step.numpy()) == 2:
                weight = self.model.discriminator.trainable_weights[0]
                weight.assign(weight * 1e38 * 1e38)

    config = tiny_config(workdir, epoch=1, ckpt_freq=1)
    train.train(config, verbose=0)  # steps 1-2, ckpt-1 and ckpt-2, all finite
    with pytest.raises(UserError, match=r"diverged: .* at step (\d+).*Newest good checkpoint: .*ckpt-(\d+)") as info:
        train.train(dataclasses.replace(config, epoch=50), verbose=0, extra_callbacks=[Overflow()])
    # The way on: the good networks as a new run with a lower rate (the run keeps its own recipe).
    assert f"--train --init_from {config.run} --run NEW_NAME --learning_rate LOWER" in str(info.value)
    import re

    bad_step, good = map(int, re.search(r"at step (\d+).*ckpt-(\d+)", str(info.value)).groups())
    assert good < bad_step and bad_step >= 3
    grids = os.listdir(config.run_sample_dir)
    assert all(int(name[-8:-4]) < bad_step for name in grids)  # no grid of the bad state
    newest = tf.train.latest_checkpoint(config.run_checkpoint_dir)
    assert newest.endswith(f"ckpt-{good}")
    reader = tf.train.load_checkpoint(newest)
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if np.issubdtype(np.asarray(value).dtype, np.floating):
            assert np.all(np.isfinite(value)), name


def test_the_finished_line_says_epoch_or_epochs():
    assert "already finished 1 epoch; raise --epoch" in train.finished_line("run", 1)
    assert "already finished 2 epochs; raise --epoch" in train.finished_line("run", 2)
