"""Conv2D and Conv2DTranspose that compute small spatial sizes as one matrix multiply.

The deepest layers of a DCGAN are tiny in space and wide in channels (the simpsons D at 64x64 ends
in 4x4x512 -> 2x2x1024, its G starts with 2x2x1024 -> 4x4x512). TensorFlow's CPU convolutions
(oneDNN) run such shapes at a fraction of their speed on larger images. Measured on a 2-core AMD
EPYC (one thread, float32, batch 25, forward and backward), native against patches x kernel:
4x4x512 -> 2x2x1024 315 ms against 52 ms, 2x2x1024 -> 4x4x512 (transposed) 307 against 65, but
8x8x128 -> 4x4x256 12.5 against 21.4 and 16x16x128 -> 8x8x256 35 against 90 (bench/conv_forms.py).
What decides is the kernel's size over the number of positions: these layers take the matmul form
where the kernel holds at least MATMUL_MIN_WEIGHTS_PER_POSITION weights per output position (per
input position for Conv2DTranspose), and Keras's own convolution everywhere else.

The patches (and, for Conv2DTranspose, the placing of each input position's window) are a fixed
0/1 matrix times the positions (patch_selection): one small matmul whose gradient is another. Cut
out by slices and pads instead, the whole train step was 1.05-1.10x slower (64x64 and 128x128, both
precisions; docs/speed.md).

Same weights, names and results as keras.layers.Conv2D / Conv2DTranspose (the kernel is used as it
is stored), so checkpoints, the TF1 import and saved models do not see the difference; the
multiply-adds are the same too (padding taps included), so model/flops.py counts both forms alike.
Only channels_last, dilation 1 and one group take the matmul form.
"""

from __future__ import annotations

import itertools
import math

import keras
import numpy as np
from keras import ops

# Measured (bench/conv_forms.py): the matmul form was 2-6x faster at 819,000 weights per position and
# more; at 204,800 level in float32 and 1.45x in bfloat16 (the train step 2-3% sooner: left native);
# at 51,200 level or slower.
MATMUL_MIN_WEIGHTS_PER_POSITION = 400_000


def _same_padding(size_in: int, size_out: int, kernel: int, stride: int):
    """TensorFlow's SAME padding (before, after) of a convolution from size_in to size_out."""
    total = max((size_out - 1) * stride + kernel - size_in, 0)
    return total // 2, total - total // 2


def _spatial(shape):
    return shape[1], shape[2]


def takes_matmul_form(layer, positions: int) -> bool:
    """Whether the layer's configuration is one the matmul form implements, with kernel weights enough
    per position (`positions` spatial positions) for that form to be the faster one."""
    plain = (layer.data_format == "channels_last" and tuple(layer.dilation_rate) == (1, 1)
             and getattr(layer, "groups", 1) == 1 and layer.padding in ("same", "valid"))
    return plain and math.prod(layer.kernel.shape) >= MATMUL_MIN_WEIGHTS_PER_POSITION * positions


def patch_selection(input_size, output_size, kernel_size, strides, padding: str) -> np.ndarray:
    """The 0/1 matrix [output positions x kernel taps, input positions] of a Conv2D from input_size
    (h, w) to output_size: row (position, tap) picks the input position that tap reads there, and is
    all zeros where the tap falls on padding. Times the input it gives the patches; transposed, it
    places Conv2DTranspose's windows (a Conv2DTranspose is the gradient of a Conv2D the other way)."""
    (height, width), (out_h, out_w), (k_h, k_w), (s_h, s_w) = input_size, output_size, kernel_size, strides
    top = _same_padding(height, out_h, k_h, s_h)[0] if padding == "same" else 0
    left = _same_padding(width, out_w, k_w, s_w)[0] if padding == "same" else 0
    selection = np.zeros((out_h, out_w, k_h, k_w, height, width), np.float32)
    for i, j, di, dj in itertools.product(range(out_h), range(out_w), range(k_h), range(k_w)):
        row, column = i * s_h + di - top, j * s_w + dj - left
        if 0 <= row < height and 0 <= column < width:
            selection[i, j, di, dj, row, column] = 1
    return selection.reshape(out_h * out_w * k_h * k_w, height * width)


def conv_as_matmul(inputs, kernel, strides, padding: str, output_size):
    """Conv2D (channels_last, dilation 1) to output_size (h, w), as patches [batch x positions,
    kh*kw*cin] x kernel, the patches being patch_selection times the input's positions."""
    height, width = _spatial(inputs.shape)
    k_h, k_w, c_in, c_out = kernel.shape
    selection = ops.convert_to_tensor(patch_selection((height, width), output_size, (k_h, k_w), strides, padding),
                                      inputs.dtype)
    patches = ops.matmul(selection, ops.reshape(inputs, (-1, height * width, c_in)))  # [batch, positions x taps, cin]
    columns = ops.matmul(ops.reshape(patches, (-1, k_h * k_w * c_in)), ops.reshape(kernel, (k_h * k_w * c_in, c_out)))
    return ops.reshape(columns, (-1, *output_size, c_out))


def conv_transpose_as_matmul(inputs, kernel, strides, padding: str, output_size):
    """Conv2DTranspose (channels_last, dilation 1; kernel [kh, kw, cout, cin]) to output_size (h, w):
    each input position times the kernel gives a kh x kw window of the output, and the windows are
    summed into place (TensorFlow's conv2d_transpose, the gradient of a Conv2D from output_size to
    the input's size) by the transposed patch selection of that Conv2D."""
    height, width = _spatial(inputs.shape)
    k_h, k_w, c_out, c_in = kernel.shape
    placing = ops.convert_to_tensor(patch_selection(output_size, (height, width), (k_h, k_w), strides, padding).T,
                                    inputs.dtype)
    windows = ops.matmul(ops.reshape(inputs, (-1, c_in)), ops.transpose(ops.reshape(kernel, (k_h * k_w * c_out, c_in))))
    outputs = ops.matmul(placing, ops.reshape(windows, (-1, height * width * k_h * k_w, c_out)))
    return ops.reshape(outputs, (-1, *output_size, c_out))


def _add_bias_and_activate(layer, outputs):
    if layer.use_bias:
        outputs = ops.add(outputs, ops.reshape(layer.bias, (1, 1, 1, layer.filters)))
    return layer.activation(outputs) if layer.activation is not None else outputs


@keras.saving.register_keras_serializable(package="dcgan_tf", name="Conv2D")
class Conv2D(keras.layers.Conv2D):
    """keras.layers.Conv2D, computed as one matmul where its output has few positions for its kernel."""

    def convolution_op(self, inputs, kernel):
        height, width = _spatial(inputs.shape)
        if height is not None and width is not None:
            output_size = _spatial(self.compute_output_shape(inputs.shape))
            if takes_matmul_form(self, output_size[0] * output_size[1]):
                return conv_as_matmul(inputs, kernel, self.strides, self.padding, output_size)
        return super().convolution_op(inputs, kernel)


@keras.saving.register_keras_serializable(package="dcgan_tf", name="Conv2DTranspose")
class Conv2DTranspose(keras.layers.Conv2DTranspose):
    """keras.layers.Conv2DTranspose, computed as one matmul where its input has few positions for its
    kernel."""

    def call(self, inputs):
        height, width = _spatial(inputs.shape)
        if height is not None and width is not None and takes_matmul_form(self, height * width):
            output_size = _spatial(self.compute_output_shape(inputs.shape))
            outputs = conv_transpose_as_matmul(inputs, self.kernel, self.strides, self.padding, output_size)
            return _add_bias_and_activate(self, outputs)
        return super().call(inputs)
