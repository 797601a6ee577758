"""Visualize options, interpolation and the training report.

The sweeps and walks run on a transparent stand-in generator whose image is z itself (2x2 pixels of
colour z[:3]), so each test can read the z behind every picture back from the pixels.
"""

import os

import numpy as np
import pytest
from PIL import Image

from dcgan_tf.use import visualize
from dcgan_tf.data.pipeline import to_pixels
from dcgan_tf.errors import UserError
from dcgan_tf.use.generate import Source
from dcgan_tf.model.latent import z_numpy, slerp
from tests.conftest import TINY_FLAGS, run_main, tiny_config


def colour_source(z_dim=3, z_dist="uniform_signed"):
    return Source(z_dim, z_dist, "fake", "test", lambda z: np.tile(z[:, None, None, :3], (1, 2, 2, 1)))


def px(values):
    return to_pixels(np.asarray(values, np.float32))


def cells(picture, cols, count, size=2):
    """Colour of each size x size cell of a tiled picture, row by row."""
    return np.array([picture[(i // cols) * size, (i % cols) * size] for i in range(count)])


def gif_frames(path):
    with Image.open(path) as gif:
        frames = []
        for i in range(gif.n_frames):
            gif.seek(i)
            frames.append(np.asarray(gif.convert("RGB")))
    return frames


def test_option_1_sweeps_one_dimension_across_the_batch_others_zero(tmp_path):
    paths = visualize.visualize(colour_source(), 1, str(tmp_path), batch_size=5, seed=0, dims=2)
    assert sorted(os.path.basename(p) for p in paths) == ["test_arange_0.png", "test_arange_1.png"]
    values = np.linspace(-1, 1, 5)
    for dim in (0, 1):
        grid = np.asarray(Image.open(tmp_path / f"test_arange_{dim}.png"))
        assert grid.shape == (4, 6, 3)  # 5 images as 2 rows x 3 columns
        colours = cells(grid, 3, 5)
        np.testing.assert_array_equal(colours[:, dim], px(values))
        np.testing.assert_array_equal(np.delete(colours, dim, axis=1), px(np.zeros((5, 2))))


def test_option_2_animates_the_sweep_around_a_random_z_and_3_around_zero(tmp_path):
    values = np.linspace(-1, 1, 4)
    for option in (2, 3):
        folder = tmp_path / str(option)
        paths = visualize.visualize(colour_source(), option, str(folder), batch_size=4, seed=3, dims=0)
        assert sorted(os.path.basename(p) for p in paths) == [f"test_gif_{d}.gif" for d in range(3)]
        for dim in range(3):
            frames = gif_frames(folder / f"test_gif_{dim}.gif")
            assert len(frames) == 4
            colours = np.array([f[0, 0] for f in frames])
            np.testing.assert_array_equal(colours[:, dim], px(values))
            others = np.delete(colours, dim, axis=1)
            assert (others == others[0]).all()  # the rest of z stays put
            if option == 3:
                np.testing.assert_array_equal(others[0], px([0, 0]))
            else:
                base = z_numpy(3, 3, "uniform_signed", seed=3)[dim]
                np.testing.assert_array_equal(others[0], px(np.delete(base, dim)))


def test_option_4_merges_all_dimensions_forwards_then_back(tmp_path):
    paths = visualize.visualize(colour_source(), 4, str(tmp_path), batch_size=4, seed=0)
    assert [os.path.basename(p) for p in paths] == ["test_gif_merged.gif"]
    frames = gif_frames(paths[0])
    order = [0, 1, 2, 3, 2, 1]
    values = np.linspace(-1, 1, 4)
    assert len(frames) == len(order)
    for frame, k in zip(frames, order):
        assert frame.shape == (2, 6, 3)  # 3 dimensions side by side
        colours = cells(frame, 3, 3)
        np.testing.assert_array_equal(np.diag(colours), px([values[k]] * 3))


def test_option_0_and_batch_size_one(tmp_path):
    paths = visualize.visualize(colour_source(), 0, str(tmp_path), batch_size=3, seed=4)
    assert len(paths) == 1 and os.path.basename(paths[0]).startswith("test_")
    grid = np.asarray(Image.open(paths[0]))
    np.testing.assert_array_equal(cells(grid, 3, 3), px(z_numpy(3, 3, "uniform_signed", seed=4)))
    merged = visualize.visualize(colour_source(), 4, str(tmp_path / "one"), batch_size=1, seed=0)
    assert len(gif_frames(merged[0])) == 1
    arange = visualize.visualize(colour_source(), 1, str(tmp_path / "one"), batch_size=1, seed=0, dims=1)
    assert np.asarray(Image.open(arange[0])).shape == (2, 2, 3)


def test_too_many_dimensions_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="--visualize_dims 4 is more than the model's 3"):
        visualize.visualize(colour_source(), 1, str(tmp_path), batch_size=2, seed=0, dims=4)


def test_interpolation_gif_loops_through_the_keys_and_strip_shows_each_pair(tmp_path):
    keys = z_numpy(3, 3, "uniform_signed", seed=8)
    gif, strip = visualize.interpolate(colour_source(), keys, 4, str(tmp_path), "walk")
    assert os.path.basename(gif) == "walk.gif" and os.path.basename(strip) == "walk_strip.png"
    frames = [f[0, 0] for f in gif_frames(gif)]
    assert len(frames) == 12  # 3 segments (the last one back to the start) of 4 steps
    for i in range(3):
        np.testing.assert_array_equal(frames[4 * i], px(keys[i]))
    np.testing.assert_array_equal(frames[10], px(slerp(keys[2], keys[0], 0.5)))
    picture = np.asarray(Image.open(strip))
    assert picture.shape == (4, 10, 3)  # 2 pairs x 5 images
    colours = cells(picture, 5, 10)
    np.testing.assert_array_equal(colours[[0, 4, 5, 9]], px(keys[[0, 1, 1, 2]]))
    np.testing.assert_array_equal(colours[2], px(slerp(keys[0], keys[1], 0.5)))
    with pytest.raises(UserError, match="2 or more z vectors"):
        visualize.interpolate(colour_source(), keys[:1], 4, str(tmp_path), "walk")


# ------------------------------------------------------------------------------------------------
# The report.

HEADER = "epoch,d_g_z,d_loss,d_loss_fake,d_loss_real,d_x,g_loss,val_d_g_z,val_d_loss\r\n"


def test_metrics_csv_tolerates_cut_lines_repeats_and_junk(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(HEADER
                    + "0,0.4,1.5,0.7,0.8,0.6,0.9,NA,NA\r\n"
                    + "1,0.45,1.2,0.6,0.6,0.62,1.1,NA,NA\r\n"
                    + "2,0.5,1.1,0.5,0.6,0.6,1.3,NA\r\n"  # a short row
                    + "1,0.46,1.25,0.65,0.6,0.61,1.0,NA,NA\r\n"  # epoch 1 again, after a resume
                    + "2,0.5,1.0,0.5,0.5,0.6,1.4,NA,NA\r\n"
                    + "3,0.5,0.9,0.4,0.5,0.6,1.5,N", newline="")  # killed mid-line
    columns = visualize.read_metrics_csv(str(path))
    assert sorted(columns) == ["d_g_z", "d_loss", "d_loss_fake", "d_loss_real", "d_x", "epoch", "g_loss"]
    np.testing.assert_array_equal(columns["epoch"], [1, 2, 3])
    np.testing.assert_allclose(columns["d_loss"], [1.5, 1.25, 1.0])
    np.testing.assert_allclose(columns["g_loss"], [0.9, 1.0, 1.4])
    (tmp_path / "empty.csv").write_text("")
    assert visualize.read_metrics_csv(str(tmp_path / "empty.csv")) == {}


def test_event_scalars_per_step_later_writes_win(tmp_path):
    import tensorflow as tf

    for run, steps in ((0, range(1, 6)), (1, range(4, 8))):  # the second resumes at step 4
        writer = tf.summary.create_file_writer(str(tmp_path / "logs"), filename_suffix=f".{run}")
        with writer.as_default():
            for step in steps:
                tf.summary.scalar("g_loss", 10.0 * run + step, step=step)
                tf.summary.histogram("z", [1.0, 2.0], step=step)
                tf.summary.image("G", np.zeros((1, 2, 2, 3), np.float32), step=step)
        writer.close()
    scalars = visualize.read_event_scalars(str(tmp_path / "logs"))
    assert list(scalars) == ["g_loss"]
    steps, values = scalars["g_loss"]
    np.testing.assert_array_equal(steps, range(1, 8))
    np.testing.assert_allclose(values, [1, 2, 3, 14, 15, 16, 17])


def test_report_reads_grouped_tags_under_the_original_names():
    steps = lambda *s: np.array(s, dtype=np.int64)  # noqa: E731
    series = {"d_loss": (steps(1, 2, 3), np.array([1.0, 2.0, 3.0])),  # a run from before the grouping,
              "loss/d_loss": (steps(3, 4), np.array([30.0, 40.0])),  # resumed after it
              "probability/d_x": (steps(3, 4), np.array([0.5, 0.6])),
              "eval/kid": (steps(4), np.array([0.2]))}
    named = visualize.by_original_name(series)
    assert sorted(named) == ["d_loss", "d_x", "eval/kid"]
    np.testing.assert_array_equal(named["d_loss"][0], [1, 2, 3, 4])
    np.testing.assert_allclose(named["d_loss"][1], [1.0, 2.0, 30.0, 40.0])
    np.testing.assert_allclose(named["eval/kid"][1], [0.2])


def _fake_run(root, grid_names, metrics=True):
    config = tiny_config(root)
    os.makedirs(config.run_sample_dir)
    for i, name in enumerate(grid_names):
        Image.fromarray(np.full((8, 8, 3), 20 * i, np.uint8)).save(os.path.join(config.run_sample_dir, name))
    os.makedirs(config.run_checkpoint_dir)
    if metrics:
        with open(os.path.join(config.run_checkpoint_dir, "metrics.csv"), "w", newline="") as f:
            f.write(HEADER + "".join(f"{e},0.5,{1 + e},0.5,0.5,0.6,{2 - e / 4},NA,NA\r\n" for e in range(6)))
    return config


def test_report_plots_the_losses_and_animates_the_grids_in_step_order(tmp_path, monkeypatch):
    # Made in this order; step order is 900, 9900, 10000, not the names' text order (09, 100, 99).
    names = ["train_99_9900.png", "train_100_10000.png", "train_09_0900.png"]
    config = _fake_run(tmp_path, names)
    plotted = {}
    real_plot = visualize.plot_losses

    def spy(series, path, x_label, title=""):
        plotted.update(series=series, x_label=x_label, title=title)
        return real_plot(series, path, x_label, title)

    monkeypatch.setattr(visualize, "plot_losses", spy)
    paths = visualize.write_report(config.run, config.run_checkpoint_dir, config.run_sample_dir, config.run_log_dir)
    assert sorted(os.path.basename(p) for p in paths) == ["losses.png", "training.gif"]
    assert plotted["x_label"] == "epoch"
    # The title names the run and its source, not a path of this machine (the picture is shared).
    assert plotted["title"] == f"{config.run} (metrics.csv)"
    np.testing.assert_array_equal(plotted["series"]["d_loss"][0], np.arange(1, 7))
    with Image.open(os.path.join(config.run_checkpoint_dir, "losses.png")) as png:
        assert png.format == "PNG" and png.size[0] >= 600
    frames = gif_frames(os.path.join(config.run_checkpoint_dir, "training.gif"))
    assert [f.shape for f in frames] == [(8 + 12, 8, 3)] * 3  # grid plus caption band
    assert [int(f[0, 0, 0]) for f in frames] == [40, 0, 20]  # step order

    # TensorBoard scalars, when the run has them, win over the per-epoch CSV.
    import tensorflow as tf

    with tf.summary.create_file_writer(config.run_log_dir).as_default():
        for step in range(1, 4):
            tf.summary.scalar("d_loss", 0.5 * step, step=step)
    visualize.write_report(config.run, config.run_checkpoint_dir, config.run_sample_dir, config.run_log_dir)
    assert plotted["x_label"] == "step"
    assert plotted["title"] == f"{config.run} (TensorBoard scalars)"
    np.testing.assert_array_equal(plotted["series"]["d_loss"][0], [1, 2, 3])


def test_report_of_a_run_with_nothing_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="nothing to report for run faces_4_32_32_z8_gf4_df4"):
        config = tiny_config(tmp_path)
        visualize.write_report(config.run, config.run_checkpoint_dir, config.run_sample_dir, config.run_log_dir)


def test_report_flag_through_main(tmp_path):
    config = _fake_run(tmp_path, ["train_00_0002.png", "train_01_0004.png"])
    proc = run_main(["--report", "--dataset", "FACES", *TINY_FLAGS], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("losses.png", "training.gif"):
        assert os.path.join(config.run_checkpoint_dir, name).replace(str(tmp_path) + os.sep, "") in proc.stdout
        assert os.path.isfile(os.path.join(config.run_checkpoint_dir, name))
    assert not any(n.startswith("test_") for n in os.listdir(config.run_sample_dir))  # no test grid


def test_report_gives_quality_measurements_their_own_panels(tmp_path):
    steps = np.arange(1, 41)
    series = {"d_loss": (steps, np.ones(40)), "g_loss": (steps, np.ones(40)), "d_x": (steps, np.full(40, 0.5))}
    measured = {"eval/kid": (np.array([20, 40]), np.array([0.4, 0.3])),
                "eval/kid_live": (np.array([20, 40]), np.array([0.5, 0.35])),
                "eval/kid_std": (np.array([20, 40]), np.array([0.01, 0.01])),
                "eval/fid": (np.array([20, 40]), np.array([300.0, 250.0]))}
    heights = {}
    for name, data in (("plain", series), ("measured", {**series, **measured}), ("losses_only", {"d_loss": series["d_loss"]})):
        with Image.open(visualize.plot_losses(data, str(tmp_path / f"{name}.png"), "step")) as png:
            heights[name] = png.size[1]
    # One panel (320 px) each: losses | + D output | + KID and FID, apart from D's outputs.
    assert (heights["losses_only"], heights["plain"], heights["measured"]) == (320, 640, 1280)
