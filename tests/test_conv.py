"""dcgan_tf/model/conv.py: the matmul form of small convolutions gives Keras's results and gradients,
is taken only where the positions are few, and keeps the weights of Keras's layers."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from dcgan_tf.model import conv, nets
from tests.conftest import tiny_config


@pytest.fixture
def matmul_everywhere(monkeypatch):
    monkeypatch.setattr(conv, "MATMUL_MIN_WEIGHTS_PER_POSITION", 0)


def _pair(keras_class, mine_class, input_shape, **kwargs):
    """A Keras layer and ours with the same (random) weights."""
    reference, layer = keras_class(**kwargs), mine_class(**kwargs)
    reference.build(input_shape)
    layer.build(input_shape)
    rng = np.random.default_rng(1)
    layer.set_weights([rng.standard_normal(w.shape).astype("float32") for w in layer.get_weights()])
    reference.set_weights(layer.get_weights())
    return reference, layer


def _values_and_gradients(layer, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * tf.cos(y))  # Not linear in y, so the gradients are not all ones.
    return [y, *tape.gradient(loss, [x, *layer.trainable_variables])]


def _assert_same(reference, layer, x):
    for theirs, ours in zip(_values_and_gradients(reference, x), _values_and_gradients(layer, x)):
        # float32 sums in another order: values up to ~100 here, so 1e-3 apart at most.
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-3)


SIZES = [(1, 1), (2, 2), (3, 3), (4, 4), (2, 3), (5, 4), (7, 7)]


CONVS = [(5, 2, "same"), (3, 1, "same"), (4, 2, "same"), (1, 1, "valid"), (3, 2, "valid"), (2, 1, "valid")]


# Every size with every convolution that has an output there ("valid" needs the kernel to fit).
@pytest.mark.parametrize("size,kernel,stride,padding", [
    (size, *c) for size in SIZES for c in CONVS if c[2] == "same" or min(size) >= c[0]])
def test_conv_matches_keras(matmul_everywhere, size, kernel, stride, padding):
    x = np.random.default_rng(0).standard_normal((3, *size, 6)).astype("float32")
    reference, layer = _pair(keras.layers.Conv2D, conv.Conv2D, x.shape, filters=5, kernel_size=kernel,
                             strides=stride, padding=padding)
    _assert_same(reference, layer, x)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kernel,stride,padding,output_padding", [
    (5, 2, "same", None), (5, 2, "same", (0, 0)), (5, 2, "same", (1, 0)), (3, 1, "same", None),
    (4, 1, "valid", None), (5, 2, "valid", (1, 1)), (1, 1, "valid", None)])
def test_conv_transpose_matches_keras(matmul_everywhere, size, kernel, stride, padding, output_padding):
    x = np.random.default_rng(0).standard_normal((3, *size, 6)).astype("float32")
    reference, layer = _pair(keras.layers.Conv2DTranspose, conv.Conv2DTranspose, x.shape, filters=5,
                             kernel_size=kernel, strides=stride, padding=padding, output_padding=output_padding)
    _assert_same(reference, layer, x)


def _input_gradient_penalty_gradients(layer, x):
    """The gradients, for the layer's weights, of the squared norm of its input gradient (R1's second
    order, as the train step takes it through D)."""
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * tf.cos(y))
        penalty = tf.reduce_sum(inner.gradient(loss, x) ** 2)
    return outer.gradient(penalty, layer.trainable_variables)


@pytest.mark.parametrize("graph", [False, True])
@pytest.mark.parametrize("keras_class,mine_class", [(keras.layers.Conv2D, conv.Conv2D),
                                                    (keras.layers.Conv2DTranspose, conv.Conv2DTranspose)])
def test_second_order_gradients_match_keras(matmul_everywhere, keras_class, mine_class, graph):
    x = tf.constant(np.random.default_rng(0).standard_normal((3, 2, 2, 6)).astype("float32"))
    reference, layer = _pair(keras_class, mine_class, x.shape, filters=5, kernel_size=5, strides=2, padding="same")
    run = tf.function(_input_gradient_penalty_gradients) if graph else _input_gradient_penalty_gradients
    for theirs, ours in zip(run(reference, x), run(layer, x)):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-3 * np.abs(theirs).max())


def _op_types(model, shape):
    function = tf.function(lambda x: model(x, training=True), autograph=False)
    return [op.type for op in function.get_concrete_function(tf.TensorSpec(shape, tf.float32)).graph.get_operations()]


def test_the_matmul_form_is_taken_only_where_the_kernel_is_large_for_the_positions(tmp_path):
    # simpsons at 64x64, half width: D ends in 8x8x128 -> 4x4x256 (819,200 weights over 16 positions)
    # and 4x4x256 -> 2x2x512 (3,276,800 over 4); G starts with 2x2x512 -> 4x4x256 (3,276,800 over 4),
    # then 4x4x256 -> 8x8x128 (819,200 over 16). Only the two with 819,200 weights a position change.
    generator, discriminator = nets.build_networks(tiny_config(tmp_path, output_height=64, c_dim=3, gf_dim=32,
                                                               df_dim=32))
    d_ops = _op_types(discriminator, (2, 64, 64, 3))
    assert d_ops.count("Conv2D") == 4  # 32x32, 16x16, 8x8, 4x4 outputs
    assert d_ops.count("MatMul") == 1 + 1  # the 2x2 output, and the final Dense
    g_ops = _op_types(generator, (2, 8))
    assert g_ops.count("Conv2DBackpropInput") == 4  # from 4x4 up
    assert g_ops.count("MatMul") == 1 + 1  # the first Dense, and the transpose from 2x2
    # At 4 filters (the unit tests' width) every layer keeps its native convolution.
    tiny_g, tiny_d = nets.build_networks(tiny_config(tmp_path, output_height=64, c_dim=3))
    assert _op_types(tiny_d, (2, 64, 64, 3)).count("MatMul") == 1
    assert _op_types(tiny_g, (2, 8)).count("MatMul") == 1


def test_bfloat16_compute_keeps_float32_weights(matmul_everywhere):
    x = np.random.default_rng(0).standard_normal((2, 4, 4, 8)).astype("float32")
    reference, layer = _pair(keras.layers.Conv2D, conv.Conv2D, x.shape, filters=4, kernel_size=5, strides=2,
                             padding="same", dtype="mixed_bfloat16")
    ours, theirs = layer(x), reference(x)
    assert ours.dtype == "bfloat16" and layer.kernel.dtype == "float32"
    np.testing.assert_allclose(np.asarray(ours, "float32"), np.asarray(theirs, "float32"), rtol=0.05, atol=0.1)


def test_a_checkpoint_of_keras_layers_restores_into_ours(tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 2, 2, 8)).astype("float32")
    theirs = keras.layers.Conv2DTranspose(4, 5, strides=2, padding="same")
    ours = conv.Conv2DTranspose(4, 5, strides=2, padding="same")
    theirs.build(x.shape)
    ours.build(x.shape)
    path = tf.train.Checkpoint(layer=theirs).write(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(layer=ours).read(path).assert_consumed()
    np.testing.assert_allclose(ours(x).numpy(), theirs(x).numpy(), rtol=1e-5, atol=1e-5)


def test_the_matmul_form_exports_to_savedmodel_and_tflite_with_a_free_batch(matmul_everywhere, tmp_path):
    from dcgan_tf.use import export

    config = tiny_config(tmp_path, c_dim=3)
    generator, _ = nets.build_networks(config, with_discriminator=False)  # every transpose as a matmul
    z = np.random.default_rng(0).uniform(-1, 1, (3, config.z_dim)).astype("float32")
    expected = generator(z).numpy()
    path = export.export_generator(generator, config, str(tmp_path / "export"))
    loaded = tf.saved_model.load(path)
    np.testing.assert_allclose(loaded.signatures["serving_default"](z=tf.constant(z))["images"].numpy(), expected,
                               atol=1e-5)
    runner = export.tflite_interpreter(export.to_tflite(path)).get_signature_runner("serving_default")
    for batch in (3, 1):
        np.testing.assert_allclose(runner(z=z[:batch])["images"], expected[:batch], atol=1e-4)


def test_the_patch_selection_picks_one_input_position_per_tap_inside_and_none_on_padding():
    # 4x4 -> 2x2, 5x5 taps at stride 2, SAME (one row and column of padding before, two after): output
    # (0, 0) reads 4x4 input positions through its window, (0, 1) and (1, 0) 4x3, (1, 1) 3x3.
    selection = conv.patch_selection((4, 4), (2, 2), (5, 5), (2, 2), "same")
    assert selection.shape == (2 * 2 * 25, 16) and set(np.unique(selection)) == {0, 1}
    assert selection.sum(axis=1).max() == 1
    assert [int(selection[p * 25:(p + 1) * 25].sum()) for p in range(4)] == [16, 12, 12, 9]
    # Tap (1, 1) of output (0, 0) is input (0, 0); tap (0, 0) there is padding.
    assert selection[1 * 5 + 1, 0] == 1 and selection[0].sum() == 0
    # VALID with the kernel the input's size: one patch, the whole input in order.
    np.testing.assert_array_equal(conv.patch_selection((3, 2), (1, 1), (3, 2), (1, 1), "valid"), np.eye(6))
