"""Built-in datasets: IDX / .npz files found in order, offline errors, and the real Fashion-MNIST."""

import os

import numpy as np
import pytest

from dcgan_tf.data import pipeline as data
from dcgan_tf.data import datasets
from dcgan_tf.errors import UserError
from tests.conftest import tiny_config, write_idx_images

DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No Keras cache, no Debian folder, no download: only what the test writes."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(datasets, "DEBIAN_DIR", str(tmp_path / "debian"))
    monkeypatch.setattr(datasets, "_download", lambda name: None)
    return tmp_path


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_in_data_dir(isolated, gz):
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    written = write_idx_images(isolated / "data" / "mnist" / name, count=5, gz=gz)
    images = datasets.load_builtin("mnist", str(isolated / "data"))
    assert images.shape == (5, 28, 28, 1) and images.dtype == np.uint8
    assert np.array_equal(images[..., 0], written)


def test_search_order_data_dir_then_keras_cache_then_debian(isolated):
    cache = isolated / "keras_home" / "datasets"
    os.makedirs(cache)
    x = np.full((3, 28, 28), 7, np.uint8)
    np.savez(cache / "mnist.npz", x_train=x, y_train=np.zeros(3, np.uint8))
    write_idx_images(isolated / "debian" / "fashion-mnist" / "train-images-idx3-ubyte.gz", count=4, seed=1)
    # The Keras cache's mnist.npz, then the Debian folder's Fashion-MNIST.
    assert np.array_equal(datasets.load_builtin("mnist", str(isolated / "data"))[..., 0], x)
    assert len(datasets.load_builtin("fashion_mnist", str(isolated / "data"))) == 4
    # Files under --data_dir win over both.
    write_idx_images(isolated / "data" / "mnist" / "train-images-idx3-ubyte.gz", count=2, seed=2)
    write_idx_images(isolated / "data" / "fashion_mnist" / "train-images-idx3-ubyte.gz", count=6, seed=3)
    assert len(datasets.load_builtin("mnist", str(isolated / "data"))) == 2
    assert len(datasets.load_builtin("fashion_mnist", str(isolated / "data"))) == 6


def test_keras_cache_fashion_mnist_folder(isolated):
    write_idx_images(isolated / "keras_home" / "datasets" / "fashion-mnist" / "train-images-idx3-ubyte.gz", count=3)
    assert datasets.load_builtin("fashion_mnist", str(isolated / "data")).shape == (3, 28, 28, 1)


def test_offline_with_nothing_found_says_where_to_put_the_files(isolated):
    with pytest.raises(UserError) as e:
        datasets.load_builtin("fashion_mnist", str(isolated / "data"))
    message = str(e.value)
    assert "\n" not in message
    assert os.path.join(str(isolated / "data"), "fashion_mnist") in message
    assert "train-images-idx3-ubyte.gz" in message


def test_damaged_files_are_user_errors(isolated):
    folder = isolated / "data" / "mnist"
    os.makedirs(folder)
    (folder / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x01" + b"\x00" * 12)
    with pytest.raises(UserError, match="not a readable IDX image file"):
        datasets.load_builtin("mnist", str(isolated / "data"))
    payload = write_idx_images(isolated / "x" / "f", count=2, gz=False)
    raw = (isolated / "x" / "f").read_bytes()
    (folder / "train-images-idx3-ubyte").write_bytes(raw[:-10])
    with pytest.raises(UserError, match="cut short"):
        datasets.load_builtin("mnist", str(isolated / "data"))
    assert payload.shape == (2, 28, 28)


def test_npz_needs_no_pickle(isolated):
    folder = isolated / "data" / "mnist"
    os.makedirs(folder)
    np.savez(folder / "mnist.npz", x_train=np.array([object()], dtype=object))
    with pytest.raises(UserError, match="mnist.npz"):
        datasets.load_builtin("mnist", str(isolated / "data"))


def test_fit_images_resizes_and_converts_channels():
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    assert data.fit_images(images, (28, 28)) is not None
    assert np.array_equal(data.fit_images(images, (28, 28)), images)
    big = data.fit_images(images, (64, 48), c_dim=3)
    assert big.shape == (3, 64, 48, 3) and np.array_equal(big[..., 0], big[..., 2])
    flat = np.full((1, 28, 28, 1), 200, np.uint8)
    assert np.all(data.fit_images(flat, (32, 32)) == 200)


def test_prepare_data_feeds_builtin_images_to_the_pipeline(isolated):
    write_idx_images(isolated / "data" / "mnist" / "train-images-idx3-ubyte.gz", count=8)
    from dcgan_tf.training import build

    config = tiny_config(isolated, dataset="mnist", output_height=32)
    config, image_set = build.prepare_data(config)
    assert config.c_dim == 1 and image_set.images.shape == (8, 32, 32, 1)
    batch = next(iter(data.make_dataset(image_set.images, 4, seed=0)))
    assert tuple(batch.shape) == (4, 32, 32, 1)


@pytest.mark.skipif(not os.path.exists(DEBIAN_FASHION), reason="Debian's dataset-fashion-mnist is not installed")
def test_a_few_steps_on_the_real_fashion_mnist(tmp_path, monkeypatch):
    import keras

    from dcgan_tf.training import train

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(datasets, "_download", lambda name: None)

    class StopAfter(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch >= 2:
                self.model.stop_training = True

    config = tiny_config(tmp_path, dataset="fashion_mnist", arch="mnist", output_height=28, c_dim=1,
                         gf_dim=4, df_dim=4, hidden_dim=8, batch_size=16, sample_freq=100, ckpt_freq=100)
    result = train.train(config, verbose=0, extra_callbacks=[StopAfter()])
    assert result.run.config.c_dim == 1
    assert int(result.run.model.step.numpy()) == 3
    assert np.isfinite(result.history["d_loss"][-1])
