"""Pictures of a trained generator and of its training.

- `visualize(source, option, ...)`: the original program's five visualize options (PNG and GIF
  written with Pillow; any batch size);
- `interpolate(source, keys, ...)`: a slerp walk through z vectors as a looping GIF and a strip PNG;
- `write_report(name, checkpoint_dir, sample_dir, log_dir)`: loss curves (matplotlib) from the run's
  TensorBoard scalars or its metrics.csv, and a GIF of the fixed-z sample grids in step order.
"""

from __future__ import annotations

import csv
import glob
import math
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from dcgan_tf.config import VISUALIZE_OPTIONS
from dcgan_tf.data import images as imgs
from dcgan_tf.data.pipeline import to_pixels
from dcgan_tf.errors import UserError
from dcgan_tf.runs import LOSS_FILE, METRICS_FILE, TRAINING_GIF, atomic_path, sample_grids
from dcgan_tf.model.latent import z_numpy, slerp_segments

TRAINING_GIF_FRAMES = 100  # At most, in --report's training.gif: a GIF of a long run stays small.


# ------------------------------------------------------------------------------------------------
# Tiling and GIFs.

def tile(pixels: np.ndarray, cols: int) -> np.ndarray:
    """uint8 images [N, H, W, C] -> one picture of `cols` columns (rows as needed; spare cells black)."""
    count, height, width, channels = pixels.shape
    rows = math.ceil(count / cols)
    out = np.zeros((rows * height, cols * width, channels), dtype=np.uint8)
    for i, picture in enumerate(pixels):
        r, c = divmod(i, cols)
        out[r * height:(r + 1) * height, c * width:(c + 1) * width] = picture
    return out


def save_gif(frames: Sequence[np.ndarray], path: str, duration_ms=100) -> str:
    """Writes uint8 frames [H, W, 1 or 3] as an animated GIF that loops; `duration_ms` is one number or
    one per frame. The file appears whole or not at all."""
    if not len(frames):
        raise ValueError("a GIF needs at least one frame")
    pictures = [Image.fromarray(f[..., 0] if f.shape[-1] == 1 else f) for f in frames]
    if not isinstance(duration_ms, (int, float)):
        duration_ms = [int(d) for d in duration_ms]
    with atomic_path(path) as tmp:
        pictures[0].save(tmp, format="GIF", save_all=True, append_images=pictures[1:], duration=duration_ms,
                         loop=0)
    return path


def _frame_ms(frames: int, total_ms: int) -> int:
    # GIF delays count in 10 ms; viewers slow anything under 20 ms down to 100 ms.
    return max(20, int(round(total_ms / max(frames, 1) / 10.0)) * 10)


# ------------------------------------------------------------------------------------------------
# The original's visualize options.

def sweep_values(count: int) -> np.ndarray:
    """`count` values evenly over [-1, 1] (one image per value across the batch); [0] for one."""
    return np.zeros(1, np.float32) if count == 1 else np.linspace(-1.0, 1.0, count, dtype=np.float32)


def sweep_z(base: np.ndarray, dim: int, values: np.ndarray) -> np.ndarray:
    """[len(values), z_dim]: `base` in every row, except dimension `dim`, which takes `values`."""
    z = np.tile(np.asarray(base, np.float32)[None], (len(values), 1))
    z[:, dim] = values
    return z


def visualize(source, option: int, folder: str, *, batch_size: int, seed: int, dims: int = 0) -> List[str]:
    """The original program's visualize options; returns the paths written into `folder`.

    0: one grid of `batch_size` random z, `test_<UTC time>.png`.
    1: for each of the first `dims` z dimensions (0: all), z = 0 except that dimension, which
       sweeps [-1, 1] across the batch: one grid per dimension, `test_arange_<dim>.png`.
    2: the same sweep around a random z (a new one per dimension), each as a GIF whose frames are
       the sweep, `test_gif_<dim>.gif`.
    3: the sweep of option 1 animated: `test_gif_<dim>.gif`.
    4: one GIF of all swept dimensions at once, frame k a grid of every dimension at sweep value
       k, forwards then backwards: `test_gif_merged.gif`.
    """
    if option not in VISUALIZE_OPTIONS:
        raise UserError(f"--visualize must be one of {', '.join(map(str, VISUALIZE_OPTIONS))}, got {option}.")
    if batch_size < 1:
        raise UserError(f"--batch_size must be a positive whole number, got {batch_size}.")
    if option == 0:
        stamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime())
        z = z_numpy(batch_size, source.z_dim, source.z_dist, seed=seed)
        return [imgs.save_grid(source.images(z), os.path.join(folder, f"test_{stamp}.png"))]
    if not 0 <= dims <= source.z_dim:
        raise UserError(f"--visualize_dims {dims} is more than the model's {source.z_dim} z dimensions; "
                        f"use --visualize_dims {source.z_dim} or fewer (0 means all).")
    swept = range(dims or source.z_dim)
    values = sweep_values(batch_size)
    zero = np.zeros(source.z_dim, np.float32)
    per_dim_ms = _frame_ms(batch_size, 2000)  # The original: a 2 s GIF per dimension.
    paths, merged = [], []
    if option == 2:
        bases = z_numpy(len(swept), source.z_dim, source.z_dist, seed=seed)
    for dim in swept:
        base = bases[dim] if option == 2 else zero
        images = source.images(sweep_z(base, dim, values))
        pixels = to_pixels(images)
        if option == 1:
            paths.append(imgs.save_grid(images, os.path.join(folder, f"test_arange_{dim}.png")))
        elif option in (2, 3):
            paths.append(save_gif(list(pixels), os.path.join(folder, f"test_gif_{dim}.gif"), per_dim_ms))
        else:
            merged.append(pixels)
    if option == 4:
        stack = np.stack(merged)  # [dims, batch, H, W, C]
        rows, cols = imgs.grid_shape(len(stack))
        order = list(range(batch_size)) + list(range(batch_size - 2, 0, -1))
        frames = [tile(stack[:, k], cols) for k in order]
        paths.append(save_gif(frames, os.path.join(folder, "test_gif_merged.gif"),
                              _frame_ms(len(frames), 8000)))  # The original: 8 s.
    return paths


# ------------------------------------------------------------------------------------------------
# Interpolation.

def interpolate(source, keys, steps: int, folder: str, name: str) -> Tuple[str, str]:
    """Slerp through the z vectors `keys` [K, z_dim] (K >= 2), `steps` images from one to the next.

    Writes `{name}.gif`, a looping walk key 0 -> 1 -> ... -> K-1 -> 0, and `{name}_strip.png`, one row
    per pair of consecutive keys (K-1 rows of steps + 1 images, both keys included). Returns both paths.
    """
    keys = np.asarray(keys, np.float32)
    if keys.ndim != 2 or len(keys) < 2 or keys.shape[1] != source.z_dim:
        raise UserError(f"--interpolate needs 2 or more z vectors of {source.z_dim} numbers, got shape "
                        f"{keys.shape}; use --interpolate 2 or more.")
    if steps < 1:
        raise UserError(f"--interpolate_steps must be 1 or more, got {steps}.")
    loop = slerp_segments(keys, steps, closed=True)  # [K, steps + 1, z_dim]
    z = loop.reshape(-1, source.z_dim)
    pixels = to_pixels(source.images(z))
    pixels = pixels.reshape(len(loop), steps + 1, *pixels.shape[1:])
    # The GIF: each segment without its last image (the next segment starts with it).
    frames = list(pixels[:, :-1].reshape(-1, *pixels.shape[2:]))
    gif = save_gif(frames, os.path.join(folder, f"{name}.gif"), _frame_ms(steps, 1000))
    strip = imgs.save_png(tile(pixels[:-1].reshape(-1, *pixels.shape[2:]), steps + 1),
                          os.path.join(folder, f"{name}_strip.png"))
    return gif, strip


# ------------------------------------------------------------------------------------------------
# Pictures of training.

_LOSS_TAGS = ("d_loss", "d_loss_real", "d_loss_fake", "g_loss")


def read_metrics_csv(path: str) -> Dict[str, np.ndarray]:
    """The columns of a run's metrics.csv (callbacks.MetricsLog: one row per epoch) as float arrays, with
    "epoch" counting completed epochs from 1; {} when there is nothing to read.

    A run killed while writing leaves a last line without its line end: it is dropped, as are rows
    that do not parse (a resume appending to a cut line). An epoch written twice (a resume redoing
    an epoch that was cut short) keeps its last row. Columns without any number (val_*) are left out.
    """
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        lines = f.read().splitlines(keepends=True)
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines = lines[:-1]
    rows = list(csv.reader(lines))
    if not rows or "epoch" not in rows[0]:
        return {}
    header = rows[0]
    by_epoch = {}
    for row in rows[1:]:
        if len(row) != len(header):
            continue
        try:
            values = [float("nan") if v.strip() in ("", "NA") else float(v) for v in row]
        except ValueError:
            continue
        epoch = values[header.index("epoch")]
        if math.isfinite(epoch):
            by_epoch[int(epoch)] = values
    if not by_epoch:
        return {}
    table = np.array([by_epoch[e] for e in sorted(by_epoch)], dtype=np.float64)
    columns = {name: table[:, i] for i, name in enumerate(header)
               if name != "epoch" and not np.all(np.isnan(table[:, i]))}
    return {"epoch": table[:, header.index("epoch")] + 1, **columns}


def read_event_scalars(log_dir: str) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Scalar summaries of every TensorBoard event file under `log_dir`: tag -> (steps, values),
    sorted by step. A step written twice (a resumed run redoing steps after its last checkpoint)
    keeps the value written last. Files cut short by a kill are read up to the cut."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    points: Dict[str, Dict[int, Tuple[float, float]]] = {}
    for path in sorted(glob.glob(os.path.join(log_dir, "**", "events.out.tfevents.*"), recursive=True)):
        for event in EventFileLoader(path).Load():
            for value in event.summary.value:
                if not value.HasField("tensor"):
                    continue
                array = tensor_util.make_ndarray(value.tensor)
                if array.ndim != 0 or not np.issubdtype(array.dtype, np.number):
                    continue  # Histograms, images.
                seen = points.setdefault(value.tag, {})
                if event.step not in seen or event.wall_time >= seen[event.step][0]:
                    seen[event.step] = (event.wall_time, float(array))
    return {tag: (np.array(sorted(seen), dtype=np.int64), np.array([seen[s][1] for s in sorted(seen)]))
            for tag, seen in points.items()}


def by_original_name(series: Dict[str, Tuple[np.ndarray, np.ndarray]]) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Training scalars under the original program's names, the last part of their tags
    ("loss/d_loss" -> "d_loss", see dcgan_tf/training/summaries.py), merged by step with those a run
    wrote before its tags were grouped (plain "d_loss"; the grouped tag wins a step written under
    both). eval/... tags stay as they are."""
    points: Dict[str, Dict[int, float]] = {}
    for tag in sorted(series, key=lambda t: "/" in t):  # Grouped tags last: they win.
        name = tag if tag.startswith("eval/") else tag.rsplit("/", 1)[-1]
        points.setdefault(name, {}).update(zip(series[tag][0].tolist(), series[tag][1].tolist()))
    return {name: (np.array(sorted(seen), dtype=np.int64), np.array([seen[s] for s in sorted(seen)]))
            for name, seen in points.items()}


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def plot_losses(series: Dict[str, Tuple[np.ndarray, np.ndarray]], path: str, x_label: str,
                title: str = "") -> str:
    """Loss curves, then (when present) D(x) and D(G(z)) or any other series, KID and FID (eval/...),
    one panel each, as a PNG drawn with matplotlib's Agg canvas (no display, no global pyplot state).
    Long noisy series get a moving average drawn over the raw values."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def group(keep):
        return {k: v for k, v in series.items() if keep(k)}

    # Quality measurements (--eval_freq, --eval) have their own scales: one panel each for KID and FID.
    measured = group(lambda k: k.startswith("eval/"))
    panels = [(group(lambda k: "loss" in k), "loss"),
              (group(lambda k: "loss" not in k and k not in measured), "D output"),
              (group(lambda k: k in measured and "kid" in k and "std" not in k), "KID"),
              (group(lambda k: k in measured and "fid" in k), "FID")]
    panels = panels[:1] + [panel for panel in panels[1:] if panel[0]]
    figure = Figure(figsize=(9, 3.2 * len(panels)), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (group, y_label) in zip(axes, panels):
        order = [t for t in _LOSS_TAGS if t in group] + sorted(t for t in group if t not in _LOSS_TAGS)
        for tag in order:
            x, y = group[tag]
            window = max(1, len(y) // 50)
            if window > 1:
                line, = ax.plot(x, y, linewidth=0.6, alpha=0.3)
                ax.plot(x, _smooth(y, window), color=line.get_color(), linewidth=1.4, label=tag)
            else:
                ax.plot(x, y, linewidth=1.4, marker="." if len(y) < 30 else None, label=tag)
        ax.set_ylabel(y_label)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    axes[-1].set_xlabel(x_label)
    if title:
        axes[0].set_title(title)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


def training_gif(folder: str, path: str) -> Optional[str]:
    """A GIF of the sample grids in `folder` in step order (at most TRAINING_GIF_FRAMES, evenly chosen,
    the first and last always in), each captioned with its epoch and step; None if there are none."""
    grids = sample_grids(folder)
    if not grids:
        return None
    picks = sorted(set(np.linspace(0, len(grids) - 1, min(len(grids), TRAINING_GIF_FRAMES)).round().astype(int)))
    pictures, gray = [], True
    for i in picks:
        step, epoch, file = grids[i]
        with Image.open(file) as opened:
            gray = gray and opened.mode == "L"
            pictures.append((step, epoch, opened.convert("RGB")))
    width, height = pictures[0][2].size
    frames = []
    for step, epoch, picture in pictures:
        if picture.size != (width, height):
            picture = picture.resize((width, height))
        canvas = Image.new("RGB", (width, height + 12))  # A band below the grid for its caption.
        canvas.paste(picture, (0, 0))
        draw = ImageDraw.Draw(canvas)
        texts = (f"epoch {epoch}  step {step}", f"step {step}", str(step))
        text = next((t for t in texts if draw.textlength(t) <= width - 4), texts[-1])
        draw.text((2, height), text, fill=(255, 255, 255))
        array = np.asarray(canvas)
        frames.append(array[..., :1] if gray else array)
    durations = [200] * (len(frames) - 1) + [1500]
    return save_gif(frames, path, durations)


def write_report(name: str, checkpoint_dir: str, sample_dir: str, log_dir: str) -> List[str]:
    """Pictures of the training of run `name`, written into its checkpoint folder `checkpoint_dir`:
    `losses.png` (the TensorBoard scalars per step in `log_dir` when the run has them, else
    metrics.csv per epoch) and `training.gif` (the sample grids in `sample_dir` over training).
    Returns the paths written."""
    paths = []
    series = by_original_name(read_event_scalars(log_dir)) if os.path.isdir(log_dir) else {}
    x_label, origin = "step", "TensorBoard scalars"  # The title names the source, not a machine's path.
    metrics = os.path.join(checkpoint_dir, METRICS_FILE)
    if not series and os.path.isfile(metrics):
        columns = read_metrics_csv(metrics)
        epochs = columns.pop("epoch", None)
        series, x_label, origin = {k: (epochs, v) for k, v in columns.items()}, "epoch", METRICS_FILE
    if series:
        paths.append(plot_losses(series, os.path.join(checkpoint_dir, LOSS_FILE), x_label,
                                 title=f"{name} ({origin})"))
    gif = training_gif(sample_dir, os.path.join(checkpoint_dir, TRAINING_GIF))
    if gif:
        paths.append(gif)
    if not paths:
        raise UserError(
            f"nothing to report for run {name}: no TensorBoard scalars in {log_dir}, no {METRICS_FILE} in "
            f"{checkpoint_dir} and no train_*.png grids in {sample_dir}; train first with --train, or give "
            f"the run's --checkpoint_dir, --sample_dir and --log_dir.")
    return paths
