"""Turn a LoRA adapter downloaded from Tinker into a standard PEFT adapter directory.

What Tinker gives back (SDK 0.38: `save_weights_external` + `RestClient.get_external_weights_urls`; older
SDKs: a `.tar` archive from `get_checkpoint_archive_url_from_tinker_path`) is a directory with
`adapter_config.json` and `adapter_model.safetensors`, in Tinker's own layout, which the
thinking-machines-lab tinker-cookbook (`tinker_cookbook/weights/_adapter.py`, `_merge.py`) documents:

- tensor names `base_model.model.<HF module path>.lora_A.weight` / `.lora_B.weight`, e.g.
  `base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight`; the output head (Tinker's
  `train_unembed`) is called `model.unembed_tokens` where Hugging Face says `lm_head`;
- A is `(rank, in_features)`, B is `(out_features, rank)`, unscaled: the update is `lora_alpha / r * B @ A`,
  exactly PEFT's convention;
- the config holds little more than `r` and `lora_alpha` (no `target_modules`, no `peft_type`), so PEFT
  cannot load it as is.

So the conversion renames tensors through `NAME_REMAPS` (a data table), checks every pair's shapes, and
writes a complete PEFT config whose `target_modules` are the modules the tensors name. Dense models only:
mixture-of-experts adapters (3-D `experts.w1/w2/w3` tensors) are refused with a clear error.
"""

from __future__ import annotations

import json
import re
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"

NAME_REMAPS: list[tuple[str, str]] = [
    ("base_model.model.model.unembed_tokens.", "base_model.model.lm_head."),
]
"""(Tinker substring, PEFT substring), applied in order to every tensor name."""

_PEFT_NAME = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<part>[AB])\.weight$")


class TinkerAdapterError(ValueError):
    """The downloaded files are not a Tinker LoRA adapter this converter understands."""


@dataclass
class ConvertedAdapter:
    """What `tinker_to_peft` wrote (the manifest records it)."""

    path: Path
    rank: int
    alpha: float
    target_modules: list[str]
    tensors: int


def peft_name(tinker_name: str) -> str:
    """A Tinker tensor name in PEFT's spelling."""
    for old, new in NAME_REMAPS:
        tinker_name = tinker_name.replace(old, new)
    return tinker_name


def _safe_extract(archive: Path, dest: Path) -> None:
    """Extract a tar archive, refusing links and paths that leave `dest` (it comes from the network)."""
    base = dest.resolve()
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for member in members:
            target = (dest / member.name).resolve()
            if member.issym() or member.islnk() or not target.is_relative_to(base):
                raise TinkerAdapterError(f"unsafe entry {member.name!r} in {archive}")
        tar.extractall(dest, members=members)


def _find_adapter_dir(root: Path) -> Path:
    """The directory under `root` (itself or one level down) that holds the adapter files."""
    for candidate in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        if (candidate / ADAPTER_WEIGHTS).is_file() and (candidate / ADAPTER_CONFIG).is_file():
            return candidate
    found = sorted(p.name for p in root.iterdir())
    raise TinkerAdapterError(
        f"no {ADAPTER_CONFIG} + {ADAPTER_WEIGHTS} in {root} (found: {', '.join(found) or 'nothing'})"
    )


def _read_tinker_config(path: Path) -> dict:
    config = json.loads(path.read_text(encoding="utf-8"))
    missing = [key for key in ("r", "lora_alpha") if key not in config]
    if missing:
        raise TinkerAdapterError(f"{path} lacks {', '.join(missing)}")
    return config


def convert_tensors(tensors: dict, rank: int) -> tuple[dict, list[str]]:
    """Rename Tinker tensors to PEFT names and check them; returns (tensors, sorted target module names)."""
    out: dict = {}
    modules: dict[str, set[str]] = {}
    for name, tensor in tensors.items():
        if ".experts." in name or tensor.dim() != 2:
            raise TinkerAdapterError(
                f"{name}: {tensor.dim()}-D tensor; only dense-model adapters are supported (no mixture-of-experts)"
            )
        new_name = peft_name(name)
        match = _PEFT_NAME.match(new_name)
        if not match:
            raise TinkerAdapterError(f"unexpected tensor name {name!r} (expected base_model.model.*.lora_A/B.weight)")
        modules.setdefault(match["module"], set()).add(match["part"])
        out[new_name] = tensor.float().contiguous()
    if not out:
        raise TinkerAdapterError("the adapter holds no LoRA tensors")
    for module, parts in sorted(modules.items()):
        if parts != {"A", "B"}:
            raise TinkerAdapterError(f"{module}: lora_A and lora_B must both be present (found {sorted(parts)})")
        a = out[f"base_model.model.{module}.lora_A.weight"]
        b = out[f"base_model.model.{module}.lora_B.weight"]
        if a.shape[0] != rank or b.shape[1] != rank:
            raise TinkerAdapterError(f"{module}: A {tuple(a.shape)} and B {tuple(b.shape)} do not have rank {rank}")
    targets = sorted({module.rsplit(".", 1)[-1] for module in modules})
    return out, targets


def tinker_to_peft(archive_or_dir: str | Path, out_dir: str | Path, base_model: str | None = None) -> Path:
    """Convert a Tinker adapter (a directory, or a .tar/.tar.gz archive of one) into a PEFT adapter in `out_dir`.

    `base_model` goes into the PEFT config's `base_model_name_or_path` (default: what Tinker's config says).
    Returns `out_dir`, which `peft.PeftModel.from_pretrained(model, out_dir)` loads.
    """
    return convert(archive_or_dir, out_dir, base_model).path


def convert(archive_or_dir: str | Path, out_dir: str | Path, base_model: str | None = None) -> ConvertedAdapter:
    """`tinker_to_peft` with details of what was written."""
    from peft import LoraConfig
    from safetensors.torch import load_file, save_file

    source = Path(archive_or_dir)
    out_dir = Path(out_dir)
    if not source.exists():
        raise FileNotFoundError(f"Tinker adapter not found: {source}")
    with tempfile.TemporaryDirectory(prefix="tinker-adapter-") as tmp:
        if source.is_file():
            if not tarfile.is_tarfile(source):
                raise TinkerAdapterError(f"{source} is neither a directory nor a tar archive")
            _safe_extract(source, Path(tmp))
            source_dir = _find_adapter_dir(Path(tmp))
        else:
            source_dir = _find_adapter_dir(source)
        tinker_config = _read_tinker_config(source_dir / ADAPTER_CONFIG)
        rank = int(tinker_config["r"])
        alpha = tinker_config["lora_alpha"]
        tensors, targets = convert_tensors(load_file(str(source_dir / ADAPTER_WEIGHTS)), rank)

        config = LoraConfig(
            r=rank,
            lora_alpha=alpha,
            lora_dropout=0.0,
            target_modules=targets,
            bias="none",
            task_type="CAUSAL_LM",
            base_model_name_or_path=base_model
            or tinker_config.get("base_model_name_or_path")
            or tinker_config.get("base_model"),
        )
        if out_dir.exists() and out_dir.resolve() == source_dir.resolve():
            raise ValueError("out_dir must differ from the Tinker adapter directory")
        out_dir.mkdir(parents=True, exist_ok=True)
        config.save_pretrained(str(out_dir))
        save_file(tensors, str(out_dir / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    return ConvertedAdapter(out_dir, rank, alpha, targets, len(tensors))


def main(argv: list[str] | None = None) -> int:
    """`python -m trainers.tinker_convert SOURCE OUT_DIR [--base-model ID]`: convert a downloaded adapter."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m trainers.tinker_convert", description=main.__doc__)
    parser.add_argument(
        "source", help="Tinker adapter directory or .tar archive (e.g. from `tinker checkpoint download`)"
    )
    parser.add_argument("out_dir", help="where the PEFT adapter is written")
    parser.add_argument("--base-model", help="recorded as base_model_name_or_path in the PEFT config")
    args = parser.parse_args(argv)
    try:
        result = convert(args.source, args.out_dir, args.base_model)
    except (TinkerAdapterError, FileNotFoundError, ValueError) as exc:
        print(f"tinker_convert: {exc}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "adapter": str(result.path),
                "r": result.rank,
                "lora_alpha": result.alpha,
                "target_modules": result.target_modules,
                "tensors": result.tensors,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
