"""The hf backend end to end on a tiny random Gemma 3 with the real tokenizer: it learns, writes a PEFT
adapter + manifest + metrics, and resumes from a checkpoint to exactly the same result."""

import json

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from data.dataset import file_sha256
from inference.manifest import Manifest
from trainers import hf_backend
from trainers.base_model import BaseModelInfo
from trainers.config import TrainConfig

from .conftest import FIXTURE


def tiny_config(tmp_path, name="run", **changes) -> TrainConfig:
    base = TrainConfig(
        data=str(FIXTURE),
        dev_data=str(FIXTURE),
        output_dir=str(tmp_path / name),
        lora_r=4,
        lora_alpha=8,
        learning_rate=1e-2,
        warmup_ratio=0.0,
        lr_scheduler="constant",
        batch_size=1,
        max_steps=9,
        num_threads=1,
        precision="fp32",
        seed=0,
    )
    return base.replace(**changes)


def run(config, tiny_gemma3, tokenizer, resume=False):
    info = BaseModelInfo(spec="tiny-gemma3", path="(built in test)")
    return hf_backend.train(config, model=tiny_gemma3(), tokenizer=tokenizer, base_info=info, resume=resume)


def read_metrics(out_dir):
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def test_training_lowers_loss_and_writes_adapter_manifest_metrics(tmp_path, tiny_gemma3, gemma_tokenizer):
    config = tiny_config(tmp_path)
    result = run(config, tiny_gemma3, gemma_tokenizer)

    metrics = read_metrics(result.output_dir)
    train = [m for m in metrics if m["type"] == "train"]
    assert [m["step"] for m in train] == list(range(1, 10))
    for m in train:
        assert {"loss", "lr", "tokens", "seconds", "answer_tokens"} <= m.keys()
        assert m["tokens"] > m["answer_tokens"] > 0 and m["seconds"] > 0
    # 3 items, batch 1: three epochs, a dev evaluation (on the same 3 items) after each
    evals = [m for m in metrics if m["type"] == "eval"]
    assert [m["epoch"] for m in evals] == [1.0, 2.0, 3.0]
    dev = [m["dev_loss"] for m in evals]
    assert dev[0] > dev[1] > dev[2], dev  # a random tiny model learns slowly, but steadily
    epoch_means = [sum(m["loss"] for m in train[i : i + 3]) / 3 for i in (0, 3, 6)]
    assert epoch_means[0] > epoch_means[1] > epoch_means[2], epoch_means

    adapter = result.adapter_dir
    assert (adapter / "adapter_config.json").is_file()
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    assert any("lora_B" in name and weights[name].abs().sum() > 0 for name in weights)

    manifest = Manifest.read(result.manifest_path)
    assert manifest.kind == "adapter"
    assert manifest.config["lora_r"] == 4 and manifest.config["learning_rate"] == 1e-2
    assert manifest.dataset["train_sha256"] == file_sha256(FIXTURE)
    assert manifest.dataset["items"] == 3
    assert manifest.base_model["spec"] == "tiny-gemma3"
    assert manifest.code_version
    assert manifest.metrics["steps"] == 9
    assert manifest.metrics["final_train_loss"] == pytest.approx(train[-1]["loss"])
    assert manifest.metrics["final_dev_loss"] == pytest.approx(evals[-1]["dev_loss"])
    assert manifest.extra["precision"] == {
        "requested": "fp32",
        "chosen": "fp32",
        "reason": "fp32 as configured",
        "warning": None,
    }

    # the adapter loads with peft on the same base and changes its output
    base = tiny_gemma3().eval()
    ids = torch.tensor([gemma_tokenizer("Title: test")["input_ids"]])
    with torch.no_grad():
        before = base(input_ids=ids).logits
        tuned = PeftModel.from_pretrained(base, str(adapter)).eval()
        after = tuned(input_ids=ids).logits
    assert not torch.allclose(before, after)


def test_resume_from_checkpoint_gives_the_uninterrupted_result(tmp_path, tiny_gemma3, gemma_tokenizer, monkeypatch):
    straight = run(
        tiny_config(tmp_path, "straight", max_steps=6, save_steps=3, lora_dropout=0.1, dev_data=None),
        tiny_gemma3,
        gemma_tokenizer,
    )

    config = tiny_config(tmp_path, "interrupted", max_steps=6, save_steps=3, lora_dropout=0.1, dev_data=None)
    real_loss = hf_backend.answer_loss_sum
    calls = {"n": 0}

    def crash_on_step_five(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # batch 1, no dev data: call 5 is step 5, after the step-3 checkpoint
            raise KeyboardInterrupt("simulated kill")
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(hf_backend, "answer_loss_sum", crash_on_step_five)
    with pytest.raises(KeyboardInterrupt):
        run(config, tiny_gemma3, gemma_tokenizer)
    monkeypatch.setattr(hf_backend, "answer_loss_sum", real_loss)
    assert json.loads((tmp_path / "interrupted" / "checkpoint" / "state.json").read_text())["global_step"] == 3

    with pytest.raises(FileExistsError):
        run(config, tiny_gemma3, gemma_tokenizer)  # a checkpoint is never overwritten silently
    resumed = run(config, tiny_gemma3, gemma_tokenizer, resume=True)

    losses = [m["loss"] for m in read_metrics(resumed.output_dir) if m["type"] == "train"]
    expected = [m["loss"] for m in read_metrics(straight.output_dir) if m["type"] == "train"]
    assert len(losses) == 6
    assert losses == pytest.approx(expected, rel=1e-5)
    a = load_file(str(straight.adapter_dir / "adapter_model.safetensors"))
    b = load_file(str(resumed.adapter_dir / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6), name


def test_auto_precision_on_a_cpu_without_bf16_trains_in_fp32_and_says_why(
    tmp_path, tiny_gemma3, gemma_tokenizer, monkeypatch, capsys
):
    from trainers import precision

    monkeypatch.setattr(precision, "cpu_bf16_kind", lambda *a, **k: "none")
    result = run(tiny_config(tmp_path, precision="auto", max_steps=1, device="cpu"), tiny_gemma3, gemma_tokenizer)
    manifest = Manifest.read(result.manifest_path)
    assert manifest.extra["precision"]["chosen"] == "fp32"
    assert manifest.extra["precision"]["reason"] == "cpu without native bf16: fp32"
    assert manifest.extra["autocast"] == "None"
    assert "precision: cpu without native bf16: fp32" in capsys.readouterr().err
