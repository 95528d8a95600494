"""Tinker's adapter layout -> a standard PEFT adapter that loads with peft and computes the same outputs."""

import io
import json
import tarfile

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file

from tests.trainers.tinker_fakes import make_tiny_model
from trainers.tinker_convert import TinkerAdapterError, convert, main, tinker_to_peft

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]


def write_tinker_adapter(peft_model, directory) -> None:
    """The adapter as Tinker stores it: only the LoRA pairs, `model.unembed_tokens` for the output head,
    and a config with just rank and alpha (tinker-cookbook weights/_adapter.py reads exactly this)."""
    directory.mkdir(parents=True)
    tensors = {
        name.replace("base_model.model.lm_head.", "base_model.model.model.unembed_tokens."): tensor.clone()
        for name, tensor in get_peft_model_state_dict(peft_model).items()
        if ".lora_A." in name or ".lora_B." in name
    }
    assert any("unembed_tokens" in name for name in tensors)
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    (directory / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 8}))


@pytest.fixture(scope="module")
def trained_like(tmp_path_factory):
    """A PEFT model with random (non-zero) LoRA weights and its Tinker-layout copy."""
    base = make_tiny_model()
    state = {k: v.clone() for k, v in base.state_dict().items()}
    peft_model = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, init_lora_weights=False, task_type="CAUSAL_LM")
    ).eval()
    tinker_dir = tmp_path_factory.mktemp("tinker") / "sampler_weights"
    write_tinker_adapter(peft_model, tinker_dir)
    return peft_model, state, tinker_dir


def load_converted(state, adapter_dir):
    base = make_tiny_model()
    base.load_state_dict(state)
    return PeftModel.from_pretrained(base, str(adapter_dir)).eval()


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_converted_adapter_loads_in_peft_and_gives_identical_outputs(trained_like, tmp_path):
    peft_model, state, tinker_dir = trained_like
    out = tinker_to_peft(tinker_dir, tmp_path / "peft", base_model="tiny-gemma3")

    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 8
    assert sorted(config["target_modules"]) == sorted(TARGETS)
    assert config["base_model_name_or_path"] == "tiny-gemma3"

    converted = load_converted(state, out)
    ids = torch.randint(0, 320, (2, 12), generator=torch.Generator().manual_seed(1))
    expected = logits(peft_model, ids)
    assert torch.equal(logits(converted, ids), expected)
    with peft_model.disable_adapter():
        assert not torch.allclose(logits(peft_model, ids), expected), "the adapter must change the outputs"


def test_tar_archive_converts_like_the_directory(trained_like, tmp_path):
    peft_model, state, tinker_dir = trained_like
    archive = tmp_path / "checkpoint.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tinker_dir, arcname="sampler_weights")
    result = convert(archive, tmp_path / "peft")
    assert result.rank == 4 and result.tensors == 2 * (2 * 7 + 1)
    ids = torch.arange(10).unsqueeze(0)
    assert torch.equal(logits(load_converted(state, result.path), ids), logits(peft_model, ids))


def test_mixture_of_experts_tensors_are_refused(tmp_path):
    tinker_dir = tmp_path / "moe"
    tinker_dir.mkdir()
    save_file(
        {
            "base_model.model.model.layers.0.mlp.experts.w1.lora_A.weight": torch.zeros(3, 2, 8),
            "base_model.model.model.layers.0.mlp.experts.w1.lora_B.weight": torch.zeros(3, 16, 2),
        },
        str(tinker_dir / "adapter_model.safetensors"),
    )
    (tinker_dir / "adapter_config.json").write_text(json.dumps({"r": 2, "lora_alpha": 32}))
    with pytest.raises(TinkerAdapterError, match="mixture-of-experts"):
        tinker_to_peft(tinker_dir, tmp_path / "out")


def test_a_missing_half_of_a_pair_is_refused(tmp_path):
    tinker_dir = tmp_path / "half"
    tinker_dir.mkdir()
    save_file(
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(2, 8)},
        str(tinker_dir / "adapter_model.safetensors"),
    )
    (tinker_dir / "adapter_config.json").write_text(json.dumps({"r": 2, "lora_alpha": 32}))
    with pytest.raises(TinkerAdapterError, match="lora_A and lora_B"):
        tinker_to_peft(tinker_dir, tmp_path / "out")


def test_archive_entries_escaping_the_folder_are_refused(tmp_path):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        data = b"{}"
        info = tarfile.TarInfo("../adapter_config.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(TinkerAdapterError, match="unsafe entry"):
        tinker_to_peft(archive, tmp_path / "out")
    assert not (tmp_path / "adapter_config.json").exists()


def test_command_line_converts_and_reports_errors(trained_like, tmp_path, capsys):
    _, state, tinker_dir = trained_like
    assert main([str(tinker_dir), str(tmp_path / "peft"), "--base-model", "tiny"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["r"] == 4 and report["tensors"] == 30 and "lm_head" in report["target_modules"]
    assert main([str(tmp_path / "missing"), str(tmp_path / "out")]) == 1
    assert "not found" in capsys.readouterr().err
