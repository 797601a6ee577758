"""Generating from a run's checkpoint or from an exported SavedModel."""

import dataclasses
import json
import os

import numpy as np
import pytest
from PIL import Image

from dcgan_tf import runs
from dcgan_tf.use import export
from dcgan_tf.use import generate
from dcgan_tf.training import build
from dcgan_tf.data.pipeline import to_pixels
from dcgan_tf.errors import UserError
from dcgan_tf.model.latent import z_numpy
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A run with one checkpoint of freshly initialised tiny networks (no training needed)."""
    workdir = tmp_path_factory.mktemp("generate")
    config = tiny_config(workdir, c_dim=3, z_dist="normal01")
    run = build.build_run(config)
    config.save(config.run_checkpoint_dir)
    run.manager.save(checkpoint_number=0)
    return workdir, config, run


def _read(path):
    return np.asarray(Image.open(path))


def test_generate_from_checkpoint_is_repeatable_and_n_1_works(saved_run, tmp_path):
    _, config, run = saved_run
    source = generate.load_source(dataclasses.replace(config, seed=123))
    assert (source.z_dim, source.z_dist, source.name) == (8, "normal01", "faces_4_32_32_z8_gf4_df4")
    one = generate.generate(source, 1, str(tmp_path / "a"), seed=5)
    assert [os.path.relpath(p, tmp_path) for p in one] == [os.path.join("a", "generate_s5", "0000.png")]
    z = z_numpy(1, 8, "normal01", seed=5)
    expected = to_pixels(run.model.generator(z, training=False))[0]
    np.testing.assert_array_equal(_read(one[0]), expected)

    three = generate.generate(source, 3, str(tmp_path / "b"), seed=5)
    assert len(three) == 3
    np.testing.assert_array_equal(_read(three[0]), expected)  # same seed, same first image
    again = generate.generate(source, 3, str(tmp_path / "c"), seed=5)
    for p, q in zip(three, again):
        np.testing.assert_array_equal(_read(p), _read(q))
    other = generate.generate(source, 1, str(tmp_path / "d"), seed=6)
    assert not np.array_equal(_read(other[0]), expected)


def test_generate_grid(saved_run, tmp_path):
    _, config, run = saved_run
    source = generate.load_source(config, run)
    paths = generate.generate(source, 5, str(tmp_path), seed=2, grid=True)
    assert [os.path.basename(p) for p in paths] == ["generate_s2_n5.png"]
    grid = _read(paths[0])
    assert grid.shape == (64, 96, 3)  # 5 images of 32x32 as 2 rows x 3 columns
    images = to_pixels(run.model.generator(z_numpy(5, 8, "normal01", seed=2), training=False))
    np.testing.assert_array_equal(grid[32:64, 32:64], images[4])
    assert not grid[32:, 64:].any()  # the spare cell stays black
    with pytest.raises(UserError, match="--generate must be 1 or more"):
        generate.generate(source, 0, str(tmp_path), seed=2)


def test_saved_model_source_matches_the_checkpoint(saved_run, tmp_path):
    _, config, run = saved_run
    path = export.export_generator(run.model.generator, config, str(tmp_path / "export"))
    source = generate.from_saved_model(path)
    assert (source.z_dim, source.z_dist, source.name) == (8, "normal01", "faces_4_32_32_z8_gf4_df4")
    z = z_numpy(3, 8, "normal01", seed=1)
    np.testing.assert_allclose(source.images(z), run.model.generator(z, training=False), atol=1e-5)
    via_config = generate.load_source(dataclasses.replace(config, saved_model=path))
    assert via_config.origin == path

    meta = os.path.join(path, runs.EXPORT_METADATA_FILE)
    with open(meta) as f:
        saved = json.load(f)
    with open(meta, "w") as f:
        json.dump({k: v for k, v in saved.items() if k != "z_dim"}, f)
    with pytest.raises(UserError, match="cannot read z_dim and z_dist from .*export the model again"):
        generate.from_saved_model(path)
    with pytest.raises(UserError, match="is not a SavedModel folder"):
        generate.from_saved_model(str(tmp_path))
    # A folder that looks like one but holds garbage.
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "saved_model.pb").write_bytes(b"not a protobuf")
    (fake / runs.EXPORT_METADATA_FILE).write_text(json.dumps(saved))
    with pytest.raises(UserError, match="cannot be loaded as a generator"):
        generate.from_saved_model(str(fake))


def test_no_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no run named faces_4_32_32_z8_gf4_df4 in .*train it first"):
        generate.load_source(tiny_config(tmp_path, c_dim=3))
