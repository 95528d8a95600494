"""`eval run`'s batches: the same references one at a time and in batches of --parallel, in one run.

Both go through `evaluation.runner.generate` on the shipped model (embedded Gemma 3 270M + the news
adapter, relevance head) with the same engine settings, so the answers must be identical (the
engine pads every step to one row per slot); the figure is the ratio of wall times. Prints figures
and the CPU; asserts nothing.

    .venv/bin/python bench/eval_batches.py REFERENCES.jsonl [--limit 16] [--parallel 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.runner import generate  # noqa: E402
from evaluation.scoring import load_references  # noqa: E402
from inference.analyzer import Analyzer  # noqa: E402
from inference.engine import EngineConfig  # noqa: E402
from inference.models import default_adapter  # noqa: E402


class OneAtATime:
    """The analyzer as `eval run` used it before 2026-12-02: `complete` per reference."""

    def __init__(self, analyzer: Analyzer):
        self.analyzer, self.config, self.head = analyzer, analyzer.config, analyzer.head

    def complete(self, prompt, head_input=None):
        return self.analyzer.complete(prompt, head_input)

    def complete_many(self, prompts, head_inputs=None):
        inputs = head_inputs or [None] * len(prompts)
        return [self.analyzer.complete(p, h) for p, h in zip(prompts, inputs, strict=True)]


def cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("references")
    parser.add_argument("--limit", type=int, default=16)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    refs = load_references(args.references, limit=args.limit)
    config = EngineConfig(lora_path=str(default_adapter()), n_threads=args.threads, n_parallel=args.parallel)
    analyzer = Analyzer(config)
    analyzer.complete(refs[0].prompt)  # load and warm up outside the timings
    print(f"{cpu()}, {args.threads} threads, {len(refs)} references, --parallel {args.parallel}, rule {analyzer.rule}")
    times, outputs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, runner in (("one at a time", OneAtATime(analyzer)), ("batched", analyzer)):
            started = time.perf_counter()
            outputs[name], _ = generate(refs, Path(tmp) / name.replace(" ", "-"), analyzer=runner, progress=False)
            times[name] = time.perf_counter() - started
            print(f"  {name:>13}: {times[name]:6.1f} s ({len(refs) / times[name]:.2f} items/s)")
    same = sum(a == b for a, b in zip(outputs["one at a time"], outputs["batched"], strict=True))
    print(f"speed-up batched / one at a time: {times['one at a time'] / times['batched']:.2f}x")
    print(f"identical answers: {same}/{len(refs)}")
    analyzer.engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
