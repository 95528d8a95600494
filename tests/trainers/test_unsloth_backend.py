"""The unsloth backend on a machine without CUDA: a clear error, and the parts that need no GPU.

Unsloth itself is not installed here (it needs an NVIDIA GPU and pins trl<=1.15); the real run is
untested until a GPU machine is available.
"""

import sys
from pathlib import Path

import pytest
import torch
from transformers import DataCollatorForSeq2Seq
from trl import SFTConfig

from data.convert import IGNORE_INDEX, to_prompt_completion, tokenize_records
from data.dataset import load_dataset
from tests.trainers.tinker_fakes import llama3_style_tokenizer
from trainers import unsloth_backend
from trainers.config import TrainConfig

FIXTURE = Path(__file__).parent.parent / "fixtures" / "train_sample.jsonl"


def test_unsloth_on_a_machine_without_cuda_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = TrainConfig(data=str(FIXTURE), output_dir=str(tmp_path / "run"))
    with pytest.raises(RuntimeError) as error:
        unsloth_backend.train(config)
    assert str(error.value) == "the unsloth backend needs a CUDA GPU; use --backend hf on CPU"
    assert "unsloth" not in sys.modules
    assert not (tmp_path / "run").exists()


def test_unsloth_trainer_arguments_follow_the_config_and_are_valid_for_trl(tmp_path):
    config = TrainConfig(
        output_dir=str(tmp_path / "run"),
        learning_rate=4e-4,
        batch_size=3,
        grad_accum=2,
        warmup_ratio=0.1,
        max_grad_norm=0.5,
        lr_scheduler="linear",
        save_steps=5,
    )
    steps, per_epoch = unsloth_backend.total_steps(config, n_examples=20)
    assert (steps, per_epoch) == (12, 4)  # ceil(20 / 6) = 4 steps per epoch, 3 epochs
    on_gpu = unsloth_backend.sft_arguments(config, steps, bf16=True, has_dev=True)
    assert on_gpu["bf16"] and not on_gpu["fp16"]
    # fp32 so that transformers accepts the arguments on this CPU machine
    args = SFTConfig(**unsloth_backend.sft_arguments(config.replace(precision="fp32"), steps, bf16=True, has_dev=True))
    assert (args.learning_rate, args.per_device_train_batch_size, args.gradient_accumulation_steps) == (4e-4, 3, 2)
    assert (args.max_steps, args.warmup_steps, args.max_grad_norm) == (12, 1, 0.5)
    assert not args.bf16 and not args.fp16 and not args.gradient_checkpointing
    assert args.dataset_kwargs == {"skip_prepare_dataset": True}
    assert args.eval_strategy == "epoch" and args.save_steps == 5
    assert Path(args.output_dir) == tmp_path / "run" / "checkpoints"


def test_unsloth_rows_keep_loss_on_answer_tokens_only_after_padding():
    records = load_dataset(FIXTURE)
    texts = [t for r in records for t in to_prompt_completion(r, "llama3").values()]
    tokenizer = llama3_style_tokenizer(texts)
    tokenizer.pad_token = tokenizer.eos_token
    examples = tokenize_records(tokenizer, records, "llama3")
    collator = DataCollatorForSeq2Seq(tokenizer=tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)
    batch = collator(unsloth_backend.rows(examples))

    width = max(len(e.input_ids) for e in examples)
    assert batch["input_ids"].shape == batch["labels"].shape == (len(examples), width)
    for row, example in enumerate(examples):
        n, prompt = len(example.input_ids), example.prompt_tokens
        labels, ids = batch["labels"][row], batch["input_ids"][row]
        assert (labels[:prompt] == IGNORE_INDEX).all()
        assert torch.equal(labels[prompt:n], ids[prompt:n])
        assert (labels[n:] == IGNORE_INDEX).all() and (batch["attention_mask"][row, n:] == 0).all()
        answer = tokenizer.decode(ids[prompt:n].tolist())
        assert answer == to_prompt_completion(records[row], "llama3")["completion"]
