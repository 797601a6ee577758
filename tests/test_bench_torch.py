"""bench/torch_reference.py, the optional PyTorch row of bench/throughput.py: importing it costs no torch,
and where torch is installed its networks are the simpsons networks' twins, trainable weight for weight."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, tiny_config

BENCH = os.path.join(REPO, "bench")


def _reference():
    spec = importlib.util.spec_from_file_location("torch_reference", os.path.join(BENCH, "torch_reference.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_importing_it_does_not_import_torch():
    code = (f"import sys; sys.path.insert(0, {BENCH!r}); import torch_reference; "
            "print('torch' in sys.modules, torch_reference.available() == (torch_reference.importlib.util"
            ".find_spec('torch') is not None))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "True"], out.stderr


@pytest.mark.parametrize("size", [32, 64])
def test_the_torch_networks_have_the_simpsons_networks_weights(tmp_path, size):
    pytest.importorskip("torch", reason="the PyTorch row is optional; torch is not installed here")
    from dcgan_tf.model import nets

    config = tiny_config(tmp_path, output_height=size, c_dim=3, z_dim=100)
    keras_nets = nets.build_networks(config)
    torch_nets = _reference().simpsons_networks(size, config.gf_dim)
    for ours, theirs in zip(keras_nets, torch_nets):
        assert sum(int(w.numpy().size) for w in ours.trainable_weights) == sum(
            p.numel() for p in theirs.parameters()), ours.name
    images = torch_nets[0](__import__("torch").rand(3, 100))
    assert tuple(images.shape) == (3, 3, size, size) and tuple(torch_nets[1](images).shape) == (3, 1)
