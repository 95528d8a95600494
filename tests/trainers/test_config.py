"""TrainConfig: defaults <- TOML/YAML file <- --set overrides <- explicit flags; typos are errors."""

import json

import pytest

from trainers.cli import build_parser, main, resolve_config
from trainers.config import DEFAULT_TARGET_MODULES, TrainConfig, load_config, parse_set_options


def test_defaults_are_the_project_recipe():
    config = TrainConfig()
    assert (config.lora_r, config.lora_alpha, config.learning_rate, config.epochs) == (16, 32, 5e-4, 3.0)
    assert config.target_modules == DEFAULT_TARGET_MODULES and config.chat_format == "gemma"


def test_toml_with_a_train_table(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[train]\nlearning_rate = 1e-4\nlora_r = 8\ntarget_modules = ["q_proj", "v_proj"]\n')
    config = load_config(path)
    assert config.learning_rate == 1e-4 and config.lora_r == 8 and config.target_modules == ["q_proj", "v_proj"]


def test_yaml_at_top_level(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 2\ngradient_checkpointing: true\ndev_data: null\n")
    config = load_config(path)
    assert config.epochs == 2.0 and config.gradient_checkpointing is True and config.dev_data is None


def test_overrides_are_coerced_to_field_types():
    sets = parse_set_options(["learning_rate=3e-4", "max_steps=10", "target_modules=q_proj, o_proj", "seed=7"])
    config = load_config(None, sets)
    assert config.learning_rate == 3e-4 and config.max_steps == 10 and config.seed == 7
    assert config.target_modules == ["q_proj", "o_proj"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"learnig_rate": "1"}, "unknown config key"),
        ({"lora_r": "eight"}, "'lora_r'"),
        ({"gradient_checkpointing": "maybe"}, "not a boolean"),
    ],
)
def test_bad_values_are_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


def test_set_needs_key_value():
    with pytest.raises(ValueError, match="key=value"):
        parse_set_options(["lr"])


def test_cli_precedence_file_then_set_then_flags(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("learning_rate = 1e-4\nlora_r = 8\nepochs = 5\n")
    args = build_parser().parse_args(
        ["--config", str(path), "--set", "lora_r=4", "--set", "epochs=2", "--epochs", "1", "--data", "x.jsonl"]
    )
    config = resolve_config(args)
    assert (config.learning_rate, config.lora_r, config.epochs, config.data) == (1e-4, 4, 1.0, "x.jsonl")

    assert main(["--config", str(path), "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["lora_r"] == 8


def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys):
    assert main(["--set", "nope=1", "--data", "x.jsonl"]) == 2
    assert "unknown config key" in capsys.readouterr().err
    assert main([]) == 2
    assert "--data" in capsys.readouterr().err
    missing = tmp_path / "missing.jsonl"
    assert main(["--data", str(missing), "-o", str(tmp_path / "o"), "--base-model", str(tmp_path)]) == 1
    assert "missing.jsonl" in capsys.readouterr().err
