"""A run's identity, folders and file names, in one place.

A run is named `{dataset}_{batch}_{height}_{width}` as the original program named it, plus a readable
suffix for each model-shaping option that differs from its architecture's preset (`_gf16_df16`,
`_mlp`, ...), or `--run NAME`. Its checkpoint folder holds config.json (the options it was trained
with), the checkpoints (ckpt-<step>.* and TensorFlow's list of them, "checkpoint"), metrics.csv,
quality.json, the real images' cached FID features, best/ (the best checkpoint), the report (losses.png,
training.gif) and the lock of the process training it (.lock); its samples (train_<epoch>_<step>.png),
TensorBoard logs and exports (<version>/saved_model.pb, model.tflite, generator.keras, dcgan_tf.json)
live in folders of the same name under --sample_dir, --log_dir and --export_dir. Runs trained before
the suffixes existed keep their plain names and are found by their config.json.

This module needs no TensorFlow: `--runs` and the lookups answer at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from dcgan_tf.errors import UserError

try:
    import fcntl
except ImportError:  # Not on POSIX.
    fcntl = None

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
QUALITY_FILE = "quality.json"
BEST_DIR = "best"
LOCK_FILE = ".lock"  # dcgan_tf/training/runlock.py
STATE_FILE = "checkpoint"  # TensorFlow's list of a folder's checkpoints
CHECKPOINT_PREFIX = "ckpt"  # a checkpoint is <folder>/ckpt-<step>.index and .data-* files
REAL_FEATURES_FILE = "fid_real_features.npz"  # the real images' FID features, cached
EXPORT_METADATA_FILE = "dcgan_tf.json"  # in an export version: z_dim, z_dist, step, weights
EXPORT_KERAS_FILE = "generator.keras"  # in an export version, beside the SavedModel
SAVED_MODEL_FILE = "saved_model.pb"  # what makes a folder a SavedModel
TFLITE_FILE = "model.tflite"  # --export's TF Lite file, in the SavedModel's folder
LOSS_FILE = "losses.png"
TRAINING_GIF = "training.gif"
GRID_PATTERN = re.compile(r"^train_(\d+)_(\d+)\.png$")

# Options that shape the model and its checkpoint: a run never changes them, and runs that differ in
# any of them never share a folder. Each has its short form in a run's name.
MODEL_FIELDS = ("arch", "output_height", "output_width", "c_dim", "z_dim", "gf_dim", "df_dim", "hidden_dim",
                "g_leaky")
_NAME_PARTS = {"z_dim": "z", "gf_dim": "gf", "df_dim": "df", "hidden_dim": "h", "c_dim": "c"}
# The options of the original name; a trained run is also looked up by these.
NAME_FIELDS = ("batch_size",) + MODEL_FIELDS


# ------------------------------------------------------------------------------------------------
# Files.
@contextlib.contextmanager
def atomic_path(path: str, suffix: str = "") -> Iterator[str]:
    """A temporary path beside `path` to write; it replaces `path` in one step when the block ends
    without an error, so a kill never leaves half a file (and a failed write leaves the old one).
    The name is the writer's own (process and thread), so two processes writing the same file never
    write into one temporary file. `suffix` keeps an extension that a writer insists on (np.savez
    adds .npz)."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}{suffix}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def exclusive(folder: str) -> Iterator[None]:
    """Holds an exclusive lock on `folder` for changes to it that several processes may make at once
    (a training's --eval_freq and an --eval of the same run both updating quality.json, two exports
    of one checkpoint swapping its folder), so that no update is lost: a `flock` on the folder itself
    (no lock file to leave behind), released when the block ends or the process dies in any way.
    It is not the run lock (training/runlock.py locks the file .lock in a run's folder, not the
    folder). Where the system has no flock, or none for folders, the block runs unlocked; each
    write is still atomic."""
    os.makedirs(folder or ".", exist_ok=True)
    if fcntl is None:
        yield
        return
    descriptor = os.open(folder or ".", os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(descriptor)  # Closing releases the lock.


def write_text(path: str, text: str) -> str:
    """Writes a text file atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return path


def write_json(path: str, value) -> str:
    """Writes a JSON file atomically, indented for people."""
    return write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def match_entry(root: str, name: str) -> Optional[str]:
    """The folder of `root` named `name`, ignoring case (an exact match first), or None."""
    if os.path.isdir(os.path.join(root, name)):
        return name
    if os.path.isdir(root):
        for entry in sorted(os.listdir(root)):
            if entry.lower() == name.lower() and os.path.isdir(os.path.join(root, entry)):
                return entry
    return None


LIVE_FOLDER = "live"


def picture_dir(sample_dir: str, run: str, step: Optional[int] = None, live: bool = False) -> str:
    """Where --generate, --visualize and --interpolate write: `<sample_dir>/<run>/step<N>/` for the
    checkpoint of step N (its `live/` subfolder for G's live weights), `<sample_dir>/<run>/` for a
    SavedModel (`step` None). Pictures of different checkpoints, or of the average and the live
    weights, never overwrite each other."""
    folder = os.path.join(sample_dir, run)
    if step is None:
        return folder
    folder = os.path.join(folder, f"step{step}")
    return os.path.join(folder, LIVE_FOLDER) if live else folder


VERSION_PATTERN = re.compile(r"^[0-9]+$")


def export_version_dir(export_dir: str, run: str, step: int, live: bool = False) -> str:
    """Where --export writes, in TensorFlow Serving's layout (a base folder `<export_dir>/<run>/` of
    integer version folders; the server serves the highest): `<export_dir>/<run>/<N>/` for the
    checkpoint of step N, `<export_dir>/<run>/live/<N>/` for G's live weights (a folder the server
    ignores, so the average stays the one served). Exports of different checkpoints, or of the
    average and the live weights, never replace each other."""
    folder = os.path.join(export_dir, run)
    if live:
        folder = os.path.join(folder, LIVE_FOLDER)
    return os.path.join(folder, str(int(step)))


def export_versions(folder: str) -> List[int]:
    """The versions of an export base folder, lowest first: its integer-named subfolders that hold a
    SavedModel (a `<N>.partial-<pid>` being written, or anything else, is not one)."""
    if not os.path.isdir(folder):
        return []
    return sorted(int(name) for name in os.listdir(folder)
                  if VERSION_PATTERN.fullmatch(name) and os.path.isfile(os.path.join(folder, name, SAVED_MODEL_FILE)))


def grid_file(epoch: int, step: int) -> str:
    """The sample grid of a step, named by the epoch that step belongs to (counted from 0)."""
    return f"train_{epoch:02d}_{step:04d}.png"


def sample_grids(folder: str) -> List[Tuple[int, int, str]]:
    """The fixed-z sample grids `train_{epoch}_{step}.png` of a run as (step, epoch, path), by step."""
    found = []
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            match = GRID_PATTERN.match(name)
            if match:
                found.append((int(match.group(2)), int(match.group(1)), os.path.join(folder, name)))
    return sorted(found)


# ------------------------------------------------------------------------------------------------
# Names.
def base_name(dataset: str, batch_size: int, height: int, width: int) -> str:
    """The original program's run name."""
    return f"{dataset}_{batch_size}_{height}_{width}"


def default_run_name(values: dict, preset: dict) -> str:
    """The run's default name: the original's, plus a part for each model-shaping option that differs
    from the architecture's preset (`preset`), so differently shaped runs never share a folder."""
    parts = [base_name(values["dataset"], values["batch_size"], values["output_height"], values["output_width"])]
    if values["arch"] != "simpsons":
        parts.append(values["arch"])
    for field, short in _NAME_PARTS.items():
        value = values.get(field)
        if field == "c_dim" and value != 1:
            continue  # 0 (from the data) or 3: colour is what the data decides unless told to train gray.
        if value is not None and value != preset.get(field):
            parts.append(f"{short}{value}")
    if values.get("g_leaky"):
        parts.append("leaky")
    return "_".join(parts)


# ------------------------------------------------------------------------------------------------
# Reading runs back.
class DamagedConfig(UserError):
    """config.json exists but cannot be read."""


def read_config(folder: str) -> Optional[dict]:
    """The options saved in a run folder, or None if it has no config.json; DamagedConfig if unreadable."""
    path = os.path.join(folder, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        if not isinstance(saved, dict):
            raise ValueError("not a run configuration")
    except (OSError, ValueError) as e:
        raise DamagedConfig(f"cannot read {path} ({e})") from None
    return saved


def keep_aside(path: str) -> str:
    """Moves a damaged file aside (never deleted, never over an earlier kept copy) to `<path>.damaged`
    (`.damaged2`, ...) and returns where it went."""
    kept, n = path + ".damaged", 1
    while os.path.exists(kept):
        n += 1
        kept = f"{path}.damaged{n}"
    os.replace(path, kept)
    return kept


def run_folder_of(checkpoint: str) -> Tuple[str, bool]:
    """(the run folder a checkpoint path lies in, whether it is the run's best): a run keeps its
    checkpoints in its folder, its best in <folder>/best/."""
    folder = os.path.dirname(checkpoint)
    if os.path.basename(folder) == BEST_DIR:
        return os.path.dirname(folder), True
    return folder, False


def checkpoint_path(folder: str, step) -> str:
    """The path (without .index) of the checkpoint of `step` in `folder`."""
    return os.path.join(folder, f"{CHECKPOINT_PREFIX}-{step}")


def checkpoint_step(path: str) -> int:
    """The step of a checkpoint path (<folder>/ckpt-<step>)."""
    return int(path.rsplit("-", 1)[1])


def checkpoint_files(folder: str) -> List[str]:
    """The ckpt-N checkpoints (paths without .index) in `folder`, oldest first, found by their index
    files (the checkpoints a run's CheckpointManager lists, even without its list file)."""
    pattern = re.compile(rf"^{re.escape(CHECKPOINT_PREFIX)}-(\d+)\.index$")
    found = [(int(m.group(1)), name[:-len(".index")]) for name in (os.listdir(folder) if os.path.isdir(folder) else [])
             if (m := pattern.match(name))]
    return [os.path.join(folder, name) for _, name in sorted(found)]


def has_checkpoint(folder: str) -> bool:
    """Whether a run folder holds a checkpoint (a ckpt-N index file), without TensorFlow: a run built
    there restores one, or fails to build."""
    return bool(checkpoint_files(folder))


@dataclasses.dataclass
class RunInfo:
    """What `--runs` shows of one run folder."""

    name: str
    folder: str
    config: Optional[dict]  # None: missing or damaged config.json.
    damaged: bool = False

    @property
    def dataset(self) -> Optional[str]:
        return self.config.get("dataset") if self.config else None

    @functools.cached_property
    def progress(self) -> tuple:
        """(step, epoch, last KID, quality.json's kept best or None, whether --patience has ended
        the run), read from the run's files only when shown."""
        config = self.config or {}
        return _progress(self.folder, config.get("keep_best"), config.get("patience") or 0)

    @property
    def updated(self) -> float:
        """When training or a measurement last wrote to the run (seconds since the epoch)."""
        times = [os.path.getmtime(path) for path in (os.path.join(self.folder, name) for name in (
            METRICS_FILE, QUALITY_FILE, STATE_FILE)) if os.path.exists(path)]
        return max(times) if times else os.path.getmtime(self.folder)


def read_quality(folder: str) -> dict:
    """The folder's quality.json ({"evaluations": [record, ...], "best": {"metric", "value", "step",
    "checkpoint"}}), or an empty one; UserError when it does not read."""
    path = os.path.join(folder, QUALITY_FILE)
    if not os.path.exists(path):
        return {"evaluations": []}
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        if not isinstance(saved, dict) or not isinstance(saved.get("evaluations"), list):
            raise ValueError("not a quality record")
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path} ({e}); move it aside (it will be started afresh) and run "
                        f"again.") from None
    return saved


def write_quality(folder: str, quality: dict) -> str:
    """Writes quality.json atomically: a kill never leaves half a file."""
    return write_json(os.path.join(folder, QUALITY_FILE), quality)


def update_quality(folder: str, change: Callable[[dict], None]) -> dict:
    """Reads the folder's quality.json, lets `change` alter it and writes it back, holding the folder's
    lock throughout (exclusive: a training and an --eval of the same run may both write it);
    returns the result."""
    with exclusive(folder):
        quality = read_quality(folder)
        change(quality)
        write_quality(folder, quality)
    return quality


def measurements_after_best(quality: dict) -> int:
    """How many measurements (distinct steps: a step measured twice counts once) a quality.json holds
    after its kept best; 0 without one."""
    best = quality.get("best")
    if not isinstance(best, dict) or best.get("step") is None:
        return 0
    return len({record.get("step") for record in quality.get("evaluations") or ()
                if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] > best["step"]})


def patience_spent(quality: dict, metric: str, patience: int) -> bool:
    """Whether a training with --keep_best `metric` and --patience `patience` has ended: that many
    measurements or more came after its kept best."""
    best = quality.get("best")
    return (bool(patience) and isinstance(best, dict) and best.get("metric") == metric
            and measurements_after_best(quality) >= patience)


def _progress(folder: str, keep_best: str, patience: int) -> tuple:
    """(step, epoch, last KID, kept best, ended by --patience) from metrics.csv's last row, quality.json
    and the newest checkpoint's name (a stop inside an epoch saves a step no metrics row has), without
    TensorFlow."""
    step = epoch = kid = best = None
    ended = False
    try:
        with open(os.path.join(folder, METRICS_FILE), encoding="utf-8") as f:
            lines = [line for line in f.read().splitlines() if line.strip()]
        if len(lines) > 1:
            last = lines[-1].split(",")
            epoch, step = int(last[0]) + 1, int(last[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        quality = read_quality(folder)
        evaluations = quality["evaluations"]
        kept = quality.get("best")
        if (isinstance(kept, dict) and isinstance(kept.get("value"), (int, float))
                and isinstance(kept.get("step"), int)):
            best, ended = kept, patience_spent(quality, keep_best, patience)
        kids = [e for e in evaluations if isinstance(e, dict) and e.get("kid") is not None]
        if kids:
            kid = float(kids[-1]["kid"])
            if kids[-1].get("step") is not None and (step is None or kids[-1]["step"] > step):
                step = int(kids[-1]["step"])
    except (UserError, ValueError, AttributeError, TypeError):
        pass
    newest = checkpoint_files(folder)[-1:]
    if newest:
        step = max(step or 0, checkpoint_step(newest[0]))
    return step, epoch, kid, best, ended


def list_runs(checkpoint_dir: str) -> List[RunInfo]:
    """Every run folder under `checkpoint_dir` (one with a config.json or a checkpoint), by name."""
    found = []
    if not os.path.isdir(checkpoint_dir):
        return found
    for name in sorted(os.listdir(checkpoint_dir)):
        folder = os.path.join(checkpoint_dir, name)
        if not os.path.isdir(folder):
            continue
        try:
            config, damaged = read_config(folder), False
        except DamagedConfig:
            config, damaged = None, True
        if config is None and not damaged and not has_checkpoint(folder):
            continue
        found.append(RunInfo(name, folder, config, damaged=damaged))
    return found


def describe_run(info: RunInfo) -> str:
    """One line of `--runs`."""
    if info.config is None:
        what = "config.json damaged" if info.damaged else "no config.json"
    else:
        c = info.config
        what = (f"{c.get('dataset')}, {c.get('arch')} {c.get('output_height')}x{c.get('output_width')}, "
                f"batch {c.get('batch_size')}, widths {c.get('gf_dim')}/{c.get('df_dim')}, z {c.get('z_dim')}")
        if c.get("init_from"):  # --init_from: which run's checkpoint it began from
            source, best = run_folder_of(str(c["init_from"]))
            what += f", from {os.path.basename(source)}'s {'best ' if best else ''}{os.path.basename(c['init_from'])}"
    step, epoch, kid, kept, ended = info.progress
    planned = info.config.get("epoch") if info.config else None
    progress = ", ".join(part for part in (
        f"step {step}" if step is not None else "",
        (f"epoch {epoch}" + (f" of {planned}" if isinstance(planned, int) else "")) if epoch is not None else "",
        "ended early by --patience" if ended else "",
        f"KID {kid:.3f}" if kid is not None else "",
        f"best {str(kept.get('metric')).upper()} {kept['value']:.3f} at step {kept['step']}" if kept else "",
        time.strftime("updated %Y-%m-%d %H:%M UTC", time.gmtime(info.updated))) if part)
    return f"{info.name}: {what}; {progress}"


def _same_dataset(info: RunInfo, dataset: str) -> bool:
    if info.dataset is not None:
        return str(info.dataset).lower() == dataset.lower()
    return info.name.lower().startswith(dataset.lower() + "_")  # No readable config: its name says.


def find_run(checkpoint_dir: str, dataset: str, run: str, given: Dict[str, object], preferred: str) -> RunInfo:
    """The trained run an action uses: `--run NAME` when given; else the run of `dataset` whose saved
    options agree with every model-shaping flag the user gave (`given`); `preferred` (the name these
    flags would train) wins a tie. UserError naming the runs there when none or several fit."""
    runs = list_runs(checkpoint_dir)
    if run:
        name = match_entry(checkpoint_dir, run)
        match = [info for info in runs if info.name == name]
        if not match:
            raise UserError(f"no run named {run} in {checkpoint_dir}" + _listing(runs) + "; train it first with "
                            "--train (with the same options), or pick a run there with --run NAME.")
        return match[0]
    of_dataset = [info for info in runs if _same_dataset(info, dataset)]
    if not of_dataset:
        raise UserError(f"no trained run of --dataset {dataset} in {checkpoint_dir}" + _listing(runs)
                        + f"; train one first with --train --dataset {dataset}, or point --checkpoint_dir "
                          f"at the folder that holds it.")
    fitting = [info for info in of_dataset if info.config is None or _agrees(info.config, given)]
    exact = [info for info in fitting if info.name.lower() == preferred.lower()]
    if exact:
        return exact[0]
    if len(fitting) == 1:
        return fitting[0]
    if not fitting:
        flags = " ".join(f"--{k} {v}" for k, v in sorted(given.items()))
        raise UserError(f"no run of {dataset} in {checkpoint_dir} was trained with {flags}" + _listing(of_dataset)
                        + "; drop those flags, or pick one with --run NAME.")
    raise UserError(f"{len(fitting)} runs of {dataset} in {checkpoint_dir} fit: "
                    + "; ".join(describe_run(info) for info in fitting)
                    + ". Pick one with --run NAME (--runs lists them all).")


def _agrees(saved: dict, given: Dict[str, object]) -> bool:
    return all(saved.get(name) == value for name, value in given.items() if name in saved)


def _listing(runs: List[RunInfo]) -> str:
    if not runs:
        return ""
    return " (runs there: " + ", ".join(info.name for info in runs) + ")"


def legacy_folder(checkpoint_dir: str, legacy: str, values: dict) -> Optional[str]:
    """The folder of a run trained before names had suffixes (`legacy`, the original's name) when its
    config.json shows the model `values` describe; else None."""
    name = match_entry(checkpoint_dir, legacy)
    if name is None:
        return None
    try:
        saved = read_config(os.path.join(checkpoint_dir, name))
    except DamagedConfig:
        return None
    if saved is None or "run" in saved:
        return None  # Named by this version: not a legacy run.
    same = all(saved.get(field) == values.get(field) for field in MODEL_FIELDS
               if field != "c_dim" or values.get("c_dim"))
    return name if same else None
