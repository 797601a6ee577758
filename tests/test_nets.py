
import dataclasses

import keras
import numpy as np
import pytest

from dcgan_tf.model import nets
from dcgan_tf.errors import UserError
from dcgan_tf.model.nets import simpsons
from tests.conftest import tiny_config


@pytest.mark.parametrize("height,width,c_dim", [(32, 32, 3), (64, 64, 1), (48, 80, 3), (100, 100, 3), (33, 47, 1)])
def test_generator_and_discriminator_shapes(tmp_path, height, width, c_dim):
    config = tiny_config(tmp_path, output_height=height, output_width=width, c_dim=c_dim)
    generator, discriminator = nets.build_networks(config)
    images = generator(keras.random.uniform((3, config.z_dim), -1, 1, seed=0))
    assert tuple(images.shape) == (3, height, width, c_dim)
    values = keras.ops.convert_to_numpy(images)
    assert values.min() >= -1.0 and values.max() <= 1.0  # tanh output
    assert tuple(discriminator(images).shape) == (3, 1)


def test_a_generator_alone_creates_no_discriminator_weights(tmp_path):
    # The moving average of G (training/build.py) needs no D of its own.
    config = tiny_config(tmp_path, c_dim=3)
    with_d = nets.build_networks(config)
    generator, discriminator = nets.build_networks(config, with_discriminator=False)
    assert discriminator is None
    assert [w.shape for w in generator.weights] == [w.shape for w in with_d[0].weights]
    assert tuple(generator(keras.ops.zeros((2, config.z_dim))).shape) == (2, 32, 32, 3)


@pytest.mark.parametrize("arch", nets.ARCHITECTURES)
def test_networks_built_without_initial_draws_start_at_zero_with_the_same_weights(arch):
    # For the moving average of G, whose weights are G's copy at once: the same variables, no draws.
    shape = dict(height=32, width=32, c_dim=3, z_dim=8, gf_dim=4, df_dim=4, hidden_dim=16)
    drawn, _ = nets.build(arch, with_discriminator=False, **shape)
    zeros, _ = nets.build(arch, with_discriminator=False, draw_initial_weights=False, **shape)
    assert [(w.path, w.shape) for w in zeros.weights] == [(w.path, w.shape) for w in drawn.weights]
    assert not any(np.any(w.numpy()) for w in zeros.weights)
    assert any(np.any(w.numpy()) for w in drawn.weights)


def test_discriminator_dropout_acts_in_training_only_and_adds_no_weights(tmp_path):
    config = tiny_config(tmp_path, c_dim=3)
    _, plain = nets.build_networks(config)
    _, dropping = nets.build_networks(dataclasses.replace(config, d_dropout=0.5))
    assert plain.dropout_seed is None and dropping.dropout_seed is not None
    assert [w.shape for w in dropping.weights] == [w.shape for w in plain.weights]
    dropping.set_weights(plain.get_weights())
    images = keras.random.uniform((4, 32, 32, 3), -1, 1, seed=0)

    def logits(model, training):
        return keras.ops.convert_to_numpy(model(images, training=training))

    np.testing.assert_allclose(logits(dropping, False), logits(plain, False), rtol=1e-6)
    assert not np.allclose(logits(dropping, True), logits(plain, True))
    # Each call draws new masks from D's own random state.
    assert not np.allclose(logits(dropping, True), logits(dropping, True))


def test_minibatch_std_channel_is_the_batch_s_mean_feature_spread():
    features = np.random.default_rng(0).normal(size=(5, 2, 2, 3)).astype("float32")
    out = keras.ops.convert_to_numpy(simpsons.with_minibatch_std(keras.ops.convert_to_tensor(features)))
    assert out.shape == (5, 2, 2, 4)
    np.testing.assert_array_equal(out[..., :3], features)
    np.testing.assert_allclose(out[..., 3], np.mean(np.std(features, axis=0)), rtol=1e-5)
    # A batch of one image (or of copies of one) has no spread.
    copies = keras.ops.convert_to_tensor(np.repeat(features[:1], 4, axis=0))
    alike = keras.ops.convert_to_numpy(simpsons.with_minibatch_std(copies))
    np.testing.assert_allclose(alike[..., 3], 1e-4, rtol=1e-3)


def test_discriminator_with_minibatch_std_judges_an_image_by_its_batch(tmp_path):
    config = tiny_config(tmp_path, c_dim=3)
    _, plain = nets.build_networks(config)
    _, spread = nets.build_networks(dataclasses.replace(config, d_minibatch_std=True))
    # One more input channel to the last linear layer (1x1 features at 32x32): one more weight.
    assert spread.d_h5_lin.kernel.shape[0] == plain.d_h5_lin.kernel.shape[0] + 1
    images = keras.random.uniform((4, 32, 32, 3), -1, 1, seed=0)
    others = keras.ops.concatenate([images[:1], keras.random.uniform((3, 32, 32, 3), -1, 1, seed=1)], axis=0)

    def first_logit(model, batch):
        return keras.ops.convert_to_numpy(model(batch))[0]

    # In inference mode (batch norm's moving statistics) only the spread channel ties images together.
    np.testing.assert_allclose(first_logit(plain, images), first_logit(plain, others), rtol=1e-5)
    assert not np.allclose(first_logit(spread, images), first_logit(spread, others), rtol=1e-4, atol=0)


def test_layer_sizes_follow_ceil_halving():
    assert simpsons.layer_sizes(100) == [100, 50, 25, 13, 7, 4]
    assert simpsons.layer_sizes(128) == [128, 64, 32, 16, 8, 4]


def test_full_size_model_matches_the_original_variables(tmp_path):
    """At 128x128 the original had 36,507,524 trainable numbers; the shapes below are its variables."""
    config = tiny_config(tmp_path, output_height=128, gf_dim=64, df_dim=64, z_dim=100, c_dim=3)
    generator, discriminator = nets.build_networks(config)
    trainable = sum(int(np.prod(v.shape)) for v in generator.trainable_weights + discriminator.trainable_weights)
    assert trainable == 36_507_524
    shapes = {v.path: tuple(v.shape) for v in generator.weights + discriminator.weights}
    assert shapes["generator/g_h0_lin/kernel"] == (100, 16384)
    # Keras transposed-conv kernels are [k, k, out, in], as the original's.
    assert shapes["generator/g_h1/kernel"] == (5, 5, 512, 1024)
    assert shapes["generator/g_h5/kernel"] == (5, 5, 3, 64)
    assert shapes["generator/g_bn4/moving_variance"] == (64,)
    assert shapes["discriminator/d_h0_conv/kernel"] == (5, 5, 3, 64)
    assert shapes["discriminator/d_h4_conv/kernel"] == (5, 5, 512, 1024)
    assert shapes["discriminator/d_h5_lin/kernel"] == (16384, 1)
    assert not any("d_bn0" in p or "g_bn5" in p for p in shapes)  # never created in the original either


def test_batch_norm_and_initialisers(tmp_path):
    config = tiny_config(tmp_path, output_height=64, gf_dim=16, df_dim=16, c_dim=3)
    generator, discriminator = nets.build_networks(config)
    norms = [l for m in (generator, discriminator) for l in m._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    assert len(norms) == 5 + 4
    assert all(l.momentum == 0.9 and l.epsilon == 1e-5 and l.scale and l.center for l in norms)
    big = [v for v in generator.trainable_weights + discriminator.trainable_weights if "kernel" in v.path]
    values = np.concatenate([keras.ops.convert_to_numpy(v).ravel() for v in big])
    assert abs(values.mean()) < 1e-3 and values.std() == pytest.approx(0.02, rel=0.12)
    biases = [v for v in generator.trainable_weights + discriminator.trainable_weights if v.path.endswith("bias")]
    assert all(not keras.ops.convert_to_numpy(b).any() for b in biases)


def test_discriminator_first_layer_has_no_batch_norm(tmp_path):
    config = tiny_config(tmp_path, c_dim=3)
    _, discriminator = nets.build_networks(config)
    assert [l.name for l in discriminator.bns] == ["d_bn1", "d_bn2", "d_bn3", "d_bn4"]
    assert [l.filters for l in discriminator.convs] == [4 * 2 ** i for i in range(5)]


@pytest.mark.parametrize("flag", ["output_height", "output_width"])
def test_too_small_output_is_a_user_error(tmp_path, flag):
    config = tiny_config(tmp_path, **{flag: 16})
    with pytest.raises(UserError, match=f"--{flag} 16 is too small.*at least 32"):
        nets.check_config(config)


def test_config_arch_choices_match_registry():
    import dataclasses

    from dcgan_tf.config import RunConfig

    field = {f.name: f for f in dataclasses.fields(RunConfig)}["arch"]
    assert tuple(field.metadata["choices"]) == nets.ARCHITECTURES
