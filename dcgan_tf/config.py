"""RunConfig: the one source of truth for a run's options.

Built from the command-line flags (cli.py generates one flag per field from the metadata below),
validated before any work starts, and saved as JSON in the run's checkpoint directory so that a run
explains itself and a resume can check it is continuing the same model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
from typing import Optional

from dcgan_tf.errors import UserError

Z_DISTRIBUTIONS = ("uniform_signed", "normal01")
CONFIG_FILE = "config.json"

# Fields that define the model and its checkpoint: a resume must not change them.
MODEL_FIELDS = (
    "arch", "output_height", "output_width", "c_dim", "z_dim", "gf_dim", "df_dim",
)

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _opt(default, help_text, **extra):
    return dataclasses.field(default=default, metadata={"help": help_text, **extra})


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Every option of a run. `None` widths mean "same as the height"; c_dim 0 means "from the data"."""

    # What to do.
    train: bool = _opt(False, "Train (otherwise: load the latest checkpoint and write a test grid).")
    export: bool = _opt(False, "Export the generator as a TensorFlow SavedModel into --export_dir.")
    # Using a trained model (from the run's newest checkpoint, or --saved_model).
    generate: int = _opt(0, "Write N generated images (one PNG each, or one grid with --grid) into "
                            "--sample_dir/<run>; 0: off. --seed makes them repeatable.")
    grid: bool = _opt(False, "With --generate: write the images as one grid instead of one file each.")
    saved_model: str = _opt("", "Take the generator from this SavedModel folder (written by --export) "
                                "instead of the run's checkpoint, for --generate, --visualize, --interpolate "
                                "and --tflite.")
    visualize: Optional[int] = _opt(
        None, "The original's visualize options: 0 one grid of random z; 1 sweep each z dimension over "
              "[-1, 1] across the batch, one PNG per dimension; 2 the sweep around a random z as one GIF per "
              "dimension; 3 the sweep of option 1 as one GIF per dimension; 4 one merged GIF of all dimensions.")
    visualize_dims: int = _opt(0, "z dimensions swept by --visualize 1-4 (the first N); 0 means all.")
    interpolate: int = _opt(0, "Slerp through K random z vectors (K >= 2; --seed makes them repeatable): a "
                               "looping GIF and a strip PNG in --sample_dir/<run>; 0: off.")
    interpolate_steps: int = _opt(8, "Images from one z vector to the next in --interpolate.")
    report: bool = _opt(False, "Pictures of the run's training in its checkpoint folder: losses.png (loss "
                               "curves) and training.gif (the sample grids over training). Also written "
                               "after --train.")
    import_tf1: str = _opt("", "Import a checkpoint written by the original TF1 program (its prefix, e.g. "
                               "checkpoint/<run>/DCGAN.model-12000, or its folder) as this run's checkpoint.")
    tflite: bool = _opt(False, "Convert the exported SavedModel (of this run, exported first, or "
                               "--saved_model) to TensorFlow Lite: model.tflite inside its folder.")
    # Data.
    dataset: str = _opt("simpsons_64", "Folder name under --data_dir (matched case-insensitively).")
    data_dir: str = _opt("data", "Folder that holds the dataset folders.")
    input_fname_pattern: str = _opt(
        "*", "Glob pattern on file names (e.g. *.jpg); jpg/jpeg/png/bmp/gif are searched recursively.")
    crop: bool = _opt(False, "Centre-crop input_height x input_width before resizing to the output size.")
    input_height: int = _opt(64, "Height of the centre crop (with --crop).")
    input_width: Optional[int] = _opt(None, "Width of the centre crop; default: input_height.")
    output_height: int = _opt(128, "Height of the generated and training images.")
    output_width: Optional[int] = _opt(None, "Width of the generated images; default: output_height.")
    c_dim: int = _opt(0, "Image channels: 1 or 3; 0 means decide from the data.")
    # Model.
    arch: str = _opt("simpsons", "Network pair.", choices=("simpsons",))
    z_dim: int = _opt(100, "Size of the latent vector z.")
    z_dist: str = _opt("uniform_signed", "Distribution of z: uniform in [-1, 1] or N(0, 1).",
                       choices=Z_DISTRIBUTIONS)
    gf_dim: int = _opt(64, "Generator filters in the last transposed conv (the widest is 16x this).")
    df_dim: int = _opt(64, "Discriminator filters in the first conv (the widest is 16x this).")
    # Training.
    epoch: int = _opt(10000, "Number of epochs to train (in total, counting earlier runs).")
    batch_size: int = _opt(25, "Images per batch.")
    learning_rate: float = _opt(1e-4, "Adam learning rate of both networks.")
    beta1: float = _opt(0.5, "Adam beta1 of both networks.")
    g_steps: int = _opt(2, "Generator updates per discriminator update (the original used 2).")
    seed: Optional[int] = _opt(None, "Random seed; default: a fresh one, recorded in the run's config.json.")
    jit_compile: bool = _opt(False, "Compile the train step with XLA (slower on CPUs).")
    # Outputs.
    checkpoint_dir: str = _opt("checkpoints", "Root of the checkpoint folders (one per run).")
    sample_dir: str = _opt("samples", "Root of the sample-grid folders (one per run).")
    log_dir: str = _opt("logs", "Root of the TensorBoard folders (one per run).")
    export_dir: str = _opt("export", "Root of the exported SavedModels (one per run).")
    sample_freq: int = _opt(100, "Write a grid of the fixed sample z (and image summaries) every N steps.")
    sample_num: int = _opt(0, "Images in each sample grid; 0 means batch_size.")
    ckpt_freq: int = _opt(500, "Save a checkpoint every N steps (and always at the end or on Ctrl-C).")
    max_to_keep: int = _opt(5, "Checkpoints kept.")

    # ----------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, **values) -> "RunConfig":
        """Builds a config, fills in derived defaults and validates it (UserError on bad values)."""
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown RunConfig fields: {sorted(unknown)}")
        config = cls(**values)
        config = dataclasses.replace(
            config,
            input_width=config.input_height if config.input_width is None else config.input_width,
            output_width=config.output_height if config.output_width is None else config.output_width,
            sample_num=config.sample_num or config.batch_size,
            seed=random.randrange(2**31) if config.seed is None else config.seed,
        )
        config.validate()
        return config

    def validate(self) -> None:
        positive = ("input_height", "input_width", "output_height", "output_width", "epoch",
                    "batch_size", "z_dim", "gf_dim", "df_dim", "g_steps", "sample_freq",
                    "ckpt_freq", "max_to_keep", "sample_num")
        for name in positive:
            value = getattr(self, name)
            if value is None or value < 1:
                raise UserError(f"--{name} must be a positive whole number, got {value}.")
        if self.c_dim not in (0, 1, 3):
            raise UserError(f"--c_dim must be 1 (grayscale), 3 (colour) or 0 (from the data), got {self.c_dim}.")
        if not self.learning_rate > 0:
            raise UserError(f"--learning_rate must be greater than 0, got {self.learning_rate}.")
        if not 0 <= self.beta1 < 1:
            raise UserError(f"--beta1 must be in [0, 1), got {self.beta1}.")
        if self.z_dist not in Z_DISTRIBUTIONS:
            raise UserError(f"--z_dist must be one of {', '.join(Z_DISTRIBUTIONS)}, got {self.z_dist!r}.")
        if not _SAFE_NAME.fullmatch(self.dataset) or ".." in self.dataset:
            raise UserError(
                f"--dataset must be a plain folder name under --data_dir (letters, digits, '.', '_', '-'), "
                f"got {self.dataset!r}; put the images in {os.path.join(self.data_dir, '<name>')}.")
        if self.seed is not None and not 0 <= self.seed < 2**31:
            raise UserError(f"--seed must be in [0, 2^31), got {self.seed}.")
        for name in ("generate", "visualize_dims", "interpolate"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name} must be 0 (off) or more, got {getattr(self, name)}.")
        if self.visualize is not None and self.visualize not in (0, 1, 2, 3, 4):
            raise UserError(f"--visualize must be one of 0, 1, 2, 3, 4, got {self.visualize}.")
        if self.interpolate == 1:
            raise UserError("--interpolate needs at least 2 z vectors to walk between; use --interpolate 2 or more.")
        if self.interpolate_steps < 1:
            raise UserError(f"--interpolate_steps must be 1 or more, got {self.interpolate_steps}.")
        # Contradictions: a SavedModel holds a generator only, so it cannot be trained or re-exported.
        for action in ("train", "export", "import_tf1"):
            if self.saved_model and getattr(self, action):
                raise UserError(f"--saved_model cannot be combined with --{action}: a SavedModel holds only "
                                f"the generator; drop --saved_model to {action.replace('_', ' ')} the run.")
        if self.grid and not self.generate:
            raise UserError("--grid only applies to --generate N; add --generate N or drop --grid.")

    # ----------------------------------------------------------------------------------------------
    @property
    def run_name(self) -> str:
        """Names the run as the original did: {dataset}_{batch}_{out_h}_{out_w}."""
        return f"{self.dataset}_{self.batch_size}_{self.output_height}_{self.output_width}"

    @property
    def run_checkpoint_dir(self) -> str:
        return os.path.join(self.checkpoint_dir, self.run_name)

    @property
    def run_sample_dir(self) -> str:
        return os.path.join(self.sample_dir, self.run_name)

    @property
    def run_log_dir(self) -> str:
        return os.path.join(self.log_dir, self.run_name)

    @property
    def run_export_dir(self) -> str:
        return os.path.join(self.export_dir, self.run_name)

    @property
    def dataset_path(self) -> str:
        return os.path.join(self.data_dir, self.dataset)

    # ----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, folder: str) -> str:
        """Writes config.json atomically (a kill never leaves half a file)."""
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, CONFIG_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
        return path


def load_saved_config(folder: str) -> Optional[dict]:
    """The options saved in a run folder, or None if it has none."""
    path = os.path.join(folder, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path} ({e}); fix or delete it to start the run afresh.") from None
    if not isinstance(saved, dict):
        raise UserError(f"{path} is not a run configuration; fix or delete it.")
    return saved


def check_same_model(config: RunConfig, saved: dict, folder: str) -> None:
    """Refuses to resume a checkpoint made for a different model shape."""
    for name in MODEL_FIELDS:
        if name == "c_dim" and config.c_dim == 0:
            continue  # Not decided yet: the saved value will be used.
        if name in saved and saved[name] != getattr(config, name):
            raise UserError(
                f"the checkpoints in {folder} were made with --{name} {saved[name]}, not "
                f"{getattr(config, name)}; use --{name} {saved[name]} to continue that run, or another "
                f"--checkpoint_dir to start a new one.")
