"""Reading what the exporter needs from an existing GGUF (the base model) and copying its metadata.

`gguf.GGUFReader` builds a numpy view per string and takes 15-35 s on a 262k-token vocabulary, so the
header (key/value pairs and tensor descriptions) is parsed here directly with `struct` (well under a second);
the file layout is the one `gguf.GGUFWriter` writes (GGUF version 2/3, little endian).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType, GGUFWriter

from inference.files import ModelFileError, read_gguf_header

NOT_COPIED = (
    # keys GGUFWriter writes itself, that describe one particular file, or that the exporter sets
    "general.architecture",
    "general.type",
    "general.name",
    "general.file_type",
    "general.quantization_version",
    "general.alignment",
    "tokenizer.chat_template",
)


@dataclass
class KeyValue:
    type: GGUFValueType
    value: Any
    sub_type: GGUFValueType | None = None


@dataclass
class TensorInfo:
    shape: tuple[int, ...]
    """numpy/PyTorch order: (out_features, in_features) for a weight matrix."""
    type: GGMLQuantizationType
    offset: int
    """Byte offset from the start of the file."""

    @property
    def nbytes(self) -> int:
        block, size = GGML_QUANT_SIZES[self.type]
        return int(np.prod(self.shape)) // block * size


@dataclass
class GgufModel:
    """A GGUF's metadata and tensor table, read once (tensor data stays on disk)."""

    path: Path
    kv: dict[str, KeyValue]
    tensors: dict[str, TensorInfo] = field(repr=False)

    def value(self, key: str, default: Any = None) -> Any:
        item = self.kv.get(key)
        return default if item is None else item.value

    @property
    def architecture(self) -> str:
        arch = self.value("general.architecture")
        if not arch:
            raise ValueError(f"{self.path} has no general.architecture: not a llama.cpp model GGUF")
        return arch

    def arch_value(self, suffix: str, default: Any = None) -> Any:
        return self.value(f"{self.architecture}.{suffix}", default)

    @property
    def block_count(self) -> int:
        return int(self.arch_value("block_count", 0))

    @property
    def head_count(self) -> int:
        return int(self.arch_value("attention.head_count", 0))

    @property
    def head_count_kv(self) -> int:
        return int(self.arch_value("attention.head_count_kv", self.head_count))

    @property
    def vocab_size(self) -> int:
        return len(self.value("tokenizer.ggml.tokens", []))

    @property
    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: info.shape for name, info in self.tensors.items()}

    def tensor_f32(self, name: str) -> np.ndarray:
        """One tensor's data as float32 (F32/F16/BF16 or any type the gguf package dequantizes)."""
        from gguf.quants import dequantize

        info = self.tensors[name]
        with open(self.path, "rb") as handle:
            handle.seek(info.offset)
            raw = np.frombuffer(handle.read(info.nbytes), dtype=np.uint8)
        return dequantize(raw, info.type).reshape(info.shape).astype(np.float32)


def read_gguf(path: str | Path) -> GgufModel:
    """Parse a GGUF's key/value pairs and tensor table (memory-mapped; tensor data is not read).

    The parsing is `inference.files.read_gguf_header` (one reader in the project); this adds the
    gguf package's enums the writer needs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF not found: {path}")
    try:
        header = read_gguf_header(path)
    except ModelFileError as exc:
        raise ValueError(str(exc)) from None
    kv = {
        key: KeyValue(GGUFValueType(v.type), v.value, None if v.sub_type is None else GGUFValueType(v.sub_type))
        for key, v in header.kv.items()
    }
    tensors = {
        name: TensorInfo(shape, GGMLQuantizationType(kind), offset) for name, shape, kind, offset in header.tensors
    }
    return GgufModel(path, kv, tensors)


def copy_fields(source: GgufModel, writer: GGUFWriter, prefixes: tuple[str, ...]) -> list[str]:
    """Copy the key/value pairs whose key starts with one of `prefixes`; returns the keys copied."""
    copied = []
    for key, item in source.kv.items():
        if key in NOT_COPIED or not key.startswith(prefixes):
            continue
        writer.add_key_value(key, item.value, item.type, sub_type=item.sub_type)
        copied.append(key)
    return copied
