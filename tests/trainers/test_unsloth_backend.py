"""The unsloth backend on a machine without CUDA: a clear error, and the parts that need no GPU.

Unsloth itself is not installed here (it needs an NVIDIA GPU and pins trl<=1.15); the real run is
untested until a GPU machine is available.
"""

import copy
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


def _tokenizer(kind: str, records, request):
    if kind.startswith("gemma"):  # the default model's real tokenizer: its own <pad>, <bos>, <end_of_turn>
        tokenizer = copy.deepcopy(request.getfixturevalue("gemma_tokenizer"))  # the fixture is shared
        assert tokenizer.pad_token == "<pad>" and tokenizer.pad_token_id != tokenizer.eos_token_id
        if kind == "gemma-right":
            tokenizer.padding_side = "right"
        return tokenizer
    texts = [t for r in records for t in to_prompt_completion(r, "llama3").values()]
    tokenizer = llama3_style_tokenizer(texts)
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@pytest.mark.parametrize("kind", ["gemma", "gemma-right", "llama3"])
def test_unsloth_rows_keep_loss_on_answer_tokens_only_after_padding(kind, request):
    """Gemma's tokenizer loads with padding_side "left" (the collator then pads before the prompt);
    Unsloth may set "right". Either way the loss must fall on the answer tokens and nowhere else."""
    chat_format = kind.split("-")[0]
    records = load_dataset(FIXTURE)
    tokenizer = _tokenizer(kind, records, request)
    examples = tokenize_records(tokenizer, records, chat_format)
    collator = DataCollatorForSeq2Seq(tokenizer=tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)
    batch = collator(unsloth_backend.rows(examples))

    width = max(len(e.input_ids) for e in examples)
    assert batch["input_ids"].shape == batch["labels"].shape == (len(examples), width)
    assert len({len(e.input_ids) for e in examples}) > 1  # some rows really are padded
    for row, example in enumerate(examples):
        n, prompt = len(example.input_ids), example.prompt_tokens
        pad = width - n if tokenizer.padding_side == "left" else 0  # where the row's own tokens start
        labels, ids, mask = batch["labels"][row], batch["input_ids"][row], batch["attention_mask"][row]
        assert ids[pad : pad + n].tolist() == example.input_ids
        assert (mask[pad : pad + n] == 1).all() and int(mask.sum()) == n
        assert (ids[mask == 0] == tokenizer.pad_token_id).all()
        assert (labels[mask == 0] == IGNORE_INDEX).all()
        assert (labels[pad : pad + prompt] == IGNORE_INDEX).all()
        answer_ids = ids[pad + prompt : pad + n]
        assert torch.equal(labels[pad + prompt : pad + n], answer_ids)
        assert int((labels != IGNORE_INDEX).sum()) == n - prompt
        answer = tokenizer.decode(answer_ids.tolist())
        assert answer == to_prompt_completion(records[row], chat_format)["completion"]
        if chat_format == "gemma":  # the turn's end is trained on, the prompt's <bos> is not
            assert answer.endswith("<end_of_turn>") and ids[pad].item() == tokenizer.bos_token_id
