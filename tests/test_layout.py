"""The folders' direction of dependence, as the README's Architecture section draws it: data/, model/
and quality/ are libraries of explicit arguments and import nothing from the run-level code."""

import ast
import pathlib

import dcgan_tf

PACKAGE = pathlib.Path(dcgan_tf.__file__).parent
RUN_LEVEL = ("dcgan_tf.training", "dcgan_tf.use", "dcgan_tf.actions", "dcgan_tf.cli")


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_libraries_do_not_import_the_run_level_code():
    libraries = [p for folder in ("data", "model", "quality") for p in (PACKAGE / folder).rglob("*.py")]
    assert len(libraries) > 10
    wrong = {f"{p.relative_to(PACKAGE)}: {name}" for p in libraries for name in _imports(p)
             if name.startswith(RUN_LEVEL)}
    assert not wrong
