"""The Tinker training loop, driven against a fake Tinker service at the SDK boundary (no network).

Real parts: the dataset loader, the shared renderer and tokenization (data/), the SDK's own Datum,
TensorData and response types, the download over (file://) URLs, the adapter conversion, and peft
loading the result onto a tiny Gemma 3.
"""

import json
import math
from pathlib import Path

import pytest
import torch
from peft import PeftModel

from data.convert import to_prompt_completion
from data.dataset import load_dataset
from data.prompts import render_answer, render_chat_completion, render_chat_prompt
from inference.manifest import Manifest
from tests.trainers.tinker_fakes import FakeServiceClient, fake_loss, llama3_style_tokenizer, make_tiny_model
from trainers import tinker_backend
from trainers.config import TrainConfig

FIXTURE = Path(__file__).parent.parent / "fixtures" / "train_sample.jsonl"
MODEL = "meta-llama/Llama-3.2-1B"


@pytest.fixture(scope="module")
def records():
    return load_dataset(FIXTURE)


@pytest.fixture(scope="module")
def tokenizer(records):
    texts = []
    for record in records:
        pair = to_prompt_completion(record, "llama3")
        texts += [pair["prompt"], pair["completion"]]
    return llama3_style_tokenizer(texts)


def make_config(tmp_path, **changes) -> TrainConfig:
    base = TrainConfig(
        base_model=MODEL,
        chat_format="llama3",
        data=str(FIXTURE),
        lora_r=4,
        learning_rate=3e-4,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        batch_size=2,
        epochs=2,
        output_dir=str(tmp_path / "run"),
    )
    return base.replace(**changes)


def test_fake_tinker_datums_weight_answer_tokens_only(tmp_path, records, tokenizer):
    service = FakeServiceClient(tokenizer, tmp_path / "storage")
    tinker_backend.train(make_config(tmp_path, epochs=1, batch_size=len(records)), service_client=service)

    ((datums, loss_fn),) = service.calls.forward_backward
    assert loss_fn == "cross_entropy"
    assert len(datums) == len(records)
    seen = set()
    for datum in datums:
        inputs = datum.model_input.to_ints()
        targets = datum.loss_fn_inputs["target_tokens"].tolist()
        weights = datum.loss_fn_inputs["weights"].tolist()
        assert len(inputs) == len(targets) == len(weights)
        assert inputs[1:] == targets[:-1], "targets are the inputs shifted by one"
        assert inputs[0] == tokenizer.bos_token_id
        answer_start = weights.index(1.0)
        assert set(weights[:answer_start]) == {0.0} and set(weights[answer_start:]) == {1.0}
        full = inputs + targets[-1:]
        # every prompt token (BOS included) has weight 0, every answer token weight 1
        prompt = tokenizer.decode(full[: answer_start + 1], skip_special_tokens=False)
        answer = tokenizer.decode(targets[answer_start:], skip_special_tokens=False)
        seen.add((prompt, answer))
    expected = {
        (
            tokenizer.bos_token + render_chat_prompt(r.prompt, "llama3"),
            render_chat_completion(render_answer(r.analysis), "llama3"),
        )
        for r in records
    }
    assert all(answer.endswith("}<|eot_id|>") for _, answer in expected)
    assert seen == expected


def test_fake_tinker_loop_steps_learning_rate_and_metrics(tmp_path, records, tokenizer):
    service = FakeServiceClient(tokenizer, tmp_path / "storage")
    config = make_config(tmp_path)
    result = tinker_backend.train(config, service_client=service)

    steps = 2 * math.ceil(len(records) / 2)
    calls = service.calls
    assert calls.create == [
        {"base_model": MODEL, "rank": 4, "seed": 0, "train_attn": True, "train_mlp": True, "train_unembed": False}
    ]
    assert len(calls.forward_backward) == len(calls.optim_step) == steps
    assert [p.learning_rate for p in calls.optim_step] == [3e-4] * steps
    assert {(p.beta1, p.beta2, p.weight_decay) for p in calls.optim_step} == {(0.9, 0.999, 0.0)}
    # each epoch shows every example exactly once, in batches of at most batch_size
    per_epoch = steps // 2
    everything = sorted(tuple(d.model_input.to_ints()) for d in tinker_backend_datums(calls, 0, per_epoch))
    assert len(everything) == len(records)
    for epoch in range(2):
        batches = [d for d, _ in calls.forward_backward[epoch * per_epoch : (epoch + 1) * per_epoch]]
        assert all(len(b) <= 2 for b in batches)
        assert sorted(tuple(d.model_input.to_ints()) for b in batches for d in b) == everything

    lines = [json.loads(x) for x in (Path(config.output_dir) / "metrics.jsonl").read_text().splitlines()]
    train = [m for m in lines if m["type"] == "train"]
    assert [m["step"] for m in train] == list(range(1, steps + 1))
    # the loss is the weighted mean: prompt positions (logprob -50 in the fake) do not count
    assert [m["loss"] for m in train] == pytest.approx([fake_loss(s) for s in range(steps)])
    assert all(m["lr"] == 3e-4 and m["tokens"] > m["answer_tokens"] > 0 for m in train)
    assert result.metrics["steps"] == steps
    assert calls.closed == []  # a client passed in is the caller's to close


def tinker_backend_datums(calls, start, stop):
    return [d for batch, _ in calls.forward_backward[start:stop] for d in batch]


def test_fake_tinker_schedule_matches_the_hf_backend_scheduler(tmp_path, records, tokenizer):
    service = FakeServiceClient(tokenizer, tmp_path / "storage")
    config = make_config(tmp_path, lr_scheduler="cosine", warmup_ratio=0.25, epochs=2)
    tinker_backend.train(config, service_client=service)

    from transformers import get_scheduler

    steps = len(service.calls.optim_step)
    optimizer = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=config.learning_rate)
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=round(0.25 * steps), num_training_steps=steps)
    expected = []
    for _ in range(steps):
        expected.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert [p.learning_rate for p in service.calls.optim_step] == pytest.approx(expected)
    assert len(set(expected)) > 2


def test_fake_tinker_download_is_converted_to_a_loadable_peft_adapter(tmp_path, records, tokenizer):
    service = FakeServiceClient(tokenizer, tmp_path / "storage")
    dev = records[:1]
    config = make_config(tmp_path, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "lm_head"])
    result = tinker_backend.train(config, records, dev, service_client=service)

    assert service.calls.create[0]["train_mlp"] is False and service.calls.create[0]["train_unembed"] is True
    assert len(service.calls.external_saves) == len(service.calls.sampler_saves) == 1
    assert (Path(config.output_dir) / "tinker_adapter" / "adapter_model.safetensors").is_file()
    adapter_config = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert sorted(adapter_config["target_modules"]) == ["k_proj", "lm_head", "o_proj", "q_proj", "v_proj"]
    assert adapter_config["lora_alpha"] == 32 and adapter_config["r"] == 4

    base = make_tiny_model()
    ids = torch.arange(12).unsqueeze(0)
    with torch.no_grad():
        before = base(input_ids=ids).logits
        model = PeftModel.from_pretrained(base, str(result.adapter_dir)).eval()
        after = model(input_ids=ids).logits
    assert not torch.allclose(before, after)

    manifest = Manifest.read(result.manifest_path)
    assert manifest.kind == "adapter" and manifest.extra["backend"] == "tinker"
    assert manifest.extra["tinker_paths"]["external"] == service.calls.external_saves[0]
    assert manifest.dataset["items"] == len(records) and manifest.dataset["dev_items"] == 1
    # dev loss measured with forward() after each epoch, on the dev datums only
    assert [len(d) for d in service.calls.forward] == [1, 1]
    assert manifest.metrics["final_dev_loss"] == pytest.approx(fake_loss(len(service.calls.optim_step)))


def test_fake_tinker_resume_continues_from_the_saved_state(tmp_path, records, tokenizer):
    service = FakeServiceClient(tokenizer, tmp_path / "storage", fail_at_step=3)
    config = make_config(tmp_path, save_steps=1)
    with pytest.raises(ConnectionError):
        tinker_backend.train(config, service_client=service)
    assert len(service.calls.optim_step) == 2
    last_saved = service.calls.saved_states[-1]
    assert last_saved == "tinker://fake-run/weights/step-000002"
    with pytest.raises(FileExistsError):
        tinker_backend.train(config, service_client=service)

    service.fail_at_step = None
    tinker_backend.train(config, resume=True, service_client=service)
    steps = 2 * math.ceil(len(records) / 2)
    assert service.calls.resumed_from == [last_saved]
    assert len(service.calls.optim_step) == steps
    lines = [json.loads(x) for x in (Path(config.output_dir) / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines if m["type"] == "train"] == list(range(1, steps + 1))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"base_model": "embedded:gemma-3-270m", "chat_format": "gemma"}, "models hosted by Tinker"),
        ({"base_model": "Qwen/Qwen3-8B"}, "no chat format"),
        ({"chat_format": "gemma"}, "needs chat_format=llama3"),
        ({"target_modules": ["q_proj", "v_proj"]}, "together"),
        ({"target_modules": ["embed_tokens"]}, "cannot put LoRA"),
    ],
)
def test_configs_tinker_cannot_train_are_refused_before_any_call(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        tinker_backend.train(make_config(tmp_path, **changes), service_client=object())


def test_missing_api_key_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    monkeypatch.delenv("TINKER_CREDENTIAL_CMD", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(RuntimeError, match="TINKER_API_KEY"):
        tinker_backend.train(make_config(tmp_path))
