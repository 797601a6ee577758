"""Every --flag the README and docs/ write into a command is one that command takes: main.py's (and
dcgan-tf's) from RunConfig, a bench script's from its argparse options or main.py's (bench/quality.py's
recipes and bench/startup.py's --flags hand main.py flags on). A renamed or removed flag otherwise
lives on in the docs' copy-and-paste commands. A --flag in the prose must be one of those, or of the
other tools the docs name (pytest, TensorBoard, saved_model_cli). The same holds for the flags the
package's own messages and help texts tell a user to pass."""
import functools
import os
import re

import pytest
from absl import flags

from dcgan_tf import cli
from tests.conftest import REPO
from tests.test_docs_links import markdown_files, read

FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9_]*)(?![\w-])")
BENCH_SCRIPT = re.compile(r"bench/(\w+)\.py")
# What cli.run() and its parser add beside RunConfig's fields.
MAIN_EXTRAS = {"verbose", "version", "help", "helpfull", "helpshort"}
# Flags of the other tools the docs show: pytest, tensorboard, saved_model_cli.
OTHER_TOOLS = {"durations", "logdir", "dir", "tag_set", "signature_def", "inputs", "outdir"}


@functools.lru_cache(maxsize=None)
def main_flags():
    """main.py's flags as cli.define_flags makes them, with absl's --noX for each boolean."""
    flag_values = flags.FlagValues()
    cli.define_flags(flag_values)
    booleans = {name for name in flag_values if flag_values[name].boolean} | {"verbose"}
    return frozenset(set(flag_values) | MAIN_EXTRAS | {f"no{name}" for name in booleans})


@functools.lru_cache(maxsize=None)
def bench_flags(script):
    with open(os.path.join(REPO, "bench", f"{script}.py"), encoding="utf-8") as f:
        return frozenset(re.findall(r"add_argument\(\s*\"--(\w+)\"", f.read()))


def bench_scripts():
    return sorted(name[:-3] for name in os.listdir(os.path.join(REPO, "bench")) if name.endswith(".py"))


def logical_lines(text):
    """The text's lines, a command's backslash continuations joined to it."""
    return re.sub(r"\s*\\\n\s*", " ", text).splitlines()


def test_continued_lines_are_one_command():
    text = "    python main.py --train \\\n        --crop --dataset x\n`python bench/quality.py --steps 10`\n"
    assert logical_lines(text) == ["    python main.py --train --crop --dataset x", "`python bench/quality.py --steps 10`"]


def test_known_flags():
    assert {"train", "crop", "dataset", "ema_decay", "nocrop", "version"} <= main_flags()
    assert {"recipes", "seeds", "reuse", "plot_only"} <= bench_flags("quality")


@pytest.mark.parametrize("doc", markdown_files())
def test_flags_exist(doc):
    main = main_flags()
    anywhere = main.union(OTHER_TOOLS, *(bench_flags(script) for script in bench_scripts()))
    unknown = []
    for line in logical_lines(read(os.path.join(REPO, doc))):
        scripts = BENCH_SCRIPT.findall(line)
        if scripts:
            accepted = main.union(*(bench_flags(script) for script in scripts))
        elif "main.py" in line or "dcgan-tf " in line:
            accepted = main
        else:
            accepted = anywhere
        unknown += [f"--{name}" for name in FLAG.findall(line) if name not in accepted]
    assert not unknown, f"{doc}: flags that no command here defines: {sorted(set(unknown))}"


def test_package_names_only_real_flags():
    main = main_flags() | {"flag", "flags"}  # "--flag=value", "all options are --flags"
    unknown = []
    for folder, _, names in os.walk(os.path.join(REPO, "dcgan_tf")):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                unknown += [f"{os.path.relpath(path, REPO)}: --{flag}" for flag in FLAG.findall(read(path)) if flag not in main]
    assert not unknown, unknown
