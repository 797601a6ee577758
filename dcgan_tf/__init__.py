"""dcgan_tf: the Simpsons DCGAN (and friends) in Keras 3 / TensorFlow 2.

`import dcgan_tf` registers the networks' classes with Keras (package "dcgan_tf"), so that
`keras.saving.load_model("export/<run>/<step>/generator.keras")` reads an exported generator with safe mode
on. Keras (and with it TensorFlow) is not imported here: when it is not loaded yet, the classes are
registered as soon as it is, and `import dcgan_tf` (the command line's --help) stays instant.
"""

from dcgan_tf.import_hooks import around_first_import as _around_first_import

__version__ = "0.1.0"


def _register_with_keras() -> None:
    """Imports the networks, whose classes register themselves with Keras."""
    try:
        import dcgan_tf.model.nets  # noqa: F401
    except ImportError:  # A broken install must not break `import keras` for its user.
        pass


def _import_then_register(load, module) -> None:
    load()
    _register_with_keras()


if not _around_first_import("keras", _import_then_register):
    import sys as _sys

    if "keras" in _sys.modules:
        _register_with_keras()
