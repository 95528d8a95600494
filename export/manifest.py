"""The manifest beside every exported GGUF: the project's one `inference.manifest.Manifest`, kind "gguf".

`adapter.gguf` gets `adapter.manifest.json` (one GGUF per manifest, so a base, an adapter and a merged model
can share a directory). What goes where:
- `base_model`: the base GGUF (path, sha256) and the dense checkpoint transformers used;
- `dataset`: the parity data (path, sha256);
- `config`: how the export ran (mode, output type, quantization, chat format, parity settings);
- `metrics`: file size, export seconds, and the parity report (`metrics["parity"]`), or, when the check
  was skipped on purpose (`export --no-parity`), `{"checked": false, "reason": ...}` saying so;
- `extra`: the file and its sha256, the adapter (path, sha256 of its weights) and the adapter's own
  training manifest, so one JSON answers "what is this file and where did it come from".
Evaluation adds its summary under `metrics["evaluation"]` when it runs on the file. `parity_status` is
what `eval gate` asks before a file may be published: did this export pass a parity check at all?
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.dataset import file_sha256
from inference.manifest import MANIFEST_NAME, Manifest

KIND = "gguf"


def manifest_path_for(gguf_path: str | Path) -> Path:
    """`dir/model.gguf` -> `dir/model.manifest.json`."""
    gguf_path = Path(gguf_path)
    return gguf_path.with_name(gguf_path.stem + ".manifest.json")


def adapter_record(adapter_dir: str | Path | None) -> dict[str, Any]:
    """Path and weights hash of a PEFT adapter, plus its training manifest when it has one."""
    if adapter_dir is None:
        return {}
    adapter_dir = Path(adapter_dir)
    record: dict[str, Any] = {"path": str(adapter_dir.resolve())}
    weights = adapter_dir / "adapter_model.safetensors"
    if weights.is_file():
        record["weights_sha256"] = file_sha256(weights)
    if (adapter_dir / MANIFEST_NAME).is_file():
        record["training_manifest"] = Manifest.read(adapter_dir).to_dict()
    return record


def gguf_manifest(
    gguf_path: str | Path,
    *,
    mode: str,
    base_gguf: str | Path | None,
    hf_base: str | None = None,
    adapter_dir: str | Path | None = None,
    quantization: str | None = None,
    config: dict[str, Any] | None = None,
    parity: dict[str, Any] | None = None,
    parity_data: str | Path | None = None,
    export_seconds: float | None = None,
    parity_skipped: str | None = None,
) -> Manifest:
    """Describe one exported GGUF (`mode`: "lora", "merged" or "base").

    `parity` is the report of a check that ran; `parity_skipped` says why none ran (recorded as
    `{"checked": false, "reason": ...}`, so the manifest never looks like a check that passed)."""
    gguf_path = Path(gguf_path)
    base: dict[str, Any] = {}
    if base_gguf is not None:
        base = {"gguf": str(Path(base_gguf).resolve()), "gguf_sha256": file_sha256(Path(base_gguf))}
    if hf_base is not None:
        base["hf_checkpoint"] = str(hf_base)
    metrics: dict[str, Any] = {"size_bytes": gguf_path.stat().st_size}
    if export_seconds is not None:
        metrics["export_seconds"] = round(export_seconds, 2)
    if parity is not None:
        metrics["parity"] = parity
    elif parity_skipped is not None:
        metrics["parity"] = {"checked": False, "reason": parity_skipped}
    dataset: dict[str, Any] = {}
    if parity_data is not None:
        dataset = {"parity_path": str(Path(parity_data).resolve()), "parity_sha256": file_sha256(Path(parity_data))}
    return Manifest(
        kind=KIND,
        config={"mode": mode, "quantization": quantization, **(config or {})},
        dataset=dataset,
        base_model=base,
        metrics=metrics,
        extra={
            "file": str(gguf_path.resolve()),
            "sha256": file_sha256(gguf_path),
            "adapter": adapter_record(adapter_dir),
        },
    )


def write_manifest(manifest: Manifest, gguf_path: str | Path) -> Path:
    path = manifest_path_for(gguf_path)
    return manifest.write(path.parent, path.name)


VERIFIED, UNVERIFIED, FAILED = "verified", "unverified", "failed"


@dataclass(frozen=True)
class ParityStatus:
    """What a GGUF manifest says about parity: `verified` (a check ran and every variant passed),
    `unverified` (no check, or a record that compares nothing) or `failed` (a check ran and failed)."""

    state: str
    detail: str

    @property
    def verified(self) -> bool:
        return self.state == VERIFIED


def parity_status(manifest: Manifest | dict[str, Any]) -> ParityStatus:
    """Did the export this manifest describes pass its parity check? Nothing short of a passed check counts."""
    raw = manifest.to_dict() if isinstance(manifest, Manifest) else manifest
    if raw.get("kind") != KIND:
        return ParityStatus(UNVERIFIED, f"not a GGUF export manifest (kind {raw.get('kind')!r})")
    parity = (raw.get("metrics") or {}).get("parity")
    if not isinstance(parity, dict):
        return ParityStatus(UNVERIFIED, "the manifest holds no parity record: parity was never checked")
    if parity.get("checked") is False:
        return ParityStatus(UNVERIFIED, f"parity was not checked ({parity.get('reason') or 'no reason recorded'})")
    variants = [v for v in parity.get("variants") or [] if isinstance(v, dict)]
    if not variants or not parity.get("prompts"):
        return ParityStatus(UNVERIFIED, "the parity record compares nothing (no prompts or no variants)")
    failed = [str(v.get("name")) for v in variants if v.get("passed") is not True]
    if failed or parity.get("passed") is not True:
        return ParityStatus(FAILED, f"parity FAILED ({', '.join(failed) or 'report not passed'}): do not serve it")
    names = ", ".join(str(v.get("name")) for v in variants)
    return ParityStatus(VERIFIED, f"parity passed ({names}; {parity['prompts']} prompts)")
