"""PEFT LoRA adapter -> llama.cpp GGUF LoRA adapter (loaded with `Llama(model_path=base, lora_path=adapter)`).

llama.cpp applies an adapter as `W x + scale * B (A x)` with `scale = lora_scale * alpha / rank`, where `alpha`
is one number for the whole file (`adapter.lora.alpha`) and `rank` is each A's row count. PEFT's scale is
`lora_alpha / r` (or `lora_alpha / sqrt(r)` with rank-stabilized LoRA, and per-module values with
`rank_pattern`/`alpha_pattern`). We write the `alpha = scale * r` that most modules share, which keeps their
A and B exactly as trained; a module whose scale differs gets the ratio folded into its B, so every
module's effective scale equals PEFT's.

Tensor names: `get_tensor_name_map(arch, n_layers).get_name(<hf module>) + ".weight.lora_a" / ".weight.lora_b"`,
A as (r, in) and B as (out, r), i.e. as PEFT stores them. Every module is checked against the base GGUF's
tensor of the same name (exists, shapes fit) before anything is written, and anything llama.cpp's adapter
format cannot express (DoRA, trained embeddings, modules_to_save, biases) is an error that names `--merge`.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFType, GGUFWriter, Keys, get_tensor_name_map

from export.architectures import ArchSpec, arch_for_gguf, normalize_hf_name, permute_rows, qk_permutation_heads
from export.gguf_file import GgufModel, read_gguf

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<which>A|B)\.weight$")

UNSUPPORTED_CONFIG = {
    # adapter_config.json key -> why llama.cpp's adapter format cannot carry it
    "use_dora": "DoRA magnitude vectors",
    "fan_in_fan_out": "fan_in_fan_out (Conv1D-style) weights",
    "modules_to_save": "fully trained modules (modules_to_save)",
    "trainable_token_indices": "trained token embeddings",
}
LORA_DTYPES = {"f32": GGMLQuantizationType.F32, "f16": GGMLQuantizationType.F16}


class AdapterExportError(ValueError):
    """The adapter cannot be written as a llama.cpp LoRA for this base (the message says why)."""


@dataclass
class PeftAdapter:
    """A PEFT LoRA adapter directory, read into memory."""

    path: Path
    config: dict
    lora_a: dict[str, np.ndarray]
    """HF module name (normalized) -> A, shape (r, in)."""
    lora_b: dict[str, np.ndarray]
    """HF module name (normalized) -> B, shape (out, r)."""

    def scale(self, module: str) -> float:
        """PEFT's scaling for one module (lora_alpha / r, or / sqrt(r) with rsLoRA; patterns honoured)."""
        from peft.utils.other import get_pattern_key

        rank = self.lora_a[module].shape[0]
        alpha = float(self.config.get("lora_alpha", rank))
        alpha_pattern = self.config.get("alpha_pattern") or {}
        if alpha_pattern:
            key = get_pattern_key(list(alpha_pattern), module)
            alpha = float(alpha_pattern.get(key, alpha))
        return alpha / (math.sqrt(rank) if self.config.get("use_rslora") else rank)


@dataclass
class GgufLora:
    """A llama.cpp LoRA adapter ready to write: metadata plus named A/B tensors."""

    architecture: str
    alpha: float
    tensors: dict[str, np.ndarray]
    """`blk.N.attn_q.weight.lora_a` -> array; A and B alternate per module."""
    metadata: dict[str, str] = field(default_factory=dict)
    """Extra string keys (provenance), written as-is."""
    folded_scales: int = 0
    """Modules whose scale differed from the file's alpha/rank and was folded into B."""


def read_peft_adapter(adapter_dir: str | Path) -> PeftAdapter:
    """Load adapter_config.json and adapter_model.safetensors, refusing what llama.cpp cannot apply."""
    from safetensors.numpy import load_file

    adapter_dir = Path(adapter_dir)
    config_path, weights_path = adapter_dir / ADAPTER_CONFIG, adapter_dir / ADAPTER_WEIGHTS
    if not config_path.is_file():
        raise FileNotFoundError(f"{adapter_dir} is not a PEFT adapter directory (no {ADAPTER_CONFIG})")
    if not weights_path.is_file():
        raise FileNotFoundError(f"{adapter_dir} has no {ADAPTER_WEIGHTS} (only safetensors adapters are supported)")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("peft_type", "LORA") != "LORA":
        raise AdapterExportError(f"{adapter_dir}: peft_type {config.get('peft_type')!r} is not a LoRA")
    for key, what in UNSUPPORTED_CONFIG.items():
        if config.get(key):
            raise AdapterExportError(f"{adapter_dir}: {what} cannot be expressed as a llama.cpp LoRA; use --merge")
    if config.get("bias", "none") != "none":
        raise AdapterExportError(f"{adapter_dir}: trained biases (bias={config['bias']!r}) need --merge")

    lora_a: dict[str, np.ndarray] = {}
    lora_b: dict[str, np.ndarray] = {}
    others = []
    for key, value in load_file(str(weights_path)).items():
        match = _LORA_KEY.match(key)
        if not match:
            others.append(key)
            continue
        module = normalize_hf_name(match["module"])
        (lora_a if match["which"] == "A" else lora_b)[module] = value.astype(np.float32)
    if others:
        shown = ", ".join(others[:5]) + (" ..." if len(others) > 5 else "")
        raise AdapterExportError(f"{adapter_dir}: tensors a llama.cpp LoRA cannot hold ({shown}); use --merge")
    if not lora_a:
        raise AdapterExportError(f"{adapter_dir}: no LoRA tensors found")
    unpaired = sorted(set(lora_a) ^ set(lora_b))
    if unpaired:
        raise AdapterExportError(f"{adapter_dir}: modules without both A and B: {', '.join(unpaired)}")
    return PeftAdapter(adapter_dir, config, lora_a, lora_b)


def convert_adapter(adapter: PeftAdapter, base: GgufModel) -> GgufLora:
    """Map every module onto the base GGUF's tensors, check shapes, and fold scales llama.cpp cannot express."""
    spec: ArchSpec = arch_for_gguf(base.architecture)
    name_map = get_tensor_name_map(spec.gguf_arch, base.block_count)
    modules = sorted(adapter.lora_a, key=_module_order)
    # The file's alpha is the one most modules need (scale * rank); the others get their ratio folded into B.
    alphas = Counter(round(adapter.scale(m) * adapter.lora_a[m].shape[0], 6) for m in modules)
    alpha = alphas.most_common(1)[0][0]

    tensors: dict[str, np.ndarray] = {}
    unknown, problems = [], []
    folded = 0
    for module in modules:
        a, b = adapter.lora_a[module], adapter.lora_b[module]
        target = name_map.get_name(module)
        if target is None:
            unknown.append(module)
            continue
        weight = f"{target}.weight"
        shape = base.tensor_shapes.get(weight)
        if shape is None:
            hint = " (a tied output head: a LoRA on it needs --merge)" if target == "output" else ""
            problems.append(f"{module} -> {weight}: the base GGUF has no such tensor{hint}")
            continue
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1] or shape != (b.shape[0], a.shape[1]):
            problems.append(
                f"{module} -> {weight}: A {tuple(a.shape)} and B {tuple(b.shape)} do not fit the base weight "
                f"{shape} (expected A (r, {shape[1]}), B ({shape[0]}, r))"
            )
            continue
        rank = a.shape[0]
        factor = adapter.scale(module) * rank / alpha
        if not math.isclose(factor, 1.0, rel_tol=1e-6):
            b = b * np.float32(factor)
            folded += 1
        if spec.permute_qk:
            heads = qk_permutation_heads(target, base.head_count, base.head_count_kv)
            if heads is not None:
                b = permute_rows(b, heads)
        tensors[f"{weight}.lora_a"] = np.ascontiguousarray(a)
        tensors[f"{weight}.lora_b"] = np.ascontiguousarray(b)
    if unknown:
        raise AdapterExportError(
            f"no llama.cpp tensor for {len(unknown)} adapter module(s) of a {base.architecture} model with "
            f"{base.block_count} layers: {', '.join(unknown[:6])}{' ...' if len(unknown) > 6 else ''}"
        )
    if problems:
        raise AdapterExportError("adapter does not fit the base model:\n  " + "\n  ".join(problems))
    return GgufLora(base.architecture, float(alpha), tensors, folded_scales=folded)


def write_gguf_lora(lora: GgufLora, out_path: str | Path, dtype: str = "f32") -> Path:
    """Write the adapter file llama.cpp's `llama_adapter_lora_init` reads."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    qtype = LORA_DTYPES[dtype]
    writer = GGUFWriter(out_path, lora.architecture)
    writer.add_type(GGUFType.ADAPTER)
    writer.add_string(Keys.Adapter.TYPE, "lora")
    writer.add_float32(Keys.Adapter.LORA_ALPHA, lora.alpha)
    for key, value in lora.metadata.items():
        writer.add_string(key, value)
    for name, tensor in lora.tensors.items():
        writer.add_tensor(name, tensor.astype(np.float16 if qtype == GGMLQuantizationType.F16 else np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_path


def export_lora_gguf(
    adapter_dir: str | Path, base_gguf: str | Path, out_path: str | Path, dtype: str = "f32"
) -> tuple[Path, GgufLora]:
    """PEFT adapter directory + the base GGUF it will run on -> GGUF LoRA file."""
    adapter = read_peft_adapter(adapter_dir)
    base = read_gguf(base_gguf)
    lora = convert_adapter(adapter, base)
    lora.metadata["general.name"] = f"{Path(adapter_dir).name} (LoRA for {base.path.name})"
    path = write_gguf_lora(lora, out_path, dtype)
    print(
        f"export: LoRA GGUF {path} ({len(lora.tensors) // 2} modules, alpha {lora.alpha:g}, "
        f"{path.stat().st_size / 1e6:.1f} MB)",
        file=sys.stderr,
        flush=True,
    )
    return path, lora


def _module_order(module: str) -> tuple[int, str]:
    """Layer number first, so files list layers in order."""
    match = re.search(r"\.layers\.(\d+)\.", module)
    return (int(match[1]) if match else -1, module)
