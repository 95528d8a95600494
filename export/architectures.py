"""What differs between model families when their weights are written for llama.cpp: one table, no branches.

llama.cpp's own converter (`convert_hf_to_gguf.py`) is the reference for every entry:
- tensor names come from the `gguf` package's `get_tensor_name_map(arch, n_layers)`;
- Gemma's RMSNorm computes `x * (1 + w)` while llama.cpp computes `x * w`, so the converter writes
  `w + 1` for every `*norm.weight` (`Gemma3Model.modify_tensors`, `norm_shift`);
- the Llama converter permutes the rows of `q_proj`/`k_proj` into llama.cpp's rotary layout
  (`LlamaModel.permute`); a LoRA's B matrix of those modules needs the same row permutation;
- hyperparameters become `{arch}.*` keys (`set_gguf_parameters`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from gguf import MODEL_ARCH, MODEL_ARCH_NAMES, GGUFValueType

HF_PREFIXES: tuple[tuple[str, str], ...] = (
    # (prefix in a Hugging Face / PEFT name, what gguf's tensor map expects instead)
    ("base_model.model.", ""),  # PeftModel wraps the model
    ("model.language_model.", "model."),  # Gemma3ForConditionalGeneration's text tower
    ("language_model.model.", "model."),
)


def _rope_theta(config: Any) -> float:
    """transformers 5 keeps rope settings in `rope_parameters` (per layer type for Gemma 3)."""
    params = getattr(config, "rope_parameters", None) or {}
    if "full_attention" in params:
        params = params["full_attention"]
    theta = params.get("rope_theta", getattr(config, "rope_theta", None))
    if theta is None:
        raise ValueError("the model config has no rope_theta")
    rope_type = params.get("rope_type", "default")
    if rope_type != "default":
        raise ValueError(f"rope_type {rope_type!r} is not supported by this exporter (only 'default')")
    return float(theta)


def _head_dim(config: Any) -> int:
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def _attr(name: str) -> Callable[[Any], Any]:
    return lambda config: getattr(config, name, None)


U32, F32 = GGUFValueType.UINT32, GGUFValueType.FLOAT32

# (key template, value type, how to read it from the HF config); None values are left out.
COMMON_HPARAMS: tuple[tuple[str, GGUFValueType, Callable[[Any], Any]], ...] = (
    ("{arch}.context_length", U32, _attr("max_position_embeddings")),
    ("{arch}.embedding_length", U32, _attr("hidden_size")),
    ("{arch}.block_count", U32, _attr("num_hidden_layers")),
    ("{arch}.feed_forward_length", U32, _attr("intermediate_size")),
    ("{arch}.attention.head_count", U32, _attr("num_attention_heads")),
    ("{arch}.attention.head_count_kv", U32, _attr("num_key_value_heads")),
    ("{arch}.attention.layer_norm_rms_epsilon", F32, _attr("rms_norm_eps")),
    ("{arch}.attention.key_length", U32, _head_dim),
    ("{arch}.attention.value_length", U32, _head_dim),
    ("{arch}.rope.freq_base", F32, _rope_theta),
)
GEMMA_HPARAMS = (
    ("{arch}.attention.sliding_window", U32, _attr("sliding_window")),
    ("{arch}.final_logit_softcapping", F32, _attr("final_logit_softcapping")),
)
GEMMA2_HPARAMS = (
    *GEMMA_HPARAMS,
    ("{arch}.attn_logit_softcapping", F32, _attr("attn_logit_softcapping")),
)
LLAMA_HPARAMS = (
    ("{arch}.rope.dimension_count", U32, _head_dim),
    ("{arch}.vocab_size", U32, _attr("vocab_size")),
)


@dataclass(frozen=True)
class ArchSpec:
    """How one model family's Hugging Face weights become llama.cpp tensors."""

    gguf_arch: MODEL_ARCH
    norm_shift: float = 0.0
    """Added to every `*norm.weight` (Gemma stores `w - 1`)."""
    permute_qk: bool = False
    """Rows of q/k weights (and of a LoRA's B for q/k) go into llama.cpp's rotary order."""
    extra_hparams: tuple[tuple[str, GGUFValueType, Callable[[Any], Any]], ...] = ()
    chat_format: str | None = None
    """The data.prompts chat format whose template a merged GGUF embeds by default."""

    @property
    def name(self) -> str:
        return MODEL_ARCH_NAMES[self.gguf_arch]


GEMMA3 = ArchSpec(MODEL_ARCH.GEMMA3, norm_shift=1.0, extra_hparams=GEMMA_HPARAMS, chat_format="gemma")
GEMMA2 = ArchSpec(MODEL_ARCH.GEMMA2, norm_shift=1.0, extra_hparams=GEMMA2_HPARAMS, chat_format="gemma")
LLAMA = ArchSpec(MODEL_ARCH.LLAMA, permute_qk=True, extra_hparams=LLAMA_HPARAMS, chat_format="llama3")
QWEN2 = ArchSpec(MODEL_ARCH.QWEN2)

ARCHITECTURES: dict[str, ArchSpec] = {
    # Hugging Face config.model_type -> spec
    "gemma3_text": GEMMA3,
    "gemma3": GEMMA3,
    "gemma2": GEMMA2,
    "llama": LLAMA,
    "qwen2": QWEN2,
}
GGUF_ARCHITECTURES: dict[str, ArchSpec] = {spec.name: spec for spec in ARCHITECTURES.values()}
"""general.architecture of a GGUF -> spec."""


def arch_for_model_type(model_type: str) -> ArchSpec:
    try:
        return ARCHITECTURES[model_type]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"model_type {model_type!r} is not supported by the exporter; known: {known}") from None


def arch_for_gguf(architecture: str) -> ArchSpec:
    try:
        return GGUF_ARCHITECTURES[architecture]
    except KeyError:
        known = ", ".join(sorted(GGUF_ARCHITECTURES))
        message = f"GGUF architecture {architecture!r} is not supported by the exporter; known: {known}"
        raise ValueError(message) from None


def normalize_hf_name(name: str) -> str:
    """A Hugging Face or PEFT tensor/module name in the form gguf's tensor map knows."""
    for prefix, replacement in HF_PREFIXES:
        if name.startswith(prefix):
            name = replacement + name[len(prefix) :]
    return name


def hparams_from_config(spec: ArchSpec, config: Any) -> list[tuple[str, GGUFValueType, Any]]:
    """The `{arch}.*` key/value pairs llama.cpp reads, computed from a Hugging Face config."""
    out = []
    for template, vtype, read in COMMON_HPARAMS + spec.extra_hparams:
        value = read(config)
        if value is not None:
            out.append((template.format(arch=spec.name), vtype, float(value) if vtype == F32 else int(value)))
    return out


def permute_rows(weight: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's `LlamaModel.permute`: interleaved rotary halves -> llama.cpp order, per head."""
    grouped = weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
    return grouped.swapaxes(1, 2).reshape(weight.shape)


QK_PERMUTED = {"attn_q": "head_count", "attn_k": "head_count_kv"}
"""GGUF tensor kind -> which head count its row permutation uses (for ArchSpec.permute_qk)."""


def qk_permutation_heads(gguf_name: str, head_count: int, head_count_kv: int) -> int | None:
    """Head count for the row permutation of `blk.N.attn_q|attn_k.*`, None for any other tensor."""
    kind = gguf_name.split(".")[2] if gguf_name.startswith("blk.") else ""
    which = QK_PERMUTED.get(kind)
    if which is None:
        return None
    return head_count if which == "head_count" else head_count_kv
