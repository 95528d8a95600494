"""Shared trainer-test fixtures: the real Gemma tokenizer and tiny randomly initialised Gemma 3 models.

The tokenizer comes from the cached dequantized base checkpoint (`trainers.base_model`). The first use
on a fresh machine (CI) parses the embedded GGUF once (~90 s) and caches it; the slow real-model test
then reuses the same cache, so CI pays for the GGUF only once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

from data.dataset import load_dataset
from trainers.base_model import resolve_base_model

FIXTURE = Path(__file__).parents[1] / "fixtures" / "train_sample.jsonl"


@pytest.fixture(scope="session")
def base_checkpoint_dir() -> Path:
    return Path(resolve_base_model().path)


@pytest.fixture(scope="session")
def gemma_tokenizer(base_checkpoint_dir):
    return AutoTokenizer.from_pretrained(str(base_checkpoint_dir))


def make_tiny_gemma3(vocab_size: int, seed: int = 0) -> Gemma3ForCausalLM:
    """Two layers, hidden size 32, the real vocabulary size (so the real tokenizer's ids fit)."""
    config = Gemma3TextConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=1024,
        sliding_window=64,
        layer_types=["sliding_attention", "full_attention"],
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=1,
    )
    torch.manual_seed(seed)
    return Gemma3ForCausalLM(config)


@pytest.fixture
def tiny_gemma3(gemma_tokenizer):
    """A factory: every call returns the same freshly initialised tiny model (fixed seed)."""
    return lambda: make_tiny_gemma3(len(gemma_tokenizer))


@pytest.fixture(scope="session")
def sample_records():
    return load_dataset(FIXTURE)
