"""Import of checkpoints written by the original TensorFlow 1 program (`--import_tf1 PATH`).

The original saved its variables under TF1 scopes: `generator/g_h0_lin/Matrix` and `/bias` (the
dense layer, kernel [in, out] as in Keras), `generator/g_bn{0..4}/{beta,gamma,moving_mean,
moving_variance}`, `generator/g_h{1..5}/w` and `/biases` (transposed-conv kernels [k, k, out, in],
as in Keras), `discriminator/d_h{0..4}_conv/w` and `/biases`, `discriminator/d_bn{1..4}/...` and
`discriminator/d_h5_lin/Matrix` and `/bias`. This port's layers carry the same names, so each
variable maps onto one Keras variable with the same layout. Shapes are checked first (a mismatch
names the variable, both shapes and the flag to change); then the values are copied and saved as
a normal checkpoint of the run the flags name, so test mode, --generate, --export and --train
(which continues training from it) all work on it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import List, Tuple

import numpy as np

from dcgan_tf.errors import UserError

BN_NAMES = ("beta", "gamma", "moving_mean", "moving_variance")
_SIZE_HINT = "size"  # Marks an axis that the output size decides.


def _dense(scope, layer, hints, bias_hints=None):
    return [(f"{scope}/Matrix", layer.kernel, hints), (f"{scope}/bias", layer.bias, bias_hints or {})]


def _conv(scope, layer, hints=None):
    return [(f"{scope}/w", layer.kernel, hints or {}), (f"{scope}/biases", layer.bias, {})]


def _bn(scope, layer, hints=None):
    return [(f"{scope}/{name}", getattr(layer, name), hints or {}) for name in BN_NAMES]


def variable_map(generator, discriminator) -> List[Tuple[str, object, dict]]:
    """(TF1 variable name, Keras variable, {axis: flag}) for every variable of both networks.

    The order is the checking order: the variables that pin down --c_dim, --gf_dim, --z_dim and
    --df_dim come first, so a later mismatch can only be the output size (or a foreign checkpoint).
    """
    g, d = generator, discriminator
    n = len(g.deconvs)
    entries = _conv(f"generator/g_h{n}", g.deconvs[-1], {2: "c_dim", 3: "gf_dim"})
    entries += _dense("generator/g_h0_lin", g.g_h0_lin, {0: "z_dim", 1: _SIZE_HINT}, {0: _SIZE_HINT})
    entries += _conv("discriminator/d_h0_conv", d.convs[0], {2: "c_dim", 3: "df_dim"})
    entries += _bn("generator/g_bn0", g.g_bn0, {0: _SIZE_HINT})
    for i, (deconv, bn) in enumerate(zip(g.deconvs[:-1], g.bns), start=1):
        entries += _conv(f"generator/g_h{i}", deconv) + _bn(f"generator/g_bn{i}", bn)
    for i, (conv, bn) in enumerate(zip(d.convs[1:], d.bns), start=1):
        entries += _conv(f"discriminator/d_h{i}_conv", conv) + _bn(f"discriminator/d_bn{i}", bn)
    entries += _dense("discriminator/d_h5_lin", d.d_h5_lin, {0: _SIZE_HINT})
    return entries


def _checkpoint_prefix(path: str) -> str:
    import tensorflow as tf

    if os.path.isdir(path):
        prefix = tf.train.latest_checkpoint(path)
        if prefix is None:
            raise UserError(f"--import_tf1 {path} is a folder without a 'checkpoint' file; give the "
                            f"checkpoint's prefix, e.g. {os.path.join(path, 'DCGAN.model-12000')}.")
        return prefix
    if not (os.path.exists(path + ".index") or os.path.exists(path)):
        raise UserError(f"--import_tf1 {path}: no such checkpoint (expected {path}.index); give the prefix of "
                        f"a checkpoint of the original program, e.g. checkpoint/<run>/DCGAN.model-12000, or "
                        f"its folder.")
    return path


def _read(prefix: str):
    import tensorflow as tf

    try:
        return tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise UserError(f"cannot read the TF1 checkpoint {prefix} ({first}); give the prefix of a checkpoint "
                        f"written by the original program (the part before .index).") from None


def infer_c_dim(reader) -> int:
    """The checkpoint's image channels (from the generator's last kernel), for --c_dim 0."""
    name = "generator/g_h5/w"
    shapes = reader.get_variable_to_shape_map()
    if name not in shapes or len(shapes[name]) != 4:
        _missing(name, shapes)
    return int(shapes[name][2])


def _missing(name: str, shapes: dict):
    known = sorted(shapes)
    raise UserError(
        f"the checkpoint has no variable {name}, so it is not a checkpoint of the original Simpsons "
        f"DCGAN (it holds {len(known)} variables, e.g. {', '.join(known[:3]) or 'none'}).")


def _hint(flag: str, name: str, axis: int, ckpt_shape, config) -> str:
    if flag == _SIZE_HINT:
        top = config.gf_dim * 16 if name.startswith("generator") else config.df_dim * 16
        cells = ckpt_shape[axis] / top
        side = math.isqrt(int(cells)) if cells == int(cells) else 0
        suggestion = (f" (for square images: --output_height {32 * side})" if side and side * side == cells
                      else "")
        return (f"change --output_height/--output_width: the checkpoint was made for "
                f"ceil(height/32) * ceil(width/32) = {cells:g}{suggestion}")
    if flag:
        return f"use --{flag} {ckpt_shape[axis]}"
    return ("this checkpoint's layers do not have the shapes of the simpsons architecture (5x5 kernels, "
            "channels doubling per layer)")


def check_shapes(reader, entries, config, source: str) -> None:
    """UserError at the first variable whose shape differs from this model's (in `entries` order)."""
    shapes = reader.get_variable_to_shape_map()
    for name, variable, hints in entries:
        if name not in shapes:
            _missing(name, shapes)
        ckpt_shape, model_shape = list(shapes[name]), list(variable.shape)
        if ckpt_shape == model_shape:
            continue
        flag, axis = "", 0
        if len(ckpt_shape) == len(model_shape):
            axis = next(i for i, (a, b) in enumerate(zip(ckpt_shape, model_shape)) if a != b)
            flag = hints.get(axis, "")
        hint = _hint(flag, name, axis, ckpt_shape, config)
        raise UserError(f"{source}: variable {name} has shape {ckpt_shape} but this model's is {model_shape}; "
                        f"{hint}.")


def _step_of(prefix: str) -> int:
    """The original's step counter, which it kept only in the checkpoint's name (DCGAN.model-<step>)."""
    match = re.search(r"-(\d+)$", prefix)
    return int(match.group(1)) if match else 0


def import_tf1_checkpoint(path: str, config) -> str:
    """Copies the original program's checkpoint at `path` (prefix or folder) into a new checkpoint of
    the run `config` names (models built from its flags; --c_dim 0 takes the checkpoint's) and
    returns that checkpoint's path. Refuses to overwrite a run that already has checkpoints."""
    from dcgan_tf.training.runlock import RunLock

    if config.arch != "simpsons":
        raise UserError(f"--import_tf1 reads checkpoints of the original Simpsons program, whose networks are "
                        f"the simpsons architecture, not {config.arch}; use --arch simpsons.")
    prefix = _checkpoint_prefix(path)
    reader = _read(prefix)
    if config.c_dim == 0:
        config = dataclasses.replace(config, c_dim=infer_c_dim(reader))
    # The import writes the run's first checkpoint: it holds the run as a training does, so a --train
    # of the same run starting meanwhile is refused (and this import, if one is training it).
    with RunLock(config.run_checkpoint_dir, config.run):
        return _import_into_new_run(reader, prefix, config)


def _import_into_new_run(reader, prefix: str, config) -> str:
    import tensorflow as tf

    from dcgan_tf.training import build

    if tf.train.latest_checkpoint(config.run_checkpoint_dir):
        raise UserError(f"{config.run_checkpoint_dir} already holds checkpoints; import as a new run "
                        f"(--run NEW_NAME) so that nothing is overwritten.")
    run = build.build_run(config)
    entries = variable_map(run.model.generator, run.model.discriminator)
    check_shapes(reader, entries, config, prefix)
    for name, variable, _ in entries:
        variable.assign(np.asarray(reader.get_tensor(name)).astype(variable.dtype))
    run.model.reset_ema()  # The average of G (if the recipe keeps one) starts from the imported weights.
    step = _step_of(prefix)
    run.model.step.assign(step)
    run.config.save(config.run_checkpoint_dir)  # build_run settled `--precision auto`: the run's own from now
    return run.manager.save(checkpoint_number=step)
