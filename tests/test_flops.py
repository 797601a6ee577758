"""dcgan_tf/model/flops.py: FLOPs counted from the layers' shapes, checked against TensorFlow's profiler."""

import pytest
import tensorflow as tf

from dcgan_tf.model import conv, flops, losses, nets
from tests.conftest import tiny_config

COUNTED_OPS = {"MatMul", "Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter"}


def _executed_ops(concrete) -> set:
    """Names of the ops the function's outputs depend on: what a call runs (TensorFlow prunes the rest
    when it instantiates the function, e.g. a custom gradient's product for an input not asked for)."""
    pending = [t.op for t in concrete.outputs] + list(concrete.graph.control_outputs)
    seen = set()
    while pending:
        op = pending.pop()
        if op.name not in seen:
            seen.add(op.name)
            pending.extend([t.op for t in op.inputs] + list(op.control_inputs))
    return seen


def _profiled(function, spec):
    """(FLOPs of the counted op types, FLOPs of all ops) that function(x) runs, by tf.compat.v1.profiler."""
    concrete = tf.function(function, autograph=False).get_concrete_function(spec)
    executed = _executed_ops(concrete)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    tree = tf.compat.v1.profiler.profile(graph=concrete.graph, cmd="graph", options=options)
    by_node = {}

    def walk(node):
        by_node[node.name] = node.float_ops
        for child in node.children:
            walk(child)

    walk(tree)
    by_node = {name: n for name, n in by_node.items() if name in executed}
    ops = {op.name: op.type for op in concrete.graph.get_operations()}
    counted = sum(n for name, n in by_node.items() if ops.get(name) in COUNTED_OPS)
    assert {ops.get(name) for name, n in by_node.items() if n} & COUNTED_OPS
    return counted, sum(by_node.values())


@pytest.mark.parametrize("arch,overrides", [("simpsons", {}), ("art", {"output_height": 64}),
                                            ("mnist", {"output_height": 28, "c_dim": 1})])
def test_forward_flops_match_tensorflows_profiler(tmp_path, arch, overrides):
    config = tiny_config(tmp_path, arch=arch, precision="float32", **{"c_dim": 3, **overrides})
    generator, discriminator = nets.build_networks(config)
    batch = 4
    h, w = config.output_height, config.output_width
    for model, spec in ((generator, tf.TensorSpec([batch, config.z_dim], tf.float32)),
                        (discriminator, tf.TensorSpec([batch, h, w, config.c_dim], tf.float32))):
        counted, total = _profiled(lambda x: model(x, training=True), spec)
        assert flops.forward_flops(model) * batch == counted, model.name
        # Batch norm, biases and activations are the rest: small even at 4 filters.
        assert counted / total > 0.85, (model.name, counted, total)


def test_layer_counts_by_hand(tmp_path):
    config = tiny_config(tmp_path, c_dim=3, precision="float32")  # simpsons, 32x32, 4 filters, z 8
    generator, discriminator = nets.build_networks(config)
    g = {layer.name: layer.flops for layer in flops.network_flops(generator)}
    d = {layer.name: layer.flops for layer in flops.network_flops(discriminator)}
    assert g["g_h0_lin"] == 2 * 8 * 64  # z 8 -> 1x1x64
    assert g["g_h1"] == 2 * 1 * 1 * 25 * 64 * 32  # 1x1x64 -> 2x2x32, 5x5 kernel
    assert g["g_h5"] == 2 * 16 * 16 * 25 * 4 * 3  # 16x16x4 -> 32x32x3
    assert d["d_h0_conv"] == 2 * 16 * 16 * 25 * 3 * 4  # 32x32x3 -> 16x16x4
    assert d["d_h5_lin"] == 2 * 64
    assert list(d)[0] == "d_h0_conv" and list(g)[0] == "g_h0_lin"  # first layers first


def test_train_step_accounting(monkeypatch):
    # Two-layer stand-ins make the formula's terms visible: G = 4 + 6, D = 30 + 70 FLOPs per image.
    monkeypatch.setattr(flops, "network_flops",
                        lambda net: [flops.LayerFlops(f"l{i}", "Dense", f) for i, f in enumerate(net)])
    step = flops.train_step_flops([4, 6], [30, 70], batch_size=2, g_steps=2, ema=True)
    g, g1, d, d1 = 20, 8, 200, 60
    assert step == g * (1 + 3 * 2 + 1) - 2 * g1 + d * (6 + 2 * 2) - 2 * d1
    assert step - flops.train_step_flops([4, 6], [30, 70], batch_size=2, g_steps=2, ema=False) == g


@pytest.mark.parametrize("form", ["native", "matmul"])
def test_r1_penalty_cost_by_tensorflows_profiler(tmp_path, monkeypatch, form):
    # The penalty needs D's input gradient (one pass) and that gradient differentiated for the weights
    # (two): 3 forward passes of D, in both forms of the layers (model/conv.py). The graph holds a
    # fourth (gradients for the weights inside the input gradient), which no output needs.
    passes = 3
    monkeypatch.setattr(conv, "MATMUL_MIN_WEIGHTS_PER_POSITION", 10 ** 12 if form == "native" else 0)
    config = tiny_config(tmp_path, c_dim=3, precision="float32")
    _, discriminator = nets.build_networks(config)
    batch = 4
    spec = tf.TensorSpec([batch, config.output_height, config.output_width, 3], tf.float32)
    weights = discriminator.trainable_variables

    def weight_gradients(x, r1):
        with tf.GradientTape() as tape:
            with tf.GradientTape(watch_accessed_variables=False) as input_tape:
                input_tape.watch(x)
                loss = tf.reduce_sum(discriminator(x, training=True))
            if r1:  # as DCGAN._discriminate_real
                loss += losses.r1_penalty(input_tape.gradient(loss, x))
        return tape.gradient(loss, weights)

    plain, _ = _profiled(lambda x: weight_gradients(x, False), spec)
    penalised, _ = _profiled(lambda x: weight_gradients(x, True), spec)
    d = flops.forward_flops(discriminator) * batch
    # Exact in the convolutions; D's last layer (one logit, whose gradient is a constant) costs less.
    assert penalised - plain == pytest.approx(passes * d, rel=1e-3)


def test_the_step_formula_charges_r1_three_passes_of_d(monkeypatch):
    # Stand-in networks of one layer each make the formula plain arithmetic.
    monkeypatch.setattr(flops, "network_flops", lambda net: [flops.LayerFlops("l", "Dense", net)])
    with_r1 = flops.train_step_flops(10, 100, batch_size=1, g_steps=2, ema=False, r1=True)
    assert with_r1 - flops.train_step_flops(10, 100, batch_size=1, g_steps=2, ema=False) == 3 * 100


def test_the_step_formula_charges_the_consistency_penalty_a_second_d_update_s_passes(monkeypatch):
    monkeypatch.setattr(flops, "network_flops",
                        lambda net: [flops.LayerFlops(f"l{i}", "Dense", f) for i, f in enumerate(net)])
    plain = flops.train_step_flops([4, 6], [30, 70], batch_size=1, g_steps=2, ema=False)
    with_cr = flops.train_step_flops([4, 6], [30, 70], batch_size=1, g_steps=2, ema=False, cr=2)
    # Forward on real and fake (2D), their weight gradients (2D) and input gradients but D's first layer's.
    assert with_cr - plain == 6 * 100 - 2 * 30
    # On the real images alone (--cr_images real): half of that.
    assert flops.train_step_flops([4, 6], [30, 70], batch_size=1, g_steps=2, ema=False, cr=1) - plain == 3 * 100 - 30


def test_a_run_counts_adaptive_r1_only_while_its_weight_is_above_0(tmp_path):
    from dcgan_tf.training import build

    run = build.build_run(tiny_config(tmp_path, c_dim=3, r1_gamma=0.1, r1_target=0.9))
    model, config = run.model, run.config

    def count(r1):
        return flops.train_step_flops(model.generator, model.discriminator, config.batch_size, config.g_steps,
                                      True, r1)

    assert flops.model_step_flops(model, config.batch_size) == count(False)  # The weight starts at 0: the penalty is skipped.
    model.r1_weight.assign(0.5)
    assert flops.model_step_flops(model, config.batch_size) == count(True) > count(False)


@pytest.mark.parametrize("cr_images,batches", [("both", 2), ("real", 1)])
def test_a_run_counts_the_batches_its_consistency_penalty_shows_d_again(tmp_path, cr_images, batches):
    from dcgan_tf.training import build

    run = build.build_run(tiny_config(tmp_path, c_dim=3, diffaug="cutout", cr_weight=1.0, cr_images=cr_images))
    model, config = run.model, run.config
    assert model.cr_fakes == (cr_images == "both")
    assert flops.model_step_flops(model, config.batch_size) == flops.train_step_flops(
        model.generator, model.discriminator, config.batch_size, config.g_steps, config.ema_decay > 0,
        cr=batches)


def test_a_run_past_cr_until_counts_no_consistency_passes(tmp_path):
    from dcgan_tf.training import build

    run = build.build_run(tiny_config(tmp_path, c_dim=3, diffaug="cutout", cr_weight=1.0, cr_until=10))
    model, config = run.model, run.config

    def count(cr):
        return flops.train_step_flops(model.generator, model.discriminator, config.batch_size, config.g_steps,
                                      config.ema_decay > 0, cr=cr)

    model.step.assign(9)  # The last step with the faded weight above 0.
    assert flops.model_step_flops(model, config.batch_size) == count(2) > count(0)
    model.step.assign(10)
    assert flops.model_step_flops(model, config.batch_size) == count(0)
