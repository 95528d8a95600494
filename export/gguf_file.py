"""Reading what the exporter needs from an existing GGUF (the base model) and copying its metadata.

`gguf.GGUFReader` builds a numpy view per string and takes 15-35 s on a 262k-token vocabulary, so the
header (key/value pairs and tensor descriptions) is parsed here directly with `struct` (well under a second);
the file layout is the one `gguf.GGUFWriter` writes (GGUF version 2/3, little endian).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType, GGUFWriter

GGUF_MAGIC = b"GGUF"
SCALARS: dict[GGUFValueType, str] = {
    # value type -> struct format (little endian)
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}
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


class _Cursor:
    def __init__(self, buffer: Any):
        self.buffer, self.pos = buffer, 0

    def unpack(self, fmt: str) -> Any:
        value = struct.unpack_from(fmt, self.buffer, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        length = self.unpack("<Q")
        text = bytes(self.buffer[self.pos : self.pos + length]).decode("utf-8")
        self.pos += length
        return text

    def value(self, vtype: GGUFValueType) -> Any:
        if vtype == GGUFValueType.STRING:
            return self.string()
        return self.unpack(SCALARS[vtype])

    def array(self) -> tuple[GGUFValueType, list[Any]]:
        sub_type = GGUFValueType(self.unpack("<I"))
        count = self.unpack("<Q")
        if sub_type in SCALARS and sub_type != GGUFValueType.BOOL:
            dtype = np.dtype(SCALARS[sub_type])
            values = np.frombuffer(self.buffer, dtype=dtype, count=count, offset=self.pos).tolist()
            self.pos += dtype.itemsize * count
            return sub_type, values
        return sub_type, [self.value(sub_type) for _ in range(count)]


def read_gguf(path: str | Path) -> GgufModel:
    """Parse a GGUF's key/value pairs and tensor table (memory-mapped; tensor data is not read)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF not found: {path}")
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
        if buffer[:4] != GGUF_MAGIC:
            raise ValueError(f"{path} is not a GGUF file")
        cursor = _Cursor(buffer)
        cursor.pos = 4
        version = cursor.unpack("<I")
        if version not in (2, 3):
            raise ValueError(f"{path}: GGUF version {version} is not supported")
        n_tensors, n_kv = cursor.unpack("<Q"), cursor.unpack("<Q")
        kv: dict[str, KeyValue] = {}
        for _ in range(n_kv):
            key = cursor.string()
            vtype = GGUFValueType(cursor.unpack("<I"))
            if vtype == GGUFValueType.ARRAY:
                sub_type, values = cursor.array()
                kv[key] = KeyValue(vtype, values, sub_type)
            else:
                kv[key] = KeyValue(vtype, cursor.value(vtype))
        raw_tensors = []
        for _ in range(n_tensors):
            name = cursor.string()
            dims = [cursor.unpack("<Q") for _ in range(cursor.unpack("<I"))]
            ttype = GGMLQuantizationType(cursor.unpack("<I"))
            raw_tensors.append((name, tuple(reversed(dims)), ttype, cursor.unpack("<Q")))
        alignment = int(kv["general.alignment"].value) if "general.alignment" in kv else 32
        data_start = -(-cursor.pos // alignment) * alignment
    tensors = {name: TensorInfo(shape, ttype, data_start + offset) for name, shape, ttype, offset in raw_tensors}
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
