"""Reproduce the relevance head's side effect on decoding speed (docs/relevance.md, "Cost").

    .venv/bin/python bench/embed_interference.py [plain|emb] [call]

Times the engine decoding the 20-item bench newsletter (shipped adapter, greedy, 8 slots, 2 threads)
alone, then again after a second llama.cpp model was loaded in the process: `plain` (no embedding
mode), `emb` (embedding=True); with `call`, after one embed() call on it. Measured on the 2-core
AMD EPYC (2026-12-02): alone 16.4-17.1 s, plain 17.2 s, emb 18.1 s, emb + one embed() call 27.4 s.
Asserts nothing; prints the CPU and both times.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import llama_cpp  # noqa: E402
import newsletter_speed as speed  # noqa: E402

from inference.analyzer import Analyzer  # noqa: E402
from inference.engine import EngineConfig  # noqa: E402
from inference.models import default_adapter, embedded_base_model  # noqa: E402


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else "emb"
    call = len(sys.argv) > 2 and sys.argv[2] == "call"
    machine = speed.cpu()
    print(f"CPU: {machine['model']}, {machine['cores']} cores, flags: {' '.join(machine['flags'])}")
    config = EngineConfig(lora_path=str(default_adapter()), n_threads=2, n_parallel=8, relevance_rule="greedy")
    analyzer = Analyzer(config)
    prompts = [analyzer._prepare(i).prompt for i in speed.newsletter_items(speed.default_newsletter())]
    analyzer.engine.generate(prompts[:2])
    started = time.perf_counter()
    analyzer.engine.generate(prompts)
    print(f"decode alone: {time.perf_counter() - started:.1f} s", flush=True)
    kw = dict(model_path=str(embedded_base_model()), n_ctx=512, verbose=False, n_threads=1)
    if mode == "emb":
        kw["embedding"] = True
    other = llama_cpp.Llama(**kw)
    if call:
        other.embed("Title: x\nContent: y")
    started = time.perf_counter()
    analyzer.engine.generate(prompts)
    label = f"a second model ({mode}{', one embed() call' if call else ', unused'})"
    print(f"decode with {label}: {time.perf_counter() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
