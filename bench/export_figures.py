"""Export figures for one adapter: every output form's size, time to write, and parity against transformers.

Prints a table; asserts nothing. Forms: the LoRA GGUF on the base GGUF, and the merged model as f16,
q8_0 and q4_k_m. Run it on an idle machine for times worth quoting:

    .venv/bin/python bench/export_figures.py --adapter runs/x/adapter --parity-data dev.jsonl [--k 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from export.lora_gguf import export_lora_gguf  # noqa: E402
from export.merged_gguf import merge_adapter, write_model_gguf  # noqa: E402
from export.parity import Variant, check_parity, load_prompts  # noqa: E402
from export.quantize import quantize_gguf  # noqa: E402
from inference.models import EMBEDDED, embedded_base_model  # noqa: E402
from trainers.base_model import resolve_base_model  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--adapter", required=True)
    p.add_argument("--parity-data", required=True)
    p.add_argument("--base", default=EMBEDDED, help="base GGUF (default: the embedded Gemma 3 270M)")
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=96)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--chat-format", default="gemma")
    args = p.parse_args()

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    base_gguf = embedded_base_model() if args.base == EMBEDDED else Path(args.base)
    hf_dir = resolve_base_model(args.base).path
    out = Path(tempfile.mkdtemp(prefix="export-figures-"))
    rows: list[tuple[str, Path, float]] = []

    started = time.monotonic()
    lora, _ = export_lora_gguf(args.adapter, base_gguf, out / "lora.gguf")
    rows.append(("lora", lora, time.monotonic() - started))
    started = time.monotonic()
    merged = merge_adapter(hf_dir, args.adapter)
    f16 = write_model_gguf(merged, out / "merged-f16.gguf", "f16", base_gguf=base_gguf, chat_format=args.chat_format)
    rows.append(("f16", f16.path, time.monotonic() - started))
    del merged
    for quant in ("q8_0", "q4_k_m"):
        started = time.monotonic()
        path = quantize_gguf(f16.path, out / f"merged-{quant}.gguf", quant, threads=args.threads)
        rows.append((quant, path, time.monotonic() - started))

    hf = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32), args.adapter)
    variants = [Variant("lora", str(base_gguf), str(lora))] + [Variant(name, str(path)) for name, path, _ in rows[1:]]
    report = check_parity(
        hf,
        load_prompts(args.parity_data, args.k),
        variants,
        chat_format=args.chat_format,
        max_new_tokens=args.max_tokens,
        threads=args.threads,
    )
    print(f"\n{'form':<8} {'size MB':>9} {'write s':>8} {'greedy =+tie':>12} {'top-1':>6} {'max|d|':>7} {'mean|d|':>8} "
          f"{'relative':>8}  verdict  margins where greedy answers parted")  # fmt: skip
    for (name, path, seconds), v in zip(rows, report.variants, strict=True):
        size = path.stat().st_size / 1e6 + (base_gguf.stat().st_size / 1e6 if name == "lora" else 0)
        rel = "n/a" if v.relative_error is None else f"{v.relative_error:.3f}"
        print(
            f"{name:<8} {size:>9.1f} {seconds:>8.1f} {v.greedy_identical:>6}+{v.greedy_near_tie}/{v.prompts:<3} "
            f"{v.top1_agreement:>6.3f} {v.max_logit_diff:>7.2f} {v.mean_logit_diff:>8.4f} {rel:>8}  "
            f"{'PASS' if v.passed else 'FAIL'}     {v.divergence_margins}"
        )
    print(f"\nadapter effect (mean |dlogit| with vs without): {report.adapter_effect_mean:.3f}; "
          f"{report.positions} positions; parity {report.seconds:.0f} s; files in {out}")  # fmt: skip
    print("lora size = base GGUF + adapter file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
