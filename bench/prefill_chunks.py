"""Prompt chunk size (inference.engine.PROMPT_CHUNK) against newsletter time, in one run on the same items.

    .venv/bin/python bench/prefill_chunks.py [--chunks 32 64 128 512] [--threads 2] [--parallel 8]

For each chunk size, a fresh in-process engine (the analyzer the MCP server uses, relevance read by
`--relevance-rule`, default median so the head's embedding pass does not blur the prefill figure)
analyzes the 20-item bench newsletter twice (the second run is timed: the first pays the model
load); prints the wall time, prompt-processing seconds, the ratio to the first chunk size, and how
many answers equal the first chunk size's (a chunk size is deterministic on its own; across sizes
llama.cpp's kernels compute prompt rows slightly differently, which can flip a near tie). Asserts
nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import newsletter_speed as speed  # noqa: E402

from inference import engine as engine_module  # noqa: E402
from inference.analyzer import Analyzer  # noqa: E402
from inference.engine import EngineConfig  # noqa: E402
from inference.models import default_adapter  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, nargs="+", default=[32, 64, 128, 512])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--relevance-rule", default="median")
    args = parser.parse_args()
    machine = speed.cpu()
    print(f"CPU: {machine['model']}, {machine['cores']} cores, flags: {' '.join(machine['flags']) or 'none of note'}")
    print(f"load average at start: {' '.join(map(str, speed.load()))}")
    text = speed.default_newsletter()
    runs = []
    for chunk in args.chunks:
        engine_module.PROMPT_CHUNK = chunk
        config = EngineConfig(
            lora_path=str(default_adapter()),  # as `serve` (inference.models.resolve_model_files)
            n_threads=args.threads,
            n_parallel=args.parallel,
            relevance_rule=args.relevance_rule,
        )
        analyzer = Analyzer(config)
        analyzer.analyze_newsletter(text)  # load + warm caches
        started = time.perf_counter()
        report = analyzer.analyze_newsletter(text)
        seconds = time.perf_counter() - started
        answers = [speed.analysis_of(i) for i in report["items"]]
        analyzer.engine.close()
        runs.append({"chunk": chunk, "seconds": seconds, "answers": answers})
        print(f"PROMPT_CHUNK {chunk:>3}: {len(answers)} items in {seconds:.1f} s", flush=True)
    print(f"\nCPU: {machine['model']}; load average at end: {speed.load()}")
    first = runs[0]
    for run in runs:
        same = sum(a == b for a, b in zip(run["answers"], first["answers"], strict=True))
        print(
            f"  chunk {run['chunk']:>3}: {run['seconds']:.1f} s = {run['seconds'] / first['seconds']:.2f}x chunk "
            f"{first['chunk']}; answers equal to chunk {first['chunk']}'s: {same}/{len(run['answers'])}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
