import dataclasses

import keras
import numpy as np
import tensorflow as tf

from dcgan_tf.model import flops, nets
from dcgan_tf.model import spectral_norm
from tests.conftest import tiny_config


def _top_singular_value(kernel):
    matrix = np.asarray(keras.ops.convert_to_numpy(kernel)).reshape(-1, kernel.shape[-1])
    return np.linalg.svd(matrix, compute_uv=False)[0]


def test_power_iteration_converges_to_the_largest_singular_value_and_moves_u_in_training_only():
    kernel = keras.ops.convert_to_tensor(np.random.default_rng(0).normal(size=(5, 5, 6, 12)).astype("float32"))
    u = keras.Variable(np.random.default_rng(1).normal(size=(1, 12)).astype("float32"), trainable=False)
    start = keras.ops.convert_to_numpy(u)
    spectral_norm.normalized(kernel, u, training=False)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(u), start)
    first = spectral_norm.normalized(kernel, u, training=True)
    assert not np.allclose(keras.ops.convert_to_numpy(u), start)
    assert first.shape == kernel.shape
    for _ in range(40):
        normalized = spectral_norm.normalized(kernel, u, training=True)
    # One step from a random u underestimates sigma (the kernel comes out too large); converged, it is exact.
    assert _top_singular_value(first) > 1.01
    np.testing.assert_allclose(_top_singular_value(normalized), 1.0, rtol=1e-3)


def test_gradient_flows_through_sigma():
    # d(sum(W / sigma(W))) is not 1 / sigma everywhere: sigma depends on W too.
    kernel = tf.Variable(np.random.default_rng(2).normal(size=(4, 3)).astype("float32"))
    u = keras.Variable(np.ones((1, 3), "float32"), trainable=False)
    for _ in range(30):
        spectral_norm.normalized(kernel, u, training=True)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(spectral_norm.normalized(kernel, u, training=False))
    sigma = _top_singular_value(kernel)
    assert not np.allclose(tape.gradient(total, kernel).numpy(), 1 / sigma, rtol=1e-3)


def test_discriminator_with_spectral_norm_has_one_u_a_layer_and_updates_them_in_training_only(tmp_path):
    config = tiny_config(tmp_path, c_dim=3)
    _, plain = nets.build_networks(config)
    _, normed = nets.build_networks(dataclasses.replace(config, d_spectral_norm=True))
    assert [w.shape for w in normed.trainable_weights] == [w.shape for w in plain.trainable_weights]
    us = {w.name: w for w in normed.non_trainable_weights if w.name.endswith("_u")}
    assert sorted(us) == sorted([f"d_h{i}_conv_u" for i in range(5)] + ["d_h5_lin_u"])
    assert not any(w.name.endswith("_u") for w in plain.weights)
    assert flops.network_flops(normed) == flops.network_flops(plain)  # Its layers are built and counted alike.
    images = keras.random.uniform((4, 32, 32, 3), -1, 1, seed=0)
    before = {name: keras.ops.convert_to_numpy(w) for name, w in us.items()}
    normed(images)
    assert all(np.array_equal(keras.ops.convert_to_numpy(w), before[name]) for name, w in us.items())
    normed(images, training=True)
    assert not any(np.array_equal(keras.ops.convert_to_numpy(w), before[name]) for name, w in us.items())
    # The same kernels without the normalisation give other logits (each kernel is divided by its sigma).
    shared = [w for w in normed.weights if not w.name.endswith("_u")]
    for source, target in zip(shared, plain.weights):
        target.assign(source)
    assert not np.allclose(keras.ops.convert_to_numpy(normed(images)), keras.ops.convert_to_numpy(plain(images)))


def test_spectral_norm_s_vectors_are_saved_and_restored_with_d(tmp_path):
    config = dataclasses.replace(tiny_config(tmp_path, c_dim=3), d_spectral_norm=True)
    _, saved = nets.build_networks(config)
    saved(keras.random.uniform((4, 32, 32, 3), -1, 1, seed=0), training=True)
    path = tf.train.Checkpoint(discriminator=saved).write(str(tmp_path / "d"))
    _, restored = nets.build_networks(config)
    assert not np.array_equal(keras.ops.convert_to_numpy(saved.d_h0_conv_u),
                              keras.ops.convert_to_numpy(restored.d_h0_conv_u))  # Moved by the training call.
    tf.train.Checkpoint(discriminator=restored).read(path).assert_consumed()
    for a, b in zip(saved.weights, restored.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
