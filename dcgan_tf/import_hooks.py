"""Wrapping the first import of a library (Keras, TensorFlow) without importing it any earlier, so
that `import dcgan_tf` and `--help` stay instant."""

from __future__ import annotations

import gc
import importlib.util
import sys
from typing import Callable


class _FirstImport:
    """A one-shot import hook: the module's own loading runs inside `around(load, module)`. It stays
    installed until the module is loaded, not merely looked up: TensorFlow calls
    `importlib.util.find_spec("keras")` before it imports Keras, and that spec is never loaded."""

    def __init__(self, name: str, around: Callable, key):
        self.name, self.around, self.key = name, around, key

    def find_spec(self, name, path=None, target=None):
        if name != self.name:
            return None
        position = sys.meta_path.index(self)
        del sys.meta_path[position]  # The finders after this one find the module's own spec.
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(position, self)
        loader = getattr(spec, "loader", None)
        if loader is not None and hasattr(loader, "exec_module"):
            load = loader.exec_module

            def exec_module(module):
                if self not in sys.meta_path:  # Another spec from this hook was loaded first.
                    return load(module)
                sys.meta_path.remove(self)
                return self.around(lambda: load(module), module)

            loader.exec_module = exec_module
        return spec


def around_first_import(name: str, around: Callable, key=None) -> bool:
    """Runs `around(load, module)` in place of the first import of `name` (`load()` does the import).
    Several hooks on one name nest, the last installed outermost. False, with nothing installed, when
    `name` is already imported or already wrapped by a hook of the same `key` (default: `around`)."""
    key = around if key is None else key
    if name in sys.modules or any(isinstance(h, _FirstImport) and h.name == name and h.key == key
                                  for h in sys.meta_path):
        return False
    sys.meta_path.insert(0, _FirstImport(name, around, key))
    return True


def import_without(name: str, optional: str) -> bool:
    """The first import of `name` runs as if the module `optional` were not installed (its
    `import optional` raises ImportError); afterwards `optional` imports as usual. For a library that
    imports an optional module it only uses elsewhere. False, with nothing changed, when `name` is
    already imported or wrapped."""
    def around(load, module):
        if optional in sys.modules:
            return load()
        sys.modules[optional] = None  # How the import system spells "not importable".
        try:
            load()
        finally:
            if optional in sys.modules and sys.modules[optional] is None:
                del sys.modules[optional]

    return around_first_import(name, around, key=("without", optional))


def _load_for_good(load, module) -> None:
    enabled = gc.isenabled()
    gc.disable()
    try:
        load()
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def import_for_good(name: str) -> bool:
    """The first import of `name` runs with Python's cyclic garbage collector paused, and what it
    created is then kept out of the collector's sight (gc.freeze): for a library whose objects live as
    long as the process (TensorFlow and Keras make about half a million), so that no later full
    collection walks them again. False, with nothing installed, when `name` is already imported or
    wrapped by this function."""
    return around_first_import(name, _load_for_good)
