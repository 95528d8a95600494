"""Quantizing a GGUF with llama.cpp's own quantizer, through llama-cpp-python (no `llama-quantize` binary needed)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

QUANT_TYPES: dict[str, str] = {
    # CLI name -> llama_cpp constant (llama_ftype)
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "f16": "LLAMA_FTYPE_MOSTLY_F16",
}


class QuantizeError(RuntimeError):
    pass


def quantize_gguf(src: str | Path, dst: str | Path, quant: str, threads: int = 0) -> Path:
    """llama.cpp's `llama_model_quantize` (K-quants included, which the `gguf` package cannot write)."""
    import ctypes

    import llama_cpp

    if quant not in QUANT_TYPES:
        raise ValueError(f"unknown quantization {quant!r}; known: {', '.join(QUANT_TYPES)}")
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"GGUF to quantize not found: {src}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_TYPES[quant])
    params.nthread = threads
    started = time.monotonic()
    print(f"export: quantizing {src.name} -> {dst.name} ({quant})", file=sys.stderr, flush=True)
    status = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if status != 0 or not dst.is_file():
        raise QuantizeError(f"llama_model_quantize({src} -> {dst}, {quant}) failed with status {status}")
    print(
        f"export: quantized in {time.monotonic() - started:.1f} s ({dst.stat().st_size / 1e6:.1f} MB)",
        file=sys.stderr,
        flush=True,
    )
    return dst
