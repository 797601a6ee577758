import keras
import numpy as np
import pytest
import tensorflow as tf

from dcgan_tf import gan, nets
from tests.conftest import tiny_config


def _model(tmp_path, g_steps=2, run_eagerly=False, summary_writer=None):
    config = tiny_config(tmp_path, c_dim=3)
    generator, discriminator = nets.build_networks(config)
    model = gan.DCGAN(generator, discriminator, z_dim=config.z_dim, g_steps=g_steps, seed=3,
                      summary_writer=summary_writer, histogram_freq=1)
    model.compile(d_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5),
                  g_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5), run_eagerly=run_eagerly)
    model.build_optimizers()
    return model


def _batches(count=2, batch=4):
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, size=(count * batch, 32, 32, 3)).astype("float32")
    return tf.data.Dataset.from_tensor_slices(images).batch(batch)


def _values(variables):
    return [keras.ops.convert_to_numpy(v).copy() for v in variables]


def test_one_d_update_then_two_g_updates_per_step(tmp_path):
    model = _model(tmp_path)
    d_before = _values(model.discriminator.trainable_variables)
    g_before = _values(model.generator.trainable_variables)
    model.fit(_batches(count=1), epochs=1, verbose=0, shuffle=False)
    assert int(model.d_optimizer.iterations.numpy()) == 1
    assert int(model.g_optimizer.iterations.numpy()) == 2
    assert int(model.step.numpy()) == 1
    assert all(not np.allclose(a, b) for a, b in zip(d_before, _values(model.discriminator.trainable_variables)))
    assert all(not np.allclose(a, b) for a, b in zip(g_before, _values(model.generator.trainable_variables))
               if a.ndim > 1)
    model.fit(_batches(count=2), epochs=1, verbose=0, shuffle=False)
    assert (int(model.d_optimizer.iterations.numpy()), int(model.g_optimizer.iterations.numpy())) == (3, 6)


def test_g_steps_is_configurable(tmp_path):
    model = _model(tmp_path, g_steps=1)
    model.fit(_batches(count=2), epochs=1, verbose=0, shuffle=False)
    assert (int(model.d_optimizer.iterations.numpy()), int(model.g_optimizer.iterations.numpy())) == (2, 2)
    with pytest.raises(ValueError):
        _model(tmp_path, g_steps=0)


def test_all_updates_of_a_step_share_one_z(tmp_path, monkeypatch):
    drawn = []
    original = gan.sample_z

    def counting_sample_z(*args, **kwargs):
        z = original(*args, **kwargs)
        drawn.append(z)
        return z

    monkeypatch.setattr(gan, "sample_z", counting_sample_z)
    model = _model(tmp_path, run_eagerly=True)
    model.fit(_batches(count=3), epochs=1, verbose=0, shuffle=False)
    assert len(drawn) == 3  # one z per step, whatever g_steps is
    assert not np.allclose(drawn[0], drawn[1])
    assert np.all(np.abs(np.concatenate(drawn)) <= 1.0)


def test_reported_metrics(tmp_path):
    model = _model(tmp_path)
    logs = model.fit(_batches(count=1), epochs=1, verbose=0, shuffle=False).history
    assert set(logs) == set(gan.METRIC_NAMES)
    assert logs["d_loss"][0] == pytest.approx(logs["d_loss_real"][0] + logs["d_loss_fake"][0], rel=1e-5)
    assert 0 < logs["d_x"][0] < 1 and 0 < logs["d_g_z"][0] < 1
    # d_loss_real is -mean(log D(x)); with D(x) near its mean, the two agree roughly.
    assert logs["d_loss_real"][0] == pytest.approx(-np.log(logs["d_x"][0]), rel=0.2)


def test_summaries_written_in_the_step(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path / "logs"))
    model = _model(tmp_path, summary_writer=writer)
    model.fit(_batches(count=2), epochs=1, verbose=0, shuffle=False)
    writer.flush()
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(tmp_path / "logs"), size_guidance={"tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["tensors"])
    assert {"d_loss", "d_loss_real", "d_loss_fake", "g_loss", "z", "d", "d_"} <= tags
    assert [e.step for e in acc.Tensors("d_loss")] == [1, 2]
