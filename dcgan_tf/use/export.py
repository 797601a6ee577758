"""The generator as a TensorFlow SavedModel, usable without this package.

Signature "serving_default": input `z` float32 [batch, z_dim]; outputs `images` float32
[batch, H, W, C] in [-1, 1] and `pixels` uint8 [batch, H, W, C]. The generator runs in inference
mode (batch norm with its moving averages). `dcgan_tf.json` beside the model says how to draw z,
and the step and weights (average or live) it was exported from. --export writes one version folder
per checkpoint, TensorFlow Serving's layout (runs.export_version_dir).

Beside it, in the same folder, `generator.keras`: the generator in Keras's own format, for
`keras.saving.load_model` after `import dcgan_tf` (its classes are registered with Keras).
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from typing import Optional

import tensorflow as tf

from dcgan_tf.runs import EXPORT_KERAS_FILE, EXPORT_METADATA_FILE, TFLITE_FILE, atomic_path, exclusive


class GeneratorExport(tf.Module):
    """A snapshot of the generator's weights as uniquely named variables, and the serving function.

    The weights are copied into variables named by their Keras paths ("generator/g_bn1/gamma", ...)
    and the generator runs through `stateless_call` on them: Keras's own variable names repeat across
    layers ("generator/gamma"), which breaks session-based loaders such as `saved_model_cli run`.
    """

    def __init__(self, generator, z_dim: int):
        super().__init__(name="generator_export")
        # A bound method, not the model: only the generator's code is saved, not its variables twice.
        self._stateless_call = generator.stateless_call
        self.trainable = [tf.Variable(v.value, name=v.path, trainable=False)
                          for v in generator.trainable_variables]
        self.non_trainable = [tf.Variable(v.value, name=v.path, trainable=False)
                              for v in generator.non_trainable_variables]
        self.serve = tf.function(
            self._serve, input_signature=[tf.TensorSpec([None, z_dim], tf.float32, name="z")])

    def _serve(self, z):
        images, _ = self._stateless_call(self.trainable, self.non_trainable, z, training=False)
        images = tf.cast(images, tf.float32)
        pixels = tf.cast(tf.clip_by_value(tf.round((images + 1.0) * 127.5), 0.0, 255.0), tf.uint8)
        return {"images": images, "pixels": pixels}


def export_generator(generator, config, path: str, step: Optional[int] = None, weights: str = "average") -> str:
    """Writes the SavedModel to `path`, with `dcgan_tf.json` and the generator as `generator.keras`
    among its files, and returns `path`. dcgan_tf.json records `step` (the checkpoint's) and `weights`:
    "average" (the moving average of G's weights), "live" (G's live weights, --live_weights) or
    "generator" (G's weights in a run that keeps no average).

    An earlier export at `path` (the same checkpoint exported again) is replaced in one swap: the new
    one is written beside it first, so a failed or killed export leaves the earlier one in place (or,
    killed between the two renames, in `<path>.replaced`). Two processes exporting the same checkpoint
    each write their own `<path>.partial-<pid>` and swap in turn, holding the base folder's lock."""
    module = GeneratorExport(generator, config.z_dim)
    path = path.rstrip("/\\")
    tmp, old = f"{path}.partial-{os.getpid()}", path + ".replaced"
    shutil.rmtree(tmp, ignore_errors=True)
    tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve})
    metadata = {"z_dim": config.z_dim, "z_dist": config.z_dist, "arch": config.arch,
                "output_height": config.output_height, "output_width": config.output_width,
                "c_dim": config.c_dim, "run_name": config.run,
                "step": None if step is None else int(step), "weights": weights}
    with open(os.path.join(tmp, EXPORT_METADATA_FILE), "w", encoding="utf-8") as f:
        json.dump(metadata, f, indent=2)
    generator.save(os.path.join(tmp, EXPORT_KERAS_FILE))
    with exclusive(os.path.dirname(path)):
        _remove_partials_of_dead_processes(path)
        if os.path.isdir(path):
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    return path


def _remove_partials_of_dead_processes(path: str) -> None:
    """Deletes `<path>.partial-<pid>` folders that a killed export of this host left behind."""
    folder, prefix = os.path.dirname(path) or ".", os.path.basename(path) + ".partial-"
    for name in os.listdir(folder):
        pid = name[len(prefix):]
        if not (name.startswith(prefix) and pid.isdigit()) or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
        except OSError:
            pass  # Alive (another user's process): leave it.


def to_tflite(saved_model_path: str, output_path: str = "") -> str:
    """Converts an exported SavedModel (its serving_default signature: z -> images, pixels) to a
    TensorFlow Lite model, by default `model.tflite` inside the SavedModel folder; returns its path.
    An export base folder (export/<run>) means its newest version, as for --saved_model.

    Run it with `tflite_interpreter(path).get_signature_runner("serving_default")(z=z)`.
    """
    from dcgan_tf.use.generate import resolve_saved_model

    saved_model_path = resolve_saved_model(saved_model_path)
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_path, signature_keys=["serving_default"])
    flatbuffer = converter.convert()
    output_path = output_path or os.path.join(saved_model_path, TFLITE_FILE)
    with atomic_path(output_path) as tmp:
        with open(tmp, "wb") as f:
            f.write(flatbuffer)
    return output_path


def tflite_interpreter(model_path: str):
    """An interpreter for a .tflite file: LiteRT's (`pip install ai-edge-litert`) when it is
    installed, else TensorFlow's own tf.lite.Interpreter, whose notice that it moves to LiteRT is
    silenced here. Either has `get_signature_runner("serving_default")`."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"\s*Warning: tf\.lite\.Interpreter is deprecated",
                                    category=UserWarning)
            return tf.lite.Interpreter(model_path=model_path)
    return Interpreter(model_path=model_path)
