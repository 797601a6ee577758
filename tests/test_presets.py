"""--arch presets: the registry, the defaults table, each source program's layer list, and training end to end."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest

from dcgan_tf import cli
from dcgan_tf.model import nets
from dcgan_tf.config import PRESETS, RunConfig
from dcgan_tf.errors import UserError
from tests.conftest import run_main, write_idx_images, write_images


def test_registry_and_preset_table_name_the_same_architectures():
    assert set(nets.REGISTRY) == set(PRESETS)
    field = {f.name: f for f in dataclasses.fields(RunConfig)}["arch"]
    assert set(field.metadata["choices"]) == set(PRESETS)


def test_simpsons_original_recipe_keeps_the_2018_defaults():
    config = RunConfig.create(recipe="original")
    assert (config.arch, config.batch_size, config.learning_rate, config.beta1, config.z_dim, config.z_dist,
            config.g_steps, config.output_height, config.output_width, config.input_height, config.c_dim,
            config.gf_dim, config.df_dim) == ("simpsons", 25, 1e-4, 0.5, 100, "uniform_signed", 2, 128, 128,
                                              64, 0, 64, 64)
    assert (config.real_label_low, config.real_label_high, config.fake_label_low, config.fake_label_high,
            config.label_flip_prob, config.diffaug, config.ema_decay) == (1.0, 1.0, 0.0, 0.0, 0.0, "", 0.0)


def test_simpsons_default_recipe_adds_diffaugment_g_average_adaptive_r1_and_below_128_a_faster_lr_only():
    default, original = RunConfig.create(seed=1), RunConfig.create(seed=1, recipe="original")
    assert (default.recipe, default.output_height, default.diffaug, default.learning_rate, default.ema_decay,
            default.r1_gamma, default.r1_target) == ("default", 128, "color,translation,cutout", 1e-4, 0.999, 0.3, 0.85)
    assert (original.r1_gamma, original.r1_target) == (0.0, 0.0)
    changed = {f.name for f in dataclasses.fields(RunConfig) if getattr(default, f.name) != getattr(original, f.name)}
    assert changed == {"recipe", "diffaug", "ema_decay", "r1_gamma", "r1_target"}
    # Below 128x128 the default recipe learns twice as fast; the original keeps its 1e-4 at every size.
    for height, rate in ((64, 2e-4), (96, 2e-4), (128, 1e-4), (256, 1e-4)):
        sized = RunConfig.create(seed=1, output_height=height)
        assert (sized.learning_rate, sized.d_learning_rate, sized.g_learning_rate) == (rate, rate, rate), height
        assert RunConfig.create(seed=1, output_height=height, recipe="original").learning_rate == 1e-4
    assert RunConfig.create(seed=1, output_height=64).to_dict()["learning_rate"] == 2e-4  # What config.json keeps.
    # Explicit flags override either recipe.
    mine = RunConfig.create(diffaug="", ema_decay=0.0, learning_rate=5e-5)
    assert (mine.diffaug, mine.ema_decay, mine.learning_rate) == ("", 0.0, 5e-5)
    assert RunConfig.create(output_height=64, learning_rate=3e-4).g_learning_rate == 3e-4
    assert RunConfig.create(output_height=64, d_learning_rate=1e-4).d_learning_rate == 1e-4
    assert RunConfig.create(recipe="original", ema_decay=0.99).ema_decay == 0.99


@pytest.mark.parametrize("arch", ["mlp", "art", "mnist", "classic"])
def test_other_presets_train_their_seeds_recipe_under_either_recipe(arch):
    default, original = RunConfig.create(arch=arch, seed=1), RunConfig.create(arch=arch, seed=1, recipe="original")
    assert dataclasses.replace(default, recipe="original") == original
    assert (default.diffaug, default.ema_decay) == ("", 0.0)


def test_recipe_is_saved_and_bad_values_are_one_line(tmp_path):
    saved = json.loads(open(RunConfig.create(seed=3).save(str(tmp_path))).read())
    assert (saved["recipe"], saved["ema_decay"], saved["diffaug"]) == ("default", 0.999, "color,translation,cutout")
    with pytest.raises(UserError, match="--recipe must be one of default, original"):
        RunConfig.create(recipe="fancy")
    with pytest.raises(UserError, match=r"--ema_decay must be in \[0, 1\)"):
        RunConfig.create(ema_decay=1.0)


def test_r1_penalty_is_only_in_the_simpsons_default_recipe(tmp_path):
    assert {(arch, recipe) for arch in PRESETS for recipe in ("default", "original")
            if RunConfig.create(arch=arch, recipe=recipe).r1_gamma} == {("simpsons", "default")}
    saved = json.loads(open(RunConfig.create(seed=3, r1_gamma=0.1).save(str(tmp_path))).read())
    assert saved["r1_gamma"] == 0.1
    with pytest.raises(UserError, match=r"--r1_gamma must be 0 \(off\) or more, got -1"):
        RunConfig.create(r1_gamma=-1.0)
    adaptive = json.loads(open(RunConfig.create(seed=3, r1_gamma=0.1, r1_target=0.9).save(str(tmp_path))).read())
    assert (adaptive["r1_gamma"], adaptive["r1_target"]) == (0.1, 0.9)
    with pytest.raises(UserError, match=r"--r1_target must be in \[0, 1\)"):
        RunConfig.create(r1_target=1.0)


@pytest.mark.parametrize("bad", [0.0, 1.5])
def test_top_k_training_is_off_in_every_recipe_and_a_flag_saved_with_the_run(tmp_path, bad):
    assert {RunConfig.create(arch=arch, recipe=recipe).g_topk
            for arch in PRESETS for recipe in ("default", "original")} == {1.0}
    saved = json.loads(open(RunConfig.create(seed=3, g_topk=0.5).save(str(tmp_path))).read())
    assert saved["g_topk"] == 0.5
    with pytest.raises(UserError, match=rf"--g_topk must be in \(0, 1\] .*got {bad}"):
        RunConfig.create(g_topk=bad)


def test_fresh_z_for_g_is_off_in_every_recipe_and_a_flag_saved_with_the_run(tmp_path):
    assert {RunConfig.create(arch=arch, recipe=recipe).g_fresh_z
            for arch in PRESETS for recipe in ("default", "original")} == {False}
    assert json.loads(open(RunConfig.create(seed=3, g_fresh_z=True).save(str(tmp_path))).read())["g_fresh_z"] is True


@pytest.mark.parametrize("name,value,bad,message", [
    ("lecam_weight", 0.1, -0.1, r"--lecam_weight must be 0 \(off\) or more, got -0.1"),
    ("cr_weight", 10.0, -1.0, r"--cr_weight must be 0 \(off\) or more, got -1.0"),
    ("d_dropout", 0.4, 1.0, r"--d_dropout must be in \[0, 1\) \(0 turns it off\), got 1.0")])
def test_regularisers_off_in_every_recipe_are_flags_saved_with_the_run(tmp_path, name, value, bad, message):
    assert not any(getattr(RunConfig.create(arch=arch, recipe=recipe), name)
                   for arch in PRESETS for recipe in ("default", "original"))
    saved = json.loads(open(RunConfig.create(seed=3, **{name: value}).save(str(tmp_path))).read())
    assert saved[name] == value
    with pytest.raises(UserError, match=message):
        RunConfig.create(**{name: bad})


@pytest.mark.parametrize("name", ["d_minibatch_std", "d_spectral_norm"])
def test_discriminator_switches_are_off_in_every_recipe_saved_with_the_run_and_for_simpsons_only(tmp_path, name):
    assert not any(getattr(RunConfig.create(arch=arch, recipe=recipe), name)
                   for arch in PRESETS for recipe in ("default", "original"))
    saved = json.loads(open(RunConfig.create(seed=3, **{name: True}).save(str(tmp_path))).read())
    assert saved[name] is True
    with pytest.raises(UserError, match=f"--{name} is for --arch simpsons only"):
        RunConfig.create(arch="classic", **{name: True})


def test_consistency_penalty_needs_an_augmentation_and_compares_both_kinds_of_image_unless_told(tmp_path):
    with pytest.raises(UserError, match="--cr_weight compares D's outputs for two augmentations .* give --diffaug"):
        RunConfig.create(cr_weight=10.0, diffaug="")
    assert {RunConfig.create(arch=arch, recipe=recipe).cr_images
            for arch in PRESETS for recipe in ("default", "original")} == {"both"}
    saved = json.loads(open(RunConfig.create(seed=3, cr_weight=0.3, cr_images="real").save(str(tmp_path))).read())
    assert (saved["cr_weight"], saved["cr_images"]) == (0.3, "real")
    with pytest.raises(UserError, match="--cr_images must be one of both, real, got 'fake'"):
        RunConfig.create(cr_images="fake")


def test_d_dropout_is_for_the_simpsons_discriminator_only():
    with pytest.raises(UserError, match="--d_dropout is for --arch simpsons only"):
        RunConfig.create(arch="classic", d_dropout=0.4)


def test_mirror_is_a_flag_saved_with_the_run(tmp_path):
    from absl import flags

    assert not any(RunConfig.create(arch=arch, recipe=recipe).mirror
                   for arch in PRESETS for recipe in ("default", "original"))
    saved = json.loads(open(RunConfig.create(seed=3, mirror=True).save(str(tmp_path))).read())
    assert saved["mirror"] is True
    flag_values = flags.FlagValues()
    cli.define_flags(flag_values)
    flag_values(["main.py", "--mirror"])
    assert cli.config_from_flags(flag_values).mirror is True
    flag_values(["main.py", "--nomirror"])
    assert cli.config_from_flags(flag_values).mirror is False


def test_presets_fill_defaults_and_flags_override_them():
    art = RunConfig.create(arch="art")
    assert (art.z_dim, art.z_dist, art.learning_rate, art.batch_size, art.g_steps, art.output_height) == \
        (200, "normal01", 2e-4, 64, 1, 64)
    assert (art.real_label_low, art.real_label_high, art.fake_label_low, art.fake_label_high,
            art.label_flip_prob) == (0.9, 1.1, 0.0, 0.2, 0.03)
    classic = RunConfig.create(arch="classic", batch_size=8, learning_rate=1e-3, label_flip_prob=0.0,
                               real_label_low=0.7, fake_label_high=0.3)
    assert (classic.batch_size, classic.learning_rate, classic.beta1, classic.z_dim) == (8, 1e-3, 0.5, 100)
    assert (classic.real_label_low, classic.real_label_high, classic.fake_label_high) == (0.7, 1.0, 0.3)
    assert RunConfig.create(arch="mnist").c_dim == 1
    assert RunConfig.create(arch="mlp", z_dist="uniform_signed").z_dist == "uniform_signed"


def test_saved_config_holds_resolved_values(tmp_path):
    config = RunConfig.create(arch="art", seed=1)
    saved = json.loads(open(config.save(str(tmp_path))).read())
    assert saved["z_dim"] == 200 and saved["label_flip_prob"] == 0.03 and saved["batch_size"] == 64
    assert RunConfig.create(**saved) == config


@pytest.mark.parametrize("values,fragment", [
    ({"real_label_low": 1.2}, "--real_label_low 1.2 is above --real_label_high 1.0"),
    ({"label_flip_prob": 1.5}, "--label_flip_prob"),
    ({"hidden_dim": 0}, "--hidden_dim"),
    ({"arch": "vgg"}, "--arch must be one of simpsons, mlp, art, mnist, classic"),
])
def test_bad_preset_values(values, fragment):
    with pytest.raises(UserError, match=fragment):
        RunConfig.create(**values)


@pytest.mark.parametrize("values,fragment", [
    ({"arch": "mnist", "output_height": 32}, "only 28x28 images with 1 channel"),
    ({"arch": "mnist", "c_dim": 3}, "--c_dim 1"),
    ({"arch": "classic", "output_height": 128}, "only 64x64"),
    ({"arch": "art", "output_height": 96}, "power of two of at least 16"),
    ({"arch": "art", "output_height": 64, "output_width": 128}, "not 64x128"),
])
def test_sizes_an_architecture_cannot_make(values, fragment):
    with pytest.raises(UserError, match=fragment) as e:
        nets.check_config(RunConfig.create(**values))
    assert "\n" not in str(e.value)


def test_help_lists_the_presets_and_their_defaults(capsys):
    from absl import flags

    flag_values = flags.FlagValues()
    cli.define_flags(flag_values)
    help_text = flag_values["arch"].help
    for arch, values in PRESETS.items():
        assert f"{arch}: {values['output_height']}x{values['output_height']}, z {values['z_dim']}" in help_text
    # The default recipe's values at each preset's size (simpsons, 128x128: DiffAugment, lr 1e-4, the
    # average of G, adaptive R1).
    assert "simpsons: 128x128, z 100 uniform_signed, batch 25, lr 0.0001, beta1 0.5, g_steps 2" in help_text
    assert "DiffAugment color,translation,cutout, G average 0.999, R1 0.3 adaptive to D(x) 0.85; mlp:" in help_text
    assert "real 0.9-1.1 fake 0-0.2 flip 0.03" in help_text
    # --recipe's help says the same values, and the original's learning rate.
    recipe_text = flag_values["recipe"].help
    assert "lr 0.0002 (0.0001 from 128x128 up), a moving average of G's weights with decay 0.999, an R1 " \
           "penalty of 0.3 that adapts to D(x) 0.85" in recipe_text
    assert "the 2018 program, lr 0.0001, no augmentation" in recipe_text
    for flag in ("hidden_dim", "g_leaky", "real_label_low", "real_label_high", "fake_label_low",
                 "fake_label_high", "label_flip_prob"):
        assert flag in flag_values


# --------------------------------------------------------------------------------------------------
# Each network pair against its source program's description (at its widths)
# --------------------------------------------------------------------------------------------------
def _build(**values):
    config = RunConfig.create(**{"precision": "float32", **values})
    nets.check_config(config)
    generator, discriminator = nets.build_networks(config)
    images = generator(keras.random.normal((2, config.z_dim), seed=1))
    logits = discriminator(images)
    assert tuple(logits.shape) == (2, 1)
    pixels = keras.ops.convert_to_numpy(images)
    assert pixels.min() >= -1 and pixels.max() <= 1
    return config, generator, discriminator, tuple(images.shape)


def _kinds(model):
    return [(type(l).__name__, getattr(l, "filters", getattr(l, "units", None)))
            for l in model._flatten_layers(include_self=False, recursive=False)
            if type(l).__name__ not in ("Reshape", "Flatten")]


@pytest.mark.parametrize("size,c_dim,z_dim,hidden", [(28, 1, 64, 256), (128, 3, 256, 64)])
def test_mlp_seed_000(size, c_dim, z_dim, hidden):
    _, g, d, shape = _build(arch="mlp", output_height=size, c_dim=c_dim, z_dim=z_dim, hidden_dim=hidden)
    assert shape == (2, size, size, c_dim)
    assert _kinds(g) == [("Dense", hidden), ("Dense", hidden), ("Dense", size * size * c_dim)]
    assert _kinds(d) == [("Dense", hidden), ("Dense", hidden), ("Dense", 1)]


@pytest.mark.parametrize("size,d_filters", [(64, [128, 256, 512, 1024]),
                                            (256, [128, 256, 512, 512, 512, 1024])])
def test_art_seed_001(size, d_filters):
    config, g, d, shape = _build(arch="art", output_height=size, c_dim=3)
    assert config.z_dim == 200 and shape == (2, size, size, 3)
    d_convs = [l for l in d.convs]
    assert [l.filters for l in d_convs] == d_filters
    assert all(l.kernel_size == (4, 4) and l.strides == (2, 2) and l.padding == "same" for l in d_convs)
    assert [l.name for l in d.bns] == [f"d_bn{i}" for i in range(1, len(d_filters))]  # none on the first
    assert g.g_h0_lin.units == 4 * 4 * 1024
    assert [l.filters for l in g.deconvs] == d_filters[::-1][1:] + [3]
    assert all(l.kernel_size == (4, 4) and l.strides == (2, 2) for l in g.deconvs)
    assert len(g.bns) == len(g.deconvs)  # BN + LeakyReLU before every transposed conv


def test_mnist_seed_003():
    _, g, d, shape = _build(arch="mnist")
    assert shape == (2, 28, 28, 1)
    assert _kinds(d) == [("Conv2D", 64), ("Conv2D", 128), ("Dense", 512), ("Dense", 1)]
    assert g.g_h0_lin.units == 7 * 7 * 256
    assert [l.filters for l in (g.g_h1, g.g_h2, g.g_h3)] == [128, 64, 1]
    x = g.g_bn0(g.reshape(g.g_h0_lin(keras.ops.zeros((1, 100)))))
    sizes = [tuple(x.shape[1:])]
    for layer in (g.g_h1, g.g_h2, g.g_h3):
        x = layer(x)
        sizes.append(tuple(x.shape[1:]))
    assert sizes == [(7, 7, 256), (14, 14, 128), (28, 28, 64), (28, 28, 1)]


@pytest.mark.parametrize("leaky", [False, True])
def test_classic_seed_004(leaky):
    config, g, d, shape = _build(arch="classic", c_dim=3, g_leaky=leaky)
    assert config.z_dim == 100 and shape == (2, 64, 64, 3)
    assert [l.filters for l in (g.g_h0, g.g_h1, g.g_h2, g.g_h3, g.g_h4)] == [512, 256, 128, 64, 3]
    assert all(getattr(g, f"g_h{i}").kernel_size == (4, 4) for i in range(5))
    convs = [getattr(d, f"d_h{i}_conv") for i in range(5)]
    assert [l.filters for l in convs] == [64, 128, 256, 512, 1]
    assert not hasattr(d, "d_bn0") and not hasattr(d, "d_bn4") and all(hasattr(d, f"d_bn{i}") for i in (1, 2, 3))
    # PyTorch's DCGAN (the classic source program's layout) has 3,576,704 and 2,765,568 trainable numbers.
    count = lambda m: sum(int(np.prod(v.shape)) for v in m.trainable_weights)  # noqa: E731
    assert (count(g), count(d)) == (3_576_704, 2_765_568)
    # --g_leaky: negative pre-activations pass through (scaled) instead of being cut to 0.
    x = keras.ops.convert_to_numpy(g._act(keras.ops.convert_to_tensor([-1.0, 2.0])))
    assert np.allclose(x, [-0.2, 2.0] if leaky else [0.0, 2.0])


# --------------------------------------------------------------------------------------------------
# End to end through the command line: tiny widths, a few steps, a SavedModel
# --------------------------------------------------------------------------------------------------
TINY = {"mlp": ["--hidden_dim", "8"], "art": ["--gf_dim", "2", "--df_dim", "2", "--output_height", "16"],
        "classic": ["--gf_dim", "2", "--df_dim", "2"], "simpsons": ["--gf_dim", "2", "--df_dim", "2",
                                                                   "--output_height", "32"]}


@pytest.mark.parametrize("arch", ["mlp", "art", "classic", "simpsons"])
def test_preset_trains_and_exports_in_process(tmp_path, arch, monkeypatch, capsys):
    write_images(tmp_path / "data" / "faces", 8, size=(70, 70))
    monkeypatch.chdir(tmp_path)
    code = cli.execute(["main.py", "--arch", arch, "--train", "--export", "--dataset", "faces", "--epoch", "1",
                        "--batch_size", "4", "--z_dim", "8", "--seed", "1", "--sample_freq", "2",
                        "--ckpt_freq", "2", *TINY[arch]])
    out = capsys.readouterr()
    assert code == 0, out.err[-3000:]
    assert "trained 2 steps" in out.out
    size = {"mlp": 28, "art": 16, "classic": 64, "simpsons": 32}[arch]
    [run] = os.listdir(tmp_path / "checkpoints")  # One run, named for its architecture and sizes.
    assert run.startswith(f"faces_4_{size}_{size}") and (arch == "simpsons") != (f"_{arch}" in run)
    saved = json.loads((tmp_path / "checkpoints" / run / "config.json").read_text())
    assert saved["arch"] == arch and saved["g_steps"] == PRESETS[arch]["g_steps"]
    assert saved["label_flip_prob"] == PRESETS[arch]["label_flip_prob"]
    import tensorflow as tf

    model = tf.saved_model.load(str(tmp_path / "export" / run / "2"))  # the version of step 2
    out = model.signatures["serving_default"](z=tf.random.normal([2, 8]))
    assert tuple(out["images"].shape) == (2, size, size, 3)
    # Test mode on the trained run (the saved, resolved options rebuild the same model).
    code = cli.execute(["main.py", "--arch", arch, "--dataset", "faces", "--batch_size", "4", "--z_dim", "8",
                        *TINY[arch]])
    assert code == 0, capsys.readouterr().err[-3000:]
    assert any(f.startswith("test_") for f in os.listdir(tmp_path / "samples" / run))


def test_mnist_preset_through_main_py_on_idx_files(tmp_path):
    write_idx_images(tmp_path / "data" / "mnist" / "train-images-idx3-ubyte.gz", count=8)
    proc = run_main(["--arch", "mnist", "--dataset", "mnist", "--train", "--export", "--epoch", "1",
                     "--batch_size", "4", "--gf_dim", "2", "--df_dim", "2", "--hidden_dim", "8", "--z_dim", "8",
                     "--seed", "1", "--sample_freq", "2", "--ckpt_freq", "2"], cwd=tmp_path,
                    env={"DCGAN_TF_NO_DOWNLOAD": "1", "KERAS_HOME": str(tmp_path / "keras")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "8 images from data/mnist/train-images-idx3-ubyte.gz at 28x28x1" in proc.stdout and "trained 2 steps" in proc.stdout
    assert (tmp_path / "export" / "mnist_4_28_28_mnist_z8_gf2_df2_h8" / "2" / "saved_model.pb").exists()


def test_import_tf1_needs_the_simpsons_architecture(tmp_path):
    from dcgan_tf.use import tf1_import

    with pytest.raises(UserError, match="--arch simpsons"):
        tf1_import.import_tf1_checkpoint(str(tmp_path / "nothing"), RunConfig.create(arch="classic"))
