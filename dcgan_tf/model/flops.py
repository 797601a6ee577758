"""FLOPs of the networks and of one training step, counted from the layers' shapes.

Counted: the multiply-adds of Dense, Conv2D and Conv2DTranspose layers (2 FLOPs each), which hold
all but a few percent of the arithmetic (batch norm, activations, biases, DiffAugment, the losses and
Adam are elementwise and memory-bound; tests/test_flops.py checks the forward count against
TensorFlow's profiler, op by op). Per image:

- Dense: inputs x units (x the input's other non-batch dimensions).
- Conv2D: output height x width x kernel height x width x input channels x filters.
- Conv2DTranspose: *input* height x width x kernel height x width x input channels x filters (each
  input pixel meets the whole kernel once); for "same" padding this is TensorFlow's count of
  Conv2DBackpropInput.

Backward, per layer: the weight gradient costs as much as the forward pass and so does the gradient
of the layer's input; the input gradient of a network's first layer is skipped where nothing upstream
needs it (TensorFlow prunes the unused op from the traced step). One step of DCGAN.train_step (one D
update, then `g_steps` G updates with the same z, then the moving average's G forward), with G and D
the forward FLOPs of the whole batch and G1, D1 those of each network's first layer:

    D update:       G forward                                                G
                    D forward on real and on fake                           2D
                    D backward on both: weights 2D, inputs 2(D - D1)    4D - 2 D1
    each G update:  G forward, D forward                                 G + D
                    D backward, inputs only (to reach G)                     D
                    G backward: weights G, inputs G - G1                 2G - G1
    moving average: G forward (only with --ema_decay > 0)                    G
    R1 penalty (only with --r1_gamma > 0), on the real images:              3D
                    its input gradient D, and differentiating that gradient
                    for D's weights 2D (TensorFlow's profiler counts 3D in
                    the traced graph where D's layers take the matmul form
                    of model/conv.py, 4D where they are its native
                    convolutions, whose gradient spends one more pass:
                    tests/test_flops.py)
    consistency penalty (with --cr_weight > 0, before --cr_until): D again on a second
                    augmentation of each of its cr batches (2: the real
                    and the fake images; 1: the real ones alone, with
                    --cr_images real), as in the D update          cr (3D - D1)

    step = G (1 + 3 g_steps + ema) - g_steps G1 + D (6 + 2 g_steps + 3 r1 + 3 cr) - D1 (2 + cr)

Mixed precision changes the arithmetic's speed, not its count.
"""

from __future__ import annotations

import dataclasses
import math
from typing import List

import keras

from dcgan_tf.model import losses

COUNTED = (keras.layers.Conv2DTranspose, keras.layers.Conv2D, keras.layers.Dense)


@dataclasses.dataclass(frozen=True)
class LayerFlops:
    name: str
    kind: str  # "Dense", "Conv2D" or "Conv2DTranspose"
    flops: int  # forward FLOPs per image (2 x multiply-adds)


def _input_shape(layer) -> tuple:
    shapes = getattr(layer, "_build_shapes_dict", None) or {}
    shape = next(iter(shapes.values()), None)
    if shape is None:
        raise ValueError(f"layer {layer.name} is not built; build the network (call it once) first")
    return tuple(shape)


def layer_flops(layer) -> LayerFlops:
    """Forward FLOPs per image of one built Dense, Conv2D or Conv2DTranspose layer."""
    shape = _input_shape(layer)
    kind = type(layer).__name__
    if isinstance(layer, keras.layers.Conv2DTranspose):
        kh, kw, filters, channels = layer.kernel.shape  # Transposed kernels are (h, w, out, in).
        macs = math.prod(shape[1:3]) * kh * kw * channels * filters
        kind = "Conv2DTranspose"
    elif isinstance(layer, keras.layers.Conv2D):
        kh, kw, channels, filters = layer.kernel.shape
        out = layer.compute_output_shape(shape)
        macs = math.prod(out[1:3]) * kh * kw * channels * filters // max(1, getattr(layer, "groups", 1))
        kind = "Conv2D"
    elif isinstance(layer, keras.layers.Dense):
        inputs, units = layer.kernel.shape
        macs = math.prod(shape[1:-1]) * inputs * units
        kind = "Dense"
    else:
        raise TypeError(f"{layer.name}: {type(layer).__name__} is not counted")
    return LayerFlops(layer.name, kind, int(2 * macs))


def network_flops(model) -> List[LayerFlops]:
    """The counted layers of a built network, in the order they were created (which is the order
    they run in, for every architecture of dcgan_tf.model.nets), with their forward FLOPs per image."""
    return [layer_flops(layer) for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, COUNTED)]


def forward_flops(model) -> int:
    """Forward FLOPs per image of a built network."""
    return sum(layer.flops for layer in network_flops(model))


def train_step_flops(generator, discriminator, batch_size: int, g_steps: int, ema: bool,
                     r1: bool = False, cr: int = 0) -> int:
    """FLOPs of one training step of the whole batch (the module docstring's accounting); `cr`: the
    batches the consistency penalty shows D a second time (0, 1 or 2)."""
    g_layers, d_layers = network_flops(generator), network_flops(discriminator)
    g, g1 = (batch_size * sum(l.flops for l in g_layers), batch_size * g_layers[0].flops)
    d, d1 = (batch_size * sum(l.flops for l in d_layers), batch_size * d_layers[0].flops)
    r1 = int(bool(r1))
    return (g * (1 + 3 * g_steps + int(bool(ema))) - g_steps * g1
            + d * (6 + 2 * g_steps + 3 * r1 + 3 * cr) - d1 * (2 + cr))


def model_step_flops(model, batch_size: int) -> int:
    """train_step_flops of a built DCGAN (dcgan_tf/model/gan.py) in its present state, at `batch_size`."""
    # R1's passes run at full weight, and while an adaptive weight is above 0 (it starts at 0).
    r1 = model.r1_gamma > 0 and (model.r1_weight is None or float(model.r1_weight.numpy()) > 0)
    # The consistency penalty shows D the real batch again, and the fakes unless --cr_images real;
    # its passes are skipped where its (faded) weight is 0, as in DCGAN._consistency.
    cr_on = float(losses.faded_weight(model.cr_weight, model.step, model.cr_until)) > 0
    cr = 1 + model.cr_fakes if cr_on else 0
    return train_step_flops(model.generator, model.discriminator, batch_size, model.g_steps,
                            model.ema_generator is not None, r1, cr)
