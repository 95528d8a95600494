"""A few real LoRA steps on Gemma 3 270M (the embedded GGUF, dequantized and cached) through the CLI."""

import json

import pytest

from inference.manifest import Manifest
from trainers.cli import main

from .conftest import FIXTURE


@pytest.mark.slow
def test_two_real_steps_on_gemma_270m_write_adapter_and_manifest(tmp_path, capsys, base_checkpoint_dir):
    out = tmp_path / "run"
    argv = ["--backend", "hf", "--data", str(FIXTURE), "-o", str(out), "--max-steps", "2", "--batch-size", "2"]
    assert main([*argv, "--num-threads", "1", "--set", "warmup_ratio=0"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert result["steps"] == 2
    assert 0 < result["first_train_loss"] < 5  # the base model already knows JSON: far below ln(262144) = 12.5
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["r"] == 16
    assert set(adapter_config["target_modules"]) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    manifest = Manifest.read(out / "adapter")
    assert manifest.base_model["spec"] == "embedded:gemma-3-270m"
    assert len(manifest.base_model["source_sha256"]) == 64
    assert manifest.base_model["path"] == str(base_checkpoint_dir)
    assert manifest.extra["trainable_parameters"] == 3_796_992
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines if m["type"] == "train"] == [1, 2]
