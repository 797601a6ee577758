import keras
import numpy as np
import pytest
import tensorflow as tf

from dcgan_tf.training import optimizers


def _train(optimizer, steps=5):
    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.normal(size=shape).astype("float32")) for shape in ((3, 4), (4,))]
    optimizer.build(variables)

    @tf.function
    def step(grads):
        optimizer.apply_gradients(zip(grads, variables))

    for _ in range(steps):
        step([tf.constant(rng.normal(size=v.shape).astype("float32")) for v in variables])
    return [keras.ops.convert_to_numpy(v) for v in variables], optimizer


def test_fused_adam_matches_keras_adam_and_keeps_its_slots(tmp_path):
    fused, fused_opt = _train(optimizers.FusedAdam(1e-2, beta_1=0.5))
    plain, plain_opt = _train(keras.optimizers.Adam(1e-2, beta_1=0.5))
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # The same slots, moved alike; a checkpoint of Keras's Adam restores into it completely.
    assert len(fused_opt.variables) == len(plain_opt.variables) == 6  # iterations, lr, m and v of two
    for a, b in zip(fused_opt.variables, plain_opt.variables):
        # 1 - beta_2 is rounded in float32 by the kernel, in float64 by Keras: a relative 1e-5.
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), rtol=1e-4, atol=1e-8)
    path = tf.train.Checkpoint(optimizer=plain_opt).write(str(tmp_path / "adam"))
    _, restored = _train(optimizers.FusedAdam(1e-2, beta_1=0.5), steps=1)
    tf.train.Checkpoint(optimizer=restored).read(path).assert_consumed()
    assert int(restored.iterations.numpy()) == 5


def test_fused_adam_makes_the_shared_scalars_once_per_update():
    variables = [keras.Variable(tf.zeros([2])) for _ in range(6)]
    counts = []
    for count in (1, 6):
        optimizer = optimizers.FusedAdam(1e-2)
        optimizer.build(variables)
        graph = tf.function(lambda: optimizer.apply_gradients(zip([tf.ones([2])] * count, variables[:count])),
                            autograph=False).get_concrete_function().graph
        types = [op.type for op in graph.get_operations()]
        assert types.count("ResourceApplyAdam") == count
        assert types.count("Pow") == 2  # beta_1 ** t and beta_2 ** t, for all the variables
        counts.append(len(types))
    assert counts[1] - counts[0] <= 5 * 6  # the variable's handles, its gradient's cast and its update


def test_make_optimizer_wraps_for_float16_loss_scaling_only():
    assert isinstance(optimizers.make_optimizer(2e-4, 0.5, 0.999, "float32"), optimizers.FusedAdam)
    assert isinstance(optimizers.make_optimizer(2e-4, 0.5, 0.999, "mixed_float16"),
                      keras.optimizers.LossScaleOptimizer)
    optimizer = optimizers.make_optimizer(2e-4, 0.5, 0.99, "mixed_bfloat16")
    assert (float(optimizer.learning_rate), optimizer.beta_1, optimizer.beta_2) == (pytest.approx(2e-4), 0.5, 0.99)
