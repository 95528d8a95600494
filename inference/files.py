"""Model files: the GGUF magic, the file check, and the few GGUF header fields the project reads.

Written once, here, because the engine, the model resolver and the exporter all need them (file
hashing is `data.dataset.file_sha256`, one layer down). The header reader is pure Python and reads
only the key/value section, so naming a model's chat format costs milliseconds and no llama.cpp
(the `gguf` package is a training extra, not a serving dependency).
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

GGUF_MAGIC = b"GGUF"

GGUF_SCALARS: dict[int, str] = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
"""GGUF value type -> struct format, little endian (8 is a string, 9 an array)."""

GGUF_STRING, GGUF_ARRAY = 8, 9


@dataclass
class GgufValue:
    type: int
    value: Any
    sub_type: int | None = None
    """The item type of an array."""


@dataclass
class GgufHeader:
    """A GGUF's key/value pairs and tensor table: (name, shape in numpy order, ggml type, absolute offset)."""

    version: int
    kv: dict[str, GgufValue]
    tensors: list[tuple[str, tuple[int, ...], int, int]] = field(default_factory=list)


class ModelFileError(ValueError):
    """A model file is missing or is not a GGUF file."""


def check_gguf(path: str | Path, what: str = "model") -> Path:
    """Fail early, naming the path, instead of letting llama.cpp abort on a bad file."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{what} file not found: {path}")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise ModelFileError(f"{what} file {path} is not a GGUF file (it starts with {magic!r}, expected b'GGUF')")
    return path


class _Cursor:
    def __init__(self, buffer: Any, pos: int = 0):
        self.buffer, self.pos = buffer, pos

    def unpack(self, fmt: str) -> Any:
        try:
            value = struct.unpack_from(fmt, self.buffer, self.pos)[0]
        except struct.error:
            raise ModelFileError("truncated GGUF header") from None
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        length = self.unpack("<Q")
        text = bytes(self.buffer[self.pos : self.pos + length]).decode("utf-8", errors="replace")
        self.pos += length
        return text

    def value(self, kind: int, keep: bool = True) -> tuple[Any, int | None]:
        """(value, array item type); with keep=False the value is skipped (None)."""
        if kind == GGUF_STRING:
            if keep:
                return self.string(), None
            length = self.unpack("<Q")  # not `self.pos += self.unpack(...)`: that adds to the old pos
            self.pos += length
            return None, None
        if kind == GGUF_ARRAY:
            item, count = self.unpack("<I"), self.unpack("<Q")
            if item in GGUF_SCALARS and item != 7:
                dtype = np.dtype(GGUF_SCALARS[item])
                values = np.frombuffer(self.buffer, dtype, count, self.pos).tolist() if keep else None
                self.pos += dtype.itemsize * count
                return values, item
            values = [self.value(item, keep)[0] for _ in range(count)]
            return (values if keep else None), item
        if kind not in GGUF_SCALARS:
            raise ModelFileError(f"unknown GGUF value type {kind}")
        return self.unpack(GGUF_SCALARS[kind]), None


def read_gguf_header(path: str | Path, keys: Collection[str] | None = None) -> GgufHeader:
    """Parse a GGUF's header (memory-mapped; tensor data is not read).

    With `keys`, only those values are kept (the rest are skipped, the tensor table too), and reading
    stops once all are found: how the resolver names a model's chat format in milliseconds.
    """
    path = check_gguf(path)
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
        cursor = _Cursor(buffer, 4)
        version = cursor.unpack("<I")
        if version not in (2, 3):
            raise ModelFileError(f"{path}: GGUF version {version} is not supported")
        n_tensors, n_kv = cursor.unpack("<Q"), cursor.unpack("<Q")
        header = GgufHeader(version, {})
        for _ in range(n_kv):
            key, kind = cursor.string(), cursor.unpack("<I")
            keep = keys is None or key in keys
            value, sub_type = cursor.value(kind, keep)
            if keep:
                header.kv[key] = GgufValue(kind, value, sub_type)
            if keys is not None and len(header.kv) == len(keys):
                return header
        if keys is not None:
            return header
        raw = []
        for _ in range(n_tensors):
            name = cursor.string()
            dims = [cursor.unpack("<Q") for _ in range(cursor.unpack("<I"))]
            raw.append((name, tuple(reversed(dims)), cursor.unpack("<I"), cursor.unpack("<Q")))
        alignment = int(header.kv["general.alignment"].value) if "general.alignment" in header.kv else 32
        start = -(-cursor.pos // alignment) * alignment
    header.tensors = [(name, shape, kind, start + offset) for name, shape, kind, offset in raw]
    return header


def gguf_metadata(path: str | Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """The values of `keys` in a GGUF header (absent keys are left out)."""
    return {key: item.value for key, item in read_gguf_header(path, keys).kv.items()}
