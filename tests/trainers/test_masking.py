"""Loss on answer tokens only: labels are -100 on every prompt token and only there."""

import pytest
import torch

from data.convert import IGNORE_INDEX, to_prompt_completion, tokenize_prompt_completion, tokenize_records
from data.prompts import render_chat_prompt
from trainers.hf_backend import answer_loss_sum, collate

END_OF_TURN = 106
BOS = 2


def test_labels_mask_every_prompt_token_and_only_those(gemma_tokenizer, sample_records):
    for record in sample_records:
        pair = to_prompt_completion(record, "gemma")
        example = tokenize_prompt_completion(gemma_tokenizer, pair["prompt"], pair["completion"])
        prompt_ids = gemma_tokenizer(render_chat_prompt(record.prompt, "gemma"))["input_ids"]

        assert example.input_ids[0] == BOS
        assert example.input_ids[: len(prompt_ids)] == prompt_ids
        n = len(prompt_ids)
        assert example.prompt_tokens == n
        assert example.labels[:n] == [IGNORE_INDEX] * n
        # every answer position is kept, with its own token id
        assert example.labels[n:] == example.input_ids[n:]
        assert IGNORE_INDEX not in example.labels[n:]
        assert example.labels[-1] == END_OF_TURN
        answer = gemma_tokenizer.decode(example.labels[n:])
        assert answer == pair["completion"]
        assert answer.endswith("}<end_of_turn>")
        assert not example.truncated


def test_too_long_examples_are_cut_and_flagged(gemma_tokenizer, sample_records):
    pair = to_prompt_completion(sample_records[0])
    example = tokenize_prompt_completion(gemma_tokenizer, pair["prompt"], pair["completion"], max_length=20)
    assert example.truncated and len(example.input_ids) == 20 and len(example.labels) == 20


def test_padding_is_masked_in_a_batch(gemma_tokenizer, sample_records):
    examples = tokenize_records(gemma_tokenizer, sample_records)
    batch = collate(examples, pad_id=gemma_tokenizer.pad_token_id)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        assert batch["attention_mask"][row].sum() == n
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all()
        assert batch["labels"][row, :n].tolist() == example.labels


def test_answer_only_head_gives_the_full_head_loss(gemma_tokenizer, sample_records, tiny_gemma3):
    """The speed-up (output head on answer positions only) must not change the loss."""
    model = tiny_gemma3().eval()
    batch = collate(tokenize_records(gemma_tokenizer, sample_records), pad_id=gemma_tokenizer.pad_token_id)
    with torch.no_grad():
        fast, n_fast = answer_loss_sum(model, batch, answer_only_head=True)
        full, n_full = answer_loss_sum(model, batch, answer_only_head=False)
        reference = model(**batch).loss  # transformers' own shifted, -100-ignoring mean loss
    assert n_fast == n_full == sum(e.answer_tokens for e in tokenize_records(gemma_tokenizer, sample_records))
    assert torch.allclose(fast, full, rtol=1e-5)
    assert torch.allclose(fast / n_fast, reference, rtol=1e-5)


def test_training_tokens_are_the_tokens_llama_cpp_serves(gemma_tokenizer, sample_records, base_checkpoint_dir):
    """Train/serve parity: the HF tokenizer splits prompt and answer exactly as llama.cpp does on the GGUF."""
    llama_cpp = pytest.importorskip("llama_cpp")
    import json

    gguf = json.loads((base_checkpoint_dir / "news_enhancer_base.json").read_text())["source_file"]
    vocab = llama_cpp.Llama(gguf, vocab_only=True, verbose=False)
    for record in sample_records:
        pair = to_prompt_completion(record)
        example = tokenize_prompt_completion(gemma_tokenizer, pair["prompt"], pair["completion"])
        served_prompt = vocab.tokenize(pair["prompt"].encode(), add_bos=True, special=True)
        served_answer = vocab.tokenize(pair["completion"].encode(), add_bos=False, special=True)
        assert example.input_ids == served_prompt + served_answer
