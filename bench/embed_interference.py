"""Reproduce the relevance head's side effect on decoding speed (docs/relevance.md, "Cost").

    .venv/bin/python bench/embed_interference.py [plain|emb] [call|thread-call]

Times the engine decoding the 20-item bench newsletter (shipped adapter, greedy, 8 slots, 2 threads)
alone, then again after a second llama.cpp model was loaded in the process: `plain` (no embedding
mode), `emb` (embedding=True); with `call`, after one embed() call on it from this (long-lived)
thread; with `thread-call`, after the same call made on a short-lived thread, as
`inference.relevance_head.Embedder` does. Measured on the 2-core AMD EPYC (2026-12-02): alone
14.4-17.3 s, plain 17.2 s, emb 18.1 s, emb + one embed() call 25.2-27.4 s, the call on a short-lived
thread 18.2-18.7 s. Asserts nothing; prints the CPU and both times.
"""

from __future__ import annotations

import sys
import threading
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
    call = sys.argv[2] if len(sys.argv) > 2 else ""
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
    if call == "call":
        other.embed("Title: x\nContent: y")
    elif call == "thread-call":
        worker = threading.Thread(target=other.embed, args=("Title: x\nContent: y",))
        worker.start()
        worker.join()
    started = time.perf_counter()
    analyzer.engine.generate(prompts)
    label = f"a second model ({mode}, {call or 'unused'})"
    print(f"decode with {label}: {time.perf_counter() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
