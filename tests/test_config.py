"""RunConfig: derived defaults, validation, run naming, saving and the resume check."""

import dataclasses
import json
import os

import pytest

from dcgan_tf import runs
from dcgan_tf.config import RunConfig, check_same_model
from dcgan_tf.errors import UserError


# --------------------------------------------------------------------------------------------------
# create(): derived defaults
# --------------------------------------------------------------------------------------------------
def test_create_fills_widths_from_heights():
    config = RunConfig.create(input_height=40, output_height=24)
    assert config.input_width == 40
    assert config.output_width == 24


def test_create_keeps_explicit_widths():
    config = RunConfig.create(input_height=40, input_width=50, output_height=24, output_width=36)
    assert (config.input_height, config.input_width) == (40, 50)
    assert (config.output_height, config.output_width) == (24, 36)


def test_create_sample_num_defaults_to_batch_size():
    assert RunConfig.create(batch_size=7).sample_num == 7
    assert RunConfig.create(batch_size=7, sample_num=0).sample_num == 7


def test_create_keeps_explicit_sample_num():
    assert RunConfig.create(batch_size=7, sample_num=3).sample_num == 3


def test_create_picks_a_random_seed_when_none_given():
    seeds = [RunConfig.create().seed for _ in range(3)]
    for seed in seeds:
        assert isinstance(seed, int)
        assert 0 <= seed < 2**31
    # Three draws from 2^31 values all being equal would mean the seed is not random.
    assert len(set(seeds)) > 1


@pytest.mark.parametrize("seed", [0, 123, 2**31 - 1])
def test_create_keeps_a_given_seed(seed):
    assert RunConfig.create(seed=seed).seed == seed


def test_create_rejects_unknown_fields():
    with pytest.raises(TypeError, match="no_such_flag"):
        RunConfig.create(no_such_flag=1)


def test_create_returns_a_frozen_config():
    config = RunConfig.create()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.batch_size = 3


# --------------------------------------------------------------------------------------------------
# validate()
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("values, flag", [
    ({"batch_size": 0}, "--batch_size"),
    ({"batch_size": -3}, "--batch_size"),
    ({"epoch": -1}, "--epoch"),
    ({"input_height": 0}, "--input_height"),
    ({"output_width": 0}, "--output_width"),
    ({"z_dim": 0}, "--z_dim"),
    ({"g_steps": 0}, "--g_steps"),
    ({"sample_num": -1}, "--sample_num"),
    ({"c_dim": 2}, "--c_dim"),
    ({"c_dim": 4}, "--c_dim"),
    ({"c_dim": -1}, "--c_dim"),
    ({"learning_rate": 0}, "--learning_rate"),
    ({"learning_rate": -1e-4}, "--learning_rate"),
    ({"learning_rate": float("nan")}, "--learning_rate"),
    ({"beta1": 1.0}, "--beta1"),
    ({"beta1": -0.1}, "--beta1"),
    ({"beta2": 1.0}, "--beta2"),
    ({"ema_rampup": 0.0}, "--ema_rampup"),
    ({"beta2": 0.0}, "--beta2"),
    ({"d_learning_rate": 0}, "--d_learning_rate"),
    ({"g_learning_rate": -1e-4}, "--g_learning_rate"),
    ({"z_dist": "bogus"}, "--z_dist"),
    ({"dataset": "a/b"}, "--dataset"),
    ({"dataset": "/abs"}, "--dataset"),
    ({"dataset": ".."}, "--dataset"),
    ({"dataset": "../up"}, "--dataset"),
    ({"dataset": "a..b"}, "--dataset"),
    ({"dataset": ".hidden"}, "--dataset"),
    ({"dataset": ""}, "--dataset"),
    ({"seed": -1}, "--seed"),
    ({"seed": 2**31}, "--seed"),
    ({"strategy": "mirrored", "steps_per_execution": 2}, "--steps_per_execution 2 cannot be combined with --strategy"),
    ({"saved_model": "export/run/7", "live_weights": True}, "--live_weights picks a checkpoint's weights"),
    ({"r1_target": 1.0}, "--r1_target"),
    ({"diffaug_target": 1.0}, "--diffaug_target"),
    ({"diffaug_target": 0.6, "diffaug": ""}, "--diffaug_target adapts"),
    ({"cr_until": -1}, "--cr_until"),
    ({"cr_until": 6000, "cr_weight": 0.0}, "--cr_until fades"),
])
def test_bad_values_raise_user_error_naming_the_flag(values, flag):
    with pytest.raises(UserError) as excinfo:
        RunConfig.create(**values)
    assert flag in str(excinfo.value)


@pytest.mark.parametrize("values", [
    {"dataset": "simpsons_64"},
    {"dataset": "celebA"},
    {"dataset": "my.data-set_2"},
    {"beta1": 0.0},
    {"beta1": 0.999},
    {"beta2": 0.99},
    {"ema_rampup": 0.5},
    {"d_learning_rate": 4e-4},
    {"g_learning_rate": 1e-4, "learning_rate": 3e-4},
    {"c_dim": 0},
    {"c_dim": 1},
    {"c_dim": 3},
    {"z_dist": "normal01"},
    {"z_dist": "uniform_signed"},
    {"batch_size": 1, "epoch": 1},
    {"strategy": "mirrored", "steps_per_execution": 1},
    {"strategy": "default", "steps_per_execution": 2, "sample_freq": 2, "ckpt_freq": 2},
])
def test_good_values_are_accepted(values):
    config = RunConfig.create(**values)
    for name, value in values.items():
        assert getattr(config, name) == value


def test_each_networks_learning_rate_defaults_to_learning_rate():
    both = RunConfig.create(learning_rate=3e-4)
    assert (both.d_learning_rate, both.g_learning_rate) == (3e-4, 3e-4)
    only_d = RunConfig.create(learning_rate=3e-4, d_learning_rate=5e-4)
    assert (only_d.d_learning_rate, only_d.g_learning_rate) == (5e-4, 3e-4)
    assert RunConfig.create(recipe="original").g_learning_rate == 1e-4  # The recipe's rate when not given.


def test_validate_checks_a_directly_built_config():
    # Built without create(): nothing was filled in or checked yet.
    with pytest.raises(UserError, match="--batch_size"):
        RunConfig(batch_size=0, input_width=64, output_width=64, sample_num=1).validate()
    with pytest.raises(UserError, match="--input_width"):
        RunConfig().validate()  # input_width is still None.


# --------------------------------------------------------------------------------------------------
# Run names and paths
# --------------------------------------------------------------------------------------------------
def test_run_name_and_paths():
    config = RunConfig.create(
        dataset="celebA", batch_size=16, output_height=32, output_width=48,
        checkpoint_dir=os.path.join("out", "ckpt"), sample_dir="smp", log_dir="lg", export_dir="ex",
        data_dir="images")
    assert config.run == "celebA_16_32_48"
    assert config.run_checkpoint_dir == os.path.join("out", "ckpt", "celebA_16_32_48")
    assert config.run_sample_dir == os.path.join("smp", "celebA_16_32_48")
    assert config.run_log_dir == os.path.join("lg", "celebA_16_32_48")
    assert runs.export_version_dir(config.export_dir, config.run, 7) == os.path.join("ex", "celebA_16_32_48", "7")
    assert config.dataset_path == os.path.join("images", "celebA")


def test_run_name_uses_the_filled_in_width():
    config = RunConfig.create(dataset="faces", batch_size=4, output_height=20)
    assert config.run == "faces_4_20_20"


# --------------------------------------------------------------------------------------------------
# save() / runs.read_config()
# --------------------------------------------------------------------------------------------------
def test_save_then_load_round_trips(tmp_path):
    config = RunConfig.create(dataset="faces", batch_size=9, output_height=32, output_width=16,
                              c_dim=1, learning_rate=2e-4, seed=42, crop=True, z_dist="normal01")
    folder = tmp_path / "nested" / "run"  # Does not exist yet.
    path = config.save(str(folder))

    assert path == os.path.join(str(folder), "config.json")
    assert os.path.isfile(path)
    assert sorted(os.listdir(folder)) == ["config.json"]  # No .tmp left behind.

    saved = runs.read_config(str(folder))
    assert saved == dataclasses.asdict(config)
    assert RunConfig.create(**saved) == config


def test_save_overwrites_an_earlier_config(tmp_path):
    RunConfig.create(batch_size=3, seed=1).save(str(tmp_path))
    RunConfig.create(batch_size=5, seed=2).save(str(tmp_path))
    saved = runs.read_config(str(tmp_path))
    assert saved["batch_size"] == 5
    assert saved["seed"] == 2


def test_save_writes_plain_json(tmp_path):
    config = RunConfig.create(seed=7)
    path = config.save(str(tmp_path))
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    assert data["seed"] == 7
    assert data["dataset"] == config.dataset


def test_load_saved_config_missing_folder_is_none(tmp_path):
    assert runs.read_config(str(tmp_path / "does_not_exist")) is None


def test_load_saved_config_folder_without_config_is_none(tmp_path):
    (tmp_path / "other.txt").write_text("hello")
    assert runs.read_config(str(tmp_path)) is None


@pytest.mark.parametrize("content", [
    '{"batch_size": 25,',  # Cut short.
    "not json at all",
    "",
])
def test_load_saved_config_corrupted_json_raises_user_error(tmp_path, content):
    (tmp_path / "config.json").write_text(content, encoding="utf-8")
    with pytest.raises(UserError) as excinfo:
        runs.read_config(str(tmp_path))
    assert "config.json" in str(excinfo.value)


def test_load_saved_config_undecodable_bytes_raise_user_error(tmp_path):
    (tmp_path / "config.json").write_bytes(b"\xff\xfe\x00garbage\x80")
    with pytest.raises(UserError):
        runs.read_config(str(tmp_path))


def test_load_saved_config_non_object_raises_user_error(tmp_path):
    (tmp_path / "config.json").write_text("[1, 2, 3]", encoding="utf-8")
    with pytest.raises(UserError, match="config.json"):
        runs.read_config(str(tmp_path))


# --------------------------------------------------------------------------------------------------
# check_same_model()
# --------------------------------------------------------------------------------------------------
def _model_config(**values):
    base = dict(output_height=32, output_width=32, c_dim=3, z_dim=100, gf_dim=64, df_dim=64, seed=1)
    base.update(values)
    return RunConfig.create(**base)


def test_check_same_model_passes_when_equal(tmp_path):
    config = _model_config()
    config.save(str(tmp_path))
    check_same_model(config, runs.read_config(str(tmp_path)), str(tmp_path))  # No exception.


@pytest.mark.parametrize("field, saved_value", [
    ("arch", "other_arch"),
    ("output_height", 64),
    ("output_width", 48),
    ("c_dim", 1),
    ("z_dim", 50),
    ("gf_dim", 32),
    ("df_dim", 128),
])
def test_check_same_model_names_the_differing_field(field, saved_value):
    config = _model_config()
    saved = {**config.to_dict(), field: saved_value}
    with pytest.raises(UserError) as excinfo:
        check_same_model(config, saved, "some/folder")
    message = str(excinfo.value)
    assert f"--{field}" in message
    assert str(saved_value) in message
    assert "some/folder" in message


@pytest.mark.parametrize("field, saved_value", [
    ("batch_size", 99),
    ("epoch", 1),
    ("learning_rate", 0.5),
    ("beta1", 0.0),
    ("dataset", "another"),
    ("seed", 12345),
])
def test_check_same_model_ignores_non_model_fields(field, saved_value):
    config = _model_config()
    saved = {**config.to_dict(), field: saved_value}
    check_same_model(config, saved, "some/folder")  # No exception.


@pytest.mark.parametrize("saved_c_dim", [1, 3])
def test_check_same_model_skips_c_dim_when_config_has_zero(saved_c_dim):
    config = _model_config(c_dim=0)
    saved = {**config.to_dict(), "c_dim": saved_c_dim}
    check_same_model(config, saved, "some/folder")  # No exception.


def test_check_same_model_still_checks_other_fields_when_c_dim_is_zero():
    config = _model_config(c_dim=0)
    saved = {**config.to_dict(), "c_dim": 3, "z_dim": 7}
    with pytest.raises(UserError, match="--z_dim"):
        check_same_model(config, saved, "some/folder")


def test_check_same_model_tolerates_missing_saved_fields():
    config = _model_config()
    check_same_model(config, {}, "some/folder")  # Nothing to compare against.
    check_same_model(config, {"z_dim": 100}, "some/folder")
