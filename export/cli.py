"""`news-enhancer export`: a trained adapter -> GGUF (LoRA adapter or merged model), quantized, parity-checked.

    news-enhancer export --adapter runs/x/adapter --out out/news-lora.gguf --parity-data dev.jsonl
    news-enhancer export --adapter runs/x/adapter --out out/news-q4_k_m.gguf --merge --quant q4_k_m
    news-enhancer export --tinker-archive ckpt.tar --base llama-3.2-1b.gguf --out out/lora.gguf --parity-data dev.jsonl

Everything runs offline: the base GGUF is the embedded Gemma 3 270M unless --base names another, and the
dense checkpoint transformers needs (for merging and parity) is the trainer's cached dequantization of it.
Parity is never skipped silently: without --parity-data and without dev data in the adapter manifest the
export is refused; `--no-parity` skips it on purpose, and the manifest then says it was not checked (so
`eval gate` refuses the file unless told --allow-unverified).
Exit status: 0 done, 1 parity failed (the file is renamed to *.parity-failed), 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from export.merged_gguf import OUT_TYPES
from export.quantize import QUANT_TYPES

FAILED_SUFFIX = ".parity-failed"
UNQUANTIZED_FILE_TYPES = (None, 0, 1, 32)
"""general.file_type of f32, f16 and bf16 GGUFs (None: not recorded)."""


def log(message: str) -> None:
    print(f"export: {message}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="news-enhancer export",
        description="Export a LoRA adapter to GGUF for llama.cpp (as an adapter or merged), quantize, check parity.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--adapter", help="PEFT adapter directory (adapter_config.json + adapter_model.safetensors)")
    src.add_argument("--tinker-archive", help="Tinker adapter archive (.tar) or directory; converted to PEFT first")
    p.add_argument("--out", required=True, help="output .gguf file")
    p.add_argument(
        "--base",
        help="base model GGUF the adapter was trained on (default: the adapter manifest's, else the embedded Gemma)",
    )
    p.add_argument("--hf-base", help="dense HF checkpoint of the base (default: the trainer's cached dequantization)")
    p.add_argument("--merge", action="store_true", help="write a complete merged model instead of a LoRA adapter")
    p.add_argument("--outtype", choices=sorted(OUT_TYPES), default="f16", help="merged weights type (default f16)")
    p.add_argument("--quant", choices=sorted(QUANT_TYPES), help="quantize the merged model with llama.cpp")
    p.add_argument("--keep-unquantized", action="store_true", help="keep the f16/bf16/f32 file --quant started from")
    p.add_argument("--lora-dtype", choices=("f32", "f16"), default="f32", help="LoRA tensor type (default f32)")
    p.add_argument("--chat-format", help="chat format (default: the adapter manifest's, else the architecture's)")
    p.add_argument(
        "--parity-data",
        help="training-format JSONL for the parity check (default: the adapter manifest's dev data, if present)",
    )
    p.add_argument("--parity-k", type=int, default=8, help="prompts in the parity check (default 8)")
    p.add_argument("--parity-max-tokens", type=int, default=96, help="greedy tokens per prompt (default 96)")
    p.add_argument(
        "--no-parity",
        action="store_true",
        help="skip the parity check (recorded in the manifest; `eval gate` then refuses the file without "
        "--allow-unverified)",
    )
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch and llama.cpp (default 1)")
    return p


def adapter_manifest(adapter_dir: Path) -> dict[str, Any]:
    from inference.manifest import MANIFEST_NAME, Manifest

    return Manifest.read(adapter_dir).to_dict() if (adapter_dir / MANIFEST_NAME).is_file() else {}


def resolve_base(args: argparse.Namespace, trained: dict[str, Any]) -> tuple[Path, str]:
    """(base GGUF, base spec for trainers.base_model.resolve_base_model)."""
    from inference.models import EMBEDDED, embedded_base_model

    if args.base:
        spec = args.base
    else:
        source = (trained.get("base_model") or {}).get("source_file")
        spec = source if source and Path(source).is_file() else EMBEDDED
    gguf = embedded_base_model() if spec == EMBEDDED else Path(spec)
    if gguf.suffix != ".gguf" or not gguf.is_file():
        raise FileNotFoundError(f"--base must be an existing .gguf file (got {spec})")
    return gguf, spec


def default_parity_data(trained: dict[str, Any]) -> str | None:
    dataset = trained.get("dataset") or {}
    for key in ("dev_path", "train_path"):
        path = dataset.get(key)
        if path and Path(path).is_file():
            return path
    return None


def run(args: argparse.Namespace) -> int:
    import torch

    from export.architectures import arch_for_gguf
    from export.gguf_file import read_gguf
    from export.lora_gguf import export_lora_gguf
    from export.manifest import gguf_manifest, write_manifest
    from export.merged_gguf import merge_adapter, write_model_gguf
    from export.parity import ParityError, Variant, check_parity, load_prompts
    from export.quantize import quantize_gguf
    from trainers.base_model import resolve_base_model

    started = time.monotonic()
    torch.set_num_threads(max(1, args.threads))
    out = Path(args.out).resolve()
    if out.suffix != ".gguf":
        raise ValueError(f"--out must end in .gguf (got {out})")
    if args.quant and not args.merge:
        raise ValueError("--quant applies to merged models: add --merge (LoRA adapters stay f32/f16)")

    workdir = tempfile.TemporaryDirectory(prefix="news-enhancer-export-")
    if args.tinker_archive:
        from trainers.tinker_convert import tinker_to_peft

        adapter = tinker_to_peft(args.tinker_archive, Path(workdir.name) / "peft")
        log(f"converted Tinker adapter {args.tinker_archive} -> PEFT")
    else:
        adapter = Path(args.adapter)
    trained = adapter_manifest(adapter)
    parity_data = None if args.no_parity else (args.parity_data or default_parity_data(trained))
    if not args.no_parity and parity_data is None:
        raise ValueError(
            "no parity data: give --parity-data FILE (training-format JSONL, e.g. the dev split) or add dev data "
            "to the adapter manifest; --no-parity exports without the check (recorded as unverified)"
        )
    if parity_data is not None and not Path(parity_data).is_file():
        raise FileNotFoundError(f"parity data {parity_data} not found")
    base_gguf, base_spec = resolve_base(args, trained)
    base_info = read_gguf(base_gguf)
    arch = arch_for_gguf(base_info.architecture)
    chat_format = args.chat_format or (trained.get("config") or {}).get("chat_format") or arch.chat_format or "gemma"
    hf_base = args.hf_base
    log(f"adapter {adapter}; base {base_gguf}; chat format {chat_format}")

    def hf_base_dir() -> str:
        nonlocal hf_base
        if hf_base is None:
            hf_base = resolve_base_model(base_spec).path
        return hf_base

    if args.merge:
        log("merging the adapter into the dense base")
        merged = merge_adapter(hf_base_dir(), adapter)
        full = out if not args.quant else out.with_name(f"{out.stem}.{args.outtype}.gguf")
        write_model_gguf(merged, full, args.outtype, base_gguf=base_gguf, chat_format=chat_format, name=out.stem)
        del merged
        requantized = base_info.value("general.file_type") not in UNQUANTIZED_FILE_TYPES
        if args.quant not in (None, "q8_0", "f16") and requantized:
            log(
                f"warning: the base GGUF is already quantized; re-quantizing the merged model to {args.quant} can "
                "round most of the adapter's change away (the parity check will tell; q8_0 or the LoRA form keep it)"
            )
        if args.quant:
            quantize_gguf(full, out, args.quant, threads=args.threads)
            if not args.keep_unquantized:
                full.unlink()
        variants = [Variant("merged", str(out))]
        mode = "merged"
    else:
        export_lora_gguf(adapter, base_gguf, out, dtype=args.lora_dtype)
        variants = [Variant("lora", str(base_gguf), str(out))]
        mode = "lora"
    export_seconds = time.monotonic() - started

    report = None
    if parity_data:
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        log(f"parity check: {args.parity_k} prompts from {parity_data}")
        hf = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(hf_base_dir(), dtype=torch.float32), str(adapter)
        )
        report = check_parity(
            hf,
            load_prompts(parity_data, args.parity_k),
            variants,
            chat_format=chat_format,
            max_new_tokens=args.parity_max_tokens,
            threads=args.threads,
        )
        print(report.summary(), file=sys.stderr, flush=True)
    else:
        log(
            "parity NOT checked (--no-parity): the manifest records it as unverified, and `eval gate` refuses "
            "this file unless --allow-unverified"
        )

    manifest = gguf_manifest(
        out,
        mode=mode,
        base_gguf=base_gguf,
        hf_base=hf_base,
        adapter_dir=None if args.tinker_archive else adapter,
        quantization=args.quant or (args.outtype if args.merge else args.lora_dtype),
        config={
            "chat_format": chat_format,
            "tinker_archive": args.tinker_archive,
            "parity_k": args.parity_k if parity_data else None,
        },
        parity=report.to_dict() if report else None,
        parity_skipped="--no-parity" if report is None else None,
        parity_data=parity_data,
        export_seconds=export_seconds,
    )
    if report is not None and not report.passed:
        failed = out.with_name(out.name + FAILED_SUFFIX)
        out.replace(failed)
        manifest.extra["file"] = str(failed.resolve())
        write_manifest(manifest, out)
        print(f"export: {ParityError(report)}", file=sys.stderr)
        log(f"the exported file was renamed to {failed}: do not serve it")
        return 1
    path = write_manifest(manifest, out)
    log(f"done in {time.monotonic() - started:.1f} s: {out} ({out.stat().st_size / 1e6:.1f} MB), manifest {path}")
    workdir.cleanup()
    return 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"news-enhancer export: error: {exc}", file=sys.stderr)
        return 2
