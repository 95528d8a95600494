"""Tiny real models for the export tests: random Gemma 3 / Llama weights, the real Gemma tokenizer.

llama.cpp needs a tokenizer inside every model GGUF; the embedded Gemma 3 270M GGUF provides one
(262,144 tokens), so the tiny models use that vocabulary with a 64-wide hidden size (~17M parameters,
almost all of them the embedding). The base GGUF is written by the exporter itself from the HF model,
which is also what the merged-GGUF tests check.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model

from export.merged_gguf import write_model_gguf
from export.parity import ParityThresholds, load_prompts
from inference.models import embedded_base_model

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TRAIN_SAMPLE = FIXTURES / "train_sample.jsonl"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TINY_THRESHOLDS = ParityThresholds(min_greedy_agreement=0.5, min_top1_agreement=0.9, max_relative_error=0.1)
"""Random tiny models have near-tied logits, so greedy answers may part on a float rounding; the relative
error, which a broken export drives to ~1, is held to a stricter limit instead."""
TINY_MAX_TOKENS = 16


def tiny_gemma3(seed: int = 0):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    config = Gemma3TextConfig(
        vocab_size=262144,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        query_pre_attn_scalar=32,  # llama.cpp scales attention by 1/sqrt(head_dim) for Gemma 3
        sliding_window=512,
        max_position_embeddings=2048,
        initializer_range=0.1,
        tie_word_embeddings=True,
    )
    model = Gemma3ForCausalLM(config).eval()
    with torch.no_grad():  # non-zero norm weights, so a missing "+1" would show
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.uniform_(-0.2, 0.2)
    return model


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=262144,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        initializer_range=0.1,
        tie_word_embeddings=True,
        bos_token_id=2,
        eos_token_id=1,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


def tiny_gemma2(seed: int = 0):
    """Gemma 2: attention and final logit soft-capping, alternating sliding/full layers."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(seed)
    config = Gemma2Config(
        vocab_size=262144,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        query_pre_attn_scalar=32,
        sliding_window=512,
        max_position_embeddings=2048,
        initializer_range=0.1,
        bos_token_id=2,
        eos_token_id=1,
        pad_token_id=0,
    )
    return Gemma2ForCausalLM(config).eval()


def tiny_qwen2(seed: int = 0):
    """Qwen 2: q/k/v biases (given non-zero values so a lost bias would show)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=262144,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        initializer_range=0.1,
        tie_word_embeddings=True,
        bos_token_id=2,
        eos_token_id=1,
        pad_token_id=0,
    )
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_(std=0.1)
    return model


def random_lora(model, seed: int = 1, std: float = 0.5, **lora_kwargs):
    """A LoRA whose B is not zero (a fresh PEFT LoRA changes nothing); PEFT wraps `model` in place."""
    torch.manual_seed(seed)
    config = LoraConfig(**{"r": 4, "lora_alpha": 8, "target_modules": TARGETS, **lora_kwargs})
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=std)
    return peft_model.eval()


@dataclass
class TinySetup:
    hf_dir: Path
    base_gguf: Path
    adapter_dir: Path
    peft_model: object
    chat_format: str = "gemma"


def build_setup(root: Path, model, std: float = 0.5, **lora_kwargs) -> TinySetup:
    root.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(root / "hf")
    write_model_gguf(model, root / "base.gguf", "f32", tokenizer_gguf=embedded_base_model(), chat_format="gemma")
    peft_model = random_lora(model, std=std, **lora_kwargs)
    peft_model.save_pretrained(root / "adapter")
    return TinySetup(root / "hf", root / "base.gguf", root / "adapter", peft_model)


@pytest.fixture(scope="session")
def gemma_setup(tmp_path_factory) -> TinySetup:
    return build_setup(tmp_path_factory.mktemp("gemma3"), tiny_gemma3())


@pytest.fixture(scope="session")
def llama_setup(tmp_path_factory) -> TinySetup:
    # rsLoRA plus a per-module alpha: the exporter must reproduce PEFT's scale for every module.
    return build_setup(tmp_path_factory.mktemp("llama"), tiny_llama(), use_rslora=True, alpha_pattern={"down_proj": 2})


@pytest.fixture(scope="session")
def prompts() -> list[str]:
    return load_prompts(TRAIN_SAMPLE, 2)
