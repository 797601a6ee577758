import keras
import numpy as np
import pytest
import tensorflow as tf

from dcgan_tf.model import gan
from dcgan_tf.model import nets
from tests.conftest import tiny_config


def _model(tmp_path, g_steps=2, run_eagerly=False, augment=(), steps_per_execution=1):
    config = tiny_config(tmp_path, c_dim=3)
    generator, discriminator = nets.build_networks(config)
    model = gan.DCGAN(generator, discriminator, z_dim=config.z_dim, g_steps=g_steps, seed=3, augment=augment)
    model.compile(d_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5),
                  g_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5), run_eagerly=run_eagerly,
                  steps_per_execution=steps_per_execution)
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
    original = gan.z_tensor

    def counting_z_tensor(*args, **kwargs):
        z = original(*args, **kwargs)
        drawn.append(z)
        return z

    monkeypatch.setattr(gan, "z_tensor", counting_z_tensor)
    model = _model(tmp_path, run_eagerly=True)
    model.fit(_batches(count=3), epochs=1, verbose=0, shuffle=False)
    assert len(drawn) == 3  # one z per step, whatever g_steps is
    assert not np.allclose(drawn[0], drawn[1])
    assert np.all(np.abs(np.concatenate(drawn)) <= 1.0)


def test_reported_metrics(tmp_path):
    model = _model(tmp_path, run_eagerly=True)
    logs = model.fit(_batches(count=1), epochs=1, verbose=0, shuffle=False).history
    assert set(logs) == set(gan.METRIC_NAMES)
    assert logs["d_loss"][0] == pytest.approx(logs["d_loss_real"][0] + logs["d_loss_fake"][0], rel=1e-5)
    assert 0 < logs["d_x"][0] < 1 and 0 < logs["d_g_z"][0] < 1
    # d_loss_real is -mean(log D(x)); with D(x) near its mean, the two agree roughly.
    assert logs["d_loss_real"][0] == pytest.approx(-np.log(logs["d_x"][0]), rel=0.2)


@pytest.mark.parametrize("steps_per_execution", [1, 8])
def test_summaries_callback_writes_every_steps_own_values(tmp_path, steps_per_execution):
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    from dcgan_tf.training.summaries import SCALAR_TAGS, Summaries

    writer = tf.summary.create_file_writer(str(tmp_path / "logs"))
    model = _model(tmp_path, steps_per_execution=steps_per_execution)
    per_step = {}

    class StepValues(keras.callbacks.Callback):  # The values the step kept, read after each step.
        def on_train_batch_end(self, batch, logs=None):
            kept = self.model.step_values
            for step, row in zip(kept.steps.numpy(), kept.rows.numpy()):
                per_step[int(step)] = row

    # 40 steps: more than the model keeps rows for (gan.StepValues.ROWS), so several batches of rows.
    model.fit(_batches(count=40), epochs=1, verbose=0, shuffle=False,
              callbacks=[Summaries(writer, histogram_every=2), StepValues()])
    writer.flush()
    acc = event_accumulator.EventAccumulator(str(tmp_path / "logs"), size_guidance={"tensors": 0})
    acc.Reload()
    assert set(acc.Tags()["tensors"]) == {"loss/d_loss", "loss/d_loss_real", "loss/d_loss_fake", "loss/g_loss",
                                         "probability/d_x", "probability/d_g_z", "z", "probability/d",
                                         "probability/d_"}
    for i, name in enumerate(gan.METRIC_NAMES):
        events = acc.Tensors(SCALAR_TAGS[name])
        assert [e.step for e in events] == list(range(1, 41))
        # Each step's own value (not the epoch's running mean that fit's logs carry).
        np.testing.assert_allclose([tensor_util.make_ndarray(e.tensor_proto) for e in events],
                                   [per_step[s][i] for s in range(1, 41)], rtol=1e-6)
    # Histograms when an execution ends on a multiple of 2 steps, as the sample grids.
    every = max(2, steps_per_execution)
    assert [e.step for e in acc.Tensors("z")] == list(range(every, 41, every))
    assert tensor_util.make_ndarray(acc.Tensors("probability/d")[0].tensor_proto).shape[0] > 0


def _model_with_labels(tmp_path, run_eagerly=False, g_steps=1, **labels):
    keras.utils.set_random_seed(5)
    config = tiny_config(tmp_path, c_dim=3)
    generator, discriminator = nets.build_networks(config)
    model = gan.DCGAN(generator, discriminator, z_dim=config.z_dim, g_steps=g_steps, seed=3, **labels)
    model.compile(d_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5),
                  g_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5), run_eagerly=run_eagerly)
    model.build_optimizers()
    return model


def test_label_flip_reaches_the_discriminator_loss(tmp_path):
    def d_losses(**labels):
        # Eager: one step needs no tracing (three traced models would cost most of this test's time).
        logs = _model_with_labels(tmp_path, run_eagerly=True, **labels).fit(
            _batches(count=1), epochs=1, verbose=0, shuffle=False).history
        return logs["d_loss_real"][0], logs["d_loss_fake"][0]

    plain = d_losses()
    # Every pair swapped is the same as labelling real images 0 and fakes 1.
    flipped = d_losses(label_flip_prob=1.0)
    reversed_labels = d_losses(real_label_range=(0.0, 0.0), fake_label_range=(1.0, 1.0))
    assert flipped == pytest.approx(reversed_labels, rel=1e-6)
    assert flipped[0] != pytest.approx(plain[0], rel=1e-4)


def test_r1_penalty_changes_d_update_not_the_reported_loss(tmp_path):
    def one_step(**options):
        model = _model_with_labels(tmp_path, run_eagerly=True, **options)
        logs = model.fit(_batches(count=1), epochs=1, verbose=0, shuffle=False).history
        return logs["d_loss"][0], _values(model.discriminator.trainable_variables)

    plain_loss, plain_d = one_step()
    r1_loss, r1_d = one_step(r1_gamma=10.0)
    # The logged d_loss is the cross-entropy alone; the penalty only steers D's gradient.
    assert r1_loss == pytest.approx(plain_loss, rel=1e-6)
    kernels = [(a, b) for a, b in zip(plain_d, r1_d) if a.ndim > 1]
    assert any(not np.allclose(a, b, atol=1e-7) for a, b in kernels)


def test_adaptive_r1_acts_only_once_d_x_passes_the_target(tmp_path):
    """Traced, as training runs it: the penalty's gradient sits behind a tf.cond on the weight."""
    def two_steps(**options):
        model = _model_with_labels(tmp_path, **options)
        logs = model.fit(_batches(count=2), epochs=1, verbose=0, shuffle=False).history
        return model, logs, _values(model.discriminator.trainable_variables)

    _, _, plain_d = two_steps()
    # D(x) starts near 0.5: below a target of 0.99 the weight stays 0 and D learns as without R1.
    below, logs, below_d = two_steps(r1_gamma=10.0, r1_target=0.99)
    assert float(below.r1_weight.numpy()) == 0.0 and logs["r1_weight"][0] == 0.0
    for a, b in zip(plain_d, below_d):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Above a target of 0.01 it rises 1/500 a step, and the second step's D update has the penalty.
    above, _, above_d = two_steps(r1_gamma=10.0, r1_target=0.01)
    assert float(above.r1_weight.numpy()) == pytest.approx(2 / 500)
    assert any(not np.allclose(a, b, atol=1e-7) for a, b in zip(plain_d, above_d) if a.ndim > 1)


def test_adaptive_diffaug_starts_with_no_augmentation_and_its_probability_follows_d_x(tmp_path):
    def two_steps(**options):
        model = _model_with_labels(tmp_path, **options)
        logs = model.fit(_batches(count=2), epochs=1, verbose=0, shuffle=False).history
        return model, logs, _values(model.discriminator.trainable_variables)

    policy = ("color", "translation", "cutout")
    _, _, plain_d = two_steps()
    # Below a target of 0.99 the probability stays 0: D learns as without DiffAugment.
    below, logs, below_d = two_steps(augment=policy, augment_target=0.99)
    assert float(below.augment_p.numpy()) == 0.0 and logs["augment_p"][0] == 0.0
    assert below.metric_names == gan.METRIC_NAMES + ("augment_p",)
    for a, b in zip(plain_d, below_d):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Above a target of 0.01 it rises 1/500 a step; always-on DiffAugment keeps no probability.
    above, _, _ = two_steps(augment=policy, augment_target=0.01)
    assert float(above.augment_p.numpy()) == pytest.approx(2 / 500)
    assert _model_with_labels(tmp_path, augment=policy).augment_p is None
    # Without a policy there is nothing to adapt.
    assert _model_with_labels(tmp_path, augment_target=0.5).augment_p is None


def test_lecam_penalty_changes_d_update_not_the_reported_loss_and_moves_its_anchors(tmp_path):
    def one_step(**options):
        model = _model_with_labels(tmp_path, run_eagerly=True, **options)
        logs = model.fit(_batches(count=1), epochs=1, verbose=0, shuffle=False).history
        return model, logs, _values(model.discriminator.trainable_variables)

    plain, plain_logs, plain_d = one_step()
    assert plain.lecam_anchors is None
    lecam, logs, lecam_d = one_step(lecam_weight=10.0)
    # Same logged values (the cross-entropy alone; the penalty only steers D's gradient), another D.
    assert set(logs) == set(plain_logs) and logs["d_loss"][0] == pytest.approx(plain_logs["d_loss"][0], rel=1e-6)
    assert any(not np.allclose(a, b, atol=1e-7) for a, b in zip(plain_d, lecam_d) if a.ndim > 1)
    # The anchors moved from 0 one hundredth of the way to the step's mean logits (from D's probabilities).
    def mean_logit(p):
        p = getattr(lecam.step_values, p).numpy().astype("float64")
        return np.mean(np.log(p / (1 - p)))

    np.testing.assert_allclose(lecam.lecam_anchors.numpy(), [0.01 * mean_logit("d_x"), 0.01 * mean_logit("d_g_z")],
                               rtol=1e-3, atol=1e-7)


def test_adaptive_r1_weight_is_a_scalar_of_every_step(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    from dcgan_tf.training.summaries import SCALAR_TAGS, Summaries

    writer = tf.summary.create_file_writer(str(tmp_path / "logs"))
    model = _model_with_labels(tmp_path, r1_gamma=1.0, r1_target=0.01)
    assert model.metric_names == gan.METRIC_NAMES + ("r1_weight",)
    model.fit(_batches(count=3), epochs=1, verbose=0, shuffle=False, callbacks=[Summaries(writer, 100)])
    writer.flush()
    acc = event_accumulator.EventAccumulator(str(tmp_path / "logs"), size_guidance={"tensors": 0})
    acc.Reload()
    events = acc.Tensors(SCALAR_TAGS["r1_weight"])
    assert SCALAR_TAGS["r1_weight"] == "loss/r1_weight"
    assert [e.step for e in events] == [1, 2, 3]
    np.testing.assert_allclose([tensor_util.make_ndarray(e.tensor_proto) for e in events], [k / 500 for k in (1, 2, 3)])


def test_soft_labels_are_drawn_in_the_step(tmp_path, monkeypatch):
    seen = []
    original = gan.losses.discriminator_labels

    def recording(*args, **kwargs):
        labels = original(*args, **kwargs)
        seen.append([keras.ops.convert_to_numpy(t) for t in labels])
        return labels

    monkeypatch.setattr(gan.losses, "discriminator_labels", recording)
    model = _model_with_labels(tmp_path, run_eagerly=True, real_label_range=(0.7, 1.0),
                               fake_label_range=(0.0, 0.3))
    model.fit(_batches(count=2), epochs=1, verbose=0, shuffle=False)
    assert len(seen) == 2
    real = np.concatenate([r for r, _ in seen])
    fake = np.concatenate([f for _, f in seen])
    assert real.shape == (8, 1) and 0.7 <= real.min() and real.max() <= 1.0 and real.std() > 0
    assert 0.0 <= fake.min() and fake.max() <= 0.3 and fake.std() > 0
    assert not np.allclose(seen[0][0], seen[1][0])  # fresh draws every step


def _record_augmentations(monkeypatch):
    """A list that receives (images, augmented images) of every DiffAugment call from now on."""
    seen = []
    original = gan.aug.diff_augment

    def recording(images, policy, seed, probability=None):
        out = original(images, policy, seed, probability=probability)
        seen.append((keras.ops.convert_to_numpy(images), keras.ops.convert_to_numpy(out)))
        return out

    monkeypatch.setattr(gan.aug, "diff_augment", recording)
    return seen


def test_diffaug_augments_every_image_d_sees_from_its_own_random_state(tmp_path, monkeypatch):
    seen = _record_augmentations(monkeypatch)
    off = _model(tmp_path, run_eagerly=True)
    off_state = keras.ops.convert_to_numpy(off.augment_seed.state).copy()
    off.fit(_batches(count=1), epochs=1, verbose=0, shuffle=False)
    assert seen == []  # policy off: no augmentation and no draws from its random state
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(off.augment_seed.state), off_state)

    on = _model(tmp_path, run_eagerly=True, augment=("translation", "cutout"))
    real = next(iter(_batches(count=1))).numpy()
    on.fit(_batches(count=1), epochs=1, verbose=0, shuffle=False)
    # D's update: the real batch and the fakes; then one call per G update (g_steps 2), each fresh.
    assert len(seen) == 4
    np.testing.assert_array_equal(seen[0][0], real)
    assert all(not np.allclose(before, after) for before, after in seen)
    assert not np.allclose(seen[2][1], seen[3][1])
    # The z stream is the same with and without augmentation.
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(on.z_seed.state),
                                  keras.ops.convert_to_numpy(off.z_seed.state))


def test_consistency_penalty_sees_a_second_augmentation_and_changes_only_d_update(tmp_path, monkeypatch):
    seen = _record_augmentations(monkeypatch)
    def one_step(**options):
        seen.clear()
        model = _model_with_labels(tmp_path, run_eagerly=True, augment=("translation", "cutout"), **options)
        logs = model.fit(_batches(count=1), epochs=1, verbose=0, shuffle=False).history
        return logs, _values(model.discriminator.trainable_variables)

    plain_logs, plain_d = one_step()
    assert len(seen) == 3  # D's update: real and fakes; one G update
    cr_logs, cr_d = one_step(cr_weight=10.0)
    # D's update sees the real batch and the fakes a second time, each under fresh draws.
    assert len(seen) == 5
    np.testing.assert_array_equal(seen[2][0], seen[0][0])
    np.testing.assert_array_equal(seen[3][0], seen[1][0])
    assert not np.allclose(seen[2][1], seen[0][1]) and not np.allclose(seen[3][1], seen[1][1])
    # The logged losses are the cross-entropy alone; the penalty only steers D's gradient.
    assert cr_logs["d_loss"][0] == pytest.approx(plain_logs["d_loss"][0], rel=1e-6)
    assert any(not np.allclose(a, b, atol=1e-7) for a, b in zip(plain_d, cr_d) if a.ndim > 1)
    # On the real images alone (CR): only the real batch is seen a second time, and D's update differs.
    real_logs, real_d = one_step(cr_weight=10.0, cr_images="real")
    assert len(seen) == 4
    np.testing.assert_array_equal(seen[2][0], seen[0][0])
    assert not np.allclose(seen[2][1], seen[0][1])
    assert real_logs["d_loss"][0] == pytest.approx(plain_logs["d_loss"][0], rel=1e-6)
    assert any(not np.allclose(a, b, atol=1e-7) for a, b in zip(real_d, cr_d) if a.ndim > 1)
    with pytest.raises(ValueError, match="cr_weight needs an augmentation policy"):
        _model_with_labels(tmp_path, cr_weight=10.0)
    with pytest.raises(ValueError, match="cr_images must be 'both' or 'real'"):
        _model_with_labels(tmp_path, augment=("cutout",), cr_weight=10.0, cr_images="fake")


def test_consistency_penalty_faded_out_is_skipped_in_the_traced_step(tmp_path):
    """Past --cr_until the penalty's passes of D do not run: one traced step (D and G) lands exactly
    where the same model without bCR lands, its augmentation draws included; at full weight it does not."""
    def trained(**options):
        model = _model_with_labels(tmp_path, augment=("translation", "cutout"), **options)
        model.step.assign(6)
        model.fit(_batches(count=1), epochs=1, verbose=0, shuffle=False)
        return _values(model.discriminator.trainable_variables + model.generator.trainable_variables)

    plain = trained()
    for got, want in zip(trained(cr_weight=10.0, cr_until=6), plain):
        np.testing.assert_array_equal(got, want)
    assert any(not np.allclose(a, b, atol=1e-7) for a, b in zip(trained(cr_weight=10.0, cr_until=12), plain))


def _graphs_tracing_the_step(model, monkeypatch):
    """The names of the graphs model.train_step is traced in, as fit traces it."""
    names = []
    step = model.train_step

    def recording_step(images):
        names.append(tf.compat.v1.get_default_graph().name)
        return step(images)

    monkeypatch.setattr(model, "train_step", recording_step)
    return names


def test_one_device_fit_traces_the_step_once_in_the_function_it_calls_with_kerass_results(tmp_path, monkeypatch):
    keras.utils.set_random_seed(1)
    model = _model(tmp_path / "one_function")
    keras.utils.set_random_seed(1)
    kerass = _model(tmp_path / "kerass")
    monkeypatch.setattr(kerass, "make_train_function",
                        lambda force=False: keras.Model.make_train_function(kerass, force) or kerass.train_function)
    traced = [_graphs_tracing_the_step(m, monkeypatch) for m in (model, kerass)]
    for m in (model, kerass):
        m.fit(_batches(count=2), epochs=2, verbose=0, shuffle=False)  # to the end of the data, twice
    assert traced[0] == ["train_step_on_iterator"]  # no second function around it
    assert traced[1] and traced[1] != traced[0]
    assert int(model.step.numpy()) == int(kerass.step.numpy()) == 4
    for a, b in zip(_values(model.weights), _values(kerass.weights)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_several_steps_an_execution_keep_kerass_train_function(tmp_path, monkeypatch):
    model = _model(tmp_path, steps_per_execution=2)
    traced = _graphs_tracing_the_step(model, monkeypatch)
    model.fit(_batches(count=2), epochs=1, verbose=0, shuffle=False)
    assert traced and "train_step_on_iterator" not in traced
    assert int(model.step.numpy()) == 2


def test_summaries_of_several_fits_in_one_process_do_not_warn_of_retracing(tmp_path):
    """A process that trains several runs (bench/, tests) makes a Summaries for each; their compiled
    writes are traced once each, which TensorFlow must not count as one function retracing."""
    import logging

    from dcgan_tf.training.summaries import Summaries

    model = _model(tmp_path)
    model.fit(_batches(count=1), epochs=1, verbose=0, shuffle=False)
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger("tensorflow").addHandler(handler)
    try:
        for i in range(7):
            writer = tf.summary.create_file_writer(str(tmp_path / f"logs{i}"))
            summaries = Summaries(writer, histogram_every=1)
            summaries.set_model(model)
            summaries.on_train_begin()
            model.step.assign_add(1)  # One more step to write, as after a step of fit.
            summaries.on_train_batch_end(0)
            summaries.on_train_end()
            writer.close()
    finally:
        logging.getLogger("tensorflow").removeHandler(handler)
    assert not [m for m in messages if "retracing" in m], messages


@pytest.mark.parametrize("across_workers", [False, True])
def test_a_stop_ends_fit_after_its_step_or_on_a_cluster_after_the_next(tmp_path, across_workers):
    # One process stops after the step whose callback asked; a multiworker cluster's workers first
    # agree on it in the next step (replicas.StopAgreement), so all of them end after that same step.
    from dcgan_tf.model import replicas

    class StopAtStep2(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.step.numpy()) == 2:
                self.model.stop_training = True

    model = _model(tmp_path)
    assert not model.stop_agreement.across_workers  # No multiworker strategy here.
    model.stop_agreement = replicas.StopAgreement(across_workers=across_workers)
    model.fit(_batches(count=6), epochs=1, verbose=0, shuffle=False, callbacks=[StopAtStep2()])
    assert int(model.step.numpy()) == (3 if across_workers else 2)
    assert model.stop_training and not model.stop_agreement.requested_elsewhere
    model.fit(_batches(count=2), epochs=1, verbose=0, shuffle=False)  # A new fit starts unstopped.
    assert int(model.step.numpy()) == (5 if across_workers else 4) and not model.stop_training


def test_top_k_training_learns_from_the_best_rated_fakes_once_epochs_have_passed(tmp_path):
    def one_step(epoch=0, run_eagerly=True, **options):
        model = _model_with_labels(tmp_path, run_eagerly=run_eagerly, **options)
        model.epoch.assign(epoch)
        logs = model.fit(_batches(count=1), epochs=1, verbose=0, shuffle=False).history
        return (logs["g_loss"][0], _values(model.discriminator.trainable_variables),
                _values(model.generator.trainable_variables))

    plain_loss, plain_d, plain_g = one_step()
    # At epoch 0 every image is kept: the same update as without top-k.
    first_loss, _, first_g = one_step(g_topk=0.5)
    assert first_loss == pytest.approx(plain_loss, rel=1e-6)
    for a, b in zip(plain_g, first_g):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # Long after, half the batch (2 of 4): the images D rates most real, so a lower loss; D's own
    # update is untouched, G's differs.
    late_loss, late_d, late_g = one_step(epoch=1000, g_topk=0.5)
    assert late_loss < plain_loss - 1e-4
    for a, b in zip(plain_d, late_d):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert any(not np.allclose(a, b, atol=1e-7) for a, b in zip(plain_g, late_g) if a.ndim > 1)
    # Traced, as training runs it (the count a tensor of the epoch counter): the same images kept.
    assert one_step(epoch=1000, run_eagerly=False, g_topk=0.5)[0] == pytest.approx(late_loss, rel=1e-5)
    with pytest.raises(ValueError, match="g_topk must be in"):
        _model_with_labels(tmp_path, g_topk=0.0)


def test_fresh_z_gives_every_g_update_a_draw_of_its_own(tmp_path):
    def one_step(run_eagerly=True, **options):
        model = _model_with_labels(tmp_path, run_eagerly=run_eagerly, **options)
        logs = model.fit(_batches(count=1), epochs=1, verbose=0, shuffle=False).history
        return (logs["g_loss"][0], _values(model.discriminator.trainable_variables),
                _values(model.generator.trainable_variables), model.z_seed.state.numpy().copy())

    plain_loss, plain_d, plain_g, plain_state = one_step()
    fresh_loss, fresh_d, fresh_g, fresh_state = one_step(g_fresh_z=True)
    # D's update takes the step's first z either way; G's takes another draw, from the same random
    # state (kept in checkpoints), which has moved on once more.
    for a, b in zip(plain_d, fresh_d):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert fresh_loss != pytest.approx(plain_loss, rel=1e-4)
    assert any(not np.allclose(a, b, atol=1e-7) for a, b in zip(plain_g, fresh_g) if a.ndim > 1)
    assert not np.array_equal(plain_state, fresh_state)
    # Two G updates, traced as training runs them (a graph loop): the same draws as eagerly.
    eager = one_step(g_steps=2, g_fresh_z=True)
    traced = one_step(run_eagerly=False, g_steps=2, g_fresh_z=True)
    # (Kernels only, within a tenth of Adam's step of 1e-3: Adam turns float noise in gradients near 0,
    # such as those of biases ahead of batch norm, into steps of their own; another z moves them all.)
    assert traced[0] == pytest.approx(eager[0], rel=1e-5)
    for a, b in zip(eager[2], traced[2]):
        if a.ndim > 1:
            np.testing.assert_allclose(a, b, atol=1e-4)
    np.testing.assert_array_equal(eager[3], traced[3])
