"""import_hooks: wrapping a module's first import, and importing a module as if an optional one were
missing (the command line's Keras without IPython)."""

from __future__ import annotations

import gc
import importlib
import importlib.util
import subprocess
import sys
import textwrap

import pytest

from dcgan_tf import import_hooks


@pytest.fixture
def modules(tmp_path, monkeypatch):
    """A module `host_mod` that records whether it could import `optional_mod`, both on sys.path."""
    (tmp_path / "optional_mod.py").write_text("VALUE = 7\n")
    (tmp_path / "host_mod.py").write_text(textwrap.dedent("""
        try:
            import optional_mod
        except ImportError:
            optional_mod = None
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in ("host_mod", "optional_mod"):
        sys.modules.pop(name, None)
    sys.meta_path[:] = [h for h in sys.meta_path if getattr(h, "name", None) != "host_mod"]


def test_around_first_import_runs_once_around_the_load(modules):
    calls = []

    def around(load, module):
        calls.append(("before", hasattr(module, "optional_mod")))
        load()
        calls.append(("after", module.optional_mod.VALUE))

    assert import_hooks.around_first_import("host_mod", around)
    assert not import_hooks.around_first_import("host_mod", around)  # already wrapped
    import host_mod  # noqa: F401
    assert calls == [("before", False), ("after", 7)]
    assert not import_hooks.around_first_import("host_mod", around)  # already imported


def test_import_without_hides_the_optional_module_only_during_that_import(modules):
    assert import_hooks.import_without("host_mod", "optional_mod")
    assert not import_hooks.import_without("host_mod", "optional_mod")  # already wrapped
    import host_mod

    assert host_mod.optional_mod is None
    import optional_mod  # Importable again afterwards.

    assert optional_mod.VALUE == 7


def test_import_without_leaves_an_already_imported_optional_module(modules):
    import optional_mod

    assert import_hooks.import_without("host_mod", "optional_mod")
    import host_mod

    assert host_mod.optional_mod is optional_mod


def test_a_lookup_of_the_module_leaves_the_hook_for_its_import(modules):
    calls = []
    assert import_hooks.around_first_import("host_mod", lambda load, module: (calls.append("around"), load()))
    assert importlib.util.find_spec("host_mod") is not None  # as TensorFlow looks Keras up, unloaded
    assert calls == []
    importlib.import_module("host_mod")
    assert calls == ["around"]


def test_the_command_lines_keras_imports_neither_ipython_nor_matplotlib():
    pytest.importorskip("IPython")
    pytest.importorskip("matplotlib")
    # TensorFlow first, as the command line imports them: it looks Keras up before importing it.
    code = ("import sys; from dcgan_tf import cli, quiet; quiet.quiet_tensorflow(); cli.lighten_keras_import(); "
            "import tensorflow, keras; "
            "print('keras.src.saving.file_editor' in sys.modules, 'keras.src.visualization' in sys.modules, "
            "'IPython' in sys.modules, 'matplotlib' in sys.modules); "
            "from matplotlib.figure import Figure; print(Figure.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "False", "False", "Figure"]


def test_hooks_on_one_name_nest_the_last_installed_outermost(modules):
    calls = []

    def outer_or_inner(tag):
        def around(load, module):
            calls.append(f"{tag} before")
            load()
            calls.append(f"{tag} after")
        return around

    assert import_hooks.around_first_import("host_mod", outer_or_inner("first"))
    assert import_hooks.around_first_import("host_mod", outer_or_inner("second"))
    import host_mod  # noqa: F401
    assert calls == ["second before", "first before", "first after", "second after"]


@pytest.mark.parametrize("enabled", [True, False])
def test_import_for_good_pauses_the_collector_then_freezes_what_the_import_made(tmp_path, monkeypatch, enabled):
    (tmp_path / "lasting_mod.py").write_text("import gc\nCOLLECTING = gc.isenabled()\nTABLE = [[i] for i in range(1000)]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    before = gc.get_freeze_count()
    try:
        assert import_hooks.import_for_good("lasting_mod")
        assert not import_hooks.import_for_good("lasting_mod")  # already wrapped
        import lasting_mod

        assert lasting_mod.COLLECTING is False
        assert gc.get_freeze_count() >= before + 1000  # the module's lists among them
        assert gc.isenabled() is enabled
    finally:
        gc.unfreeze()
        (gc.enable if was else gc.disable)()
        sys.modules.pop("lasting_mod", None)
        sys.meta_path[:] = [h for h in sys.meta_path if getattr(h, "name", None) != "lasting_mod"]


def test_the_command_line_leaves_the_collector_nothing_to_walk_at_exit():
    # An exit handler registered before the command line's own runs after it (last in, first out).
    code = ("import atexit, gc, sys; atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0)); "
            "from dcgan_tf import cli; sys.argv = ['main.py', '--version']; cli.run()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "frozen True"
