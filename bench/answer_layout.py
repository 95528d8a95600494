"""The answer layout (what jump-forward can force) against newsletter time, in one run on the same items.

    .venv/bin/python bench/answer_layout.py [--threads 2] [--parallel 8] [--rounds 2]

The 20-item bench newsletter's prompts (bench/newsletter_speed.py), in-process, median rule (the
relevance head's embedding pass would blur the decode figures), after a 4-item warm-up, for:
  keys only   the grammar allowing any whitespace, only the keys forced (the engine before the strict
              layout)
  strict layout  the strict indent=2 grammar with its layout forcer (the default)
Variants alternate for --rounds rounds (the machine's speed drifts; compare within a round). Then,
per variant, how many answers equal the same prompt decoded alone, and equal the "keys only" ones.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import newsletter_speed as speed  # noqa: E402

import schemas  # noqa: E402
from inference.analyzer import Analyzer  # noqa: E402
from inference.engine import Engine, EngineConfig  # noqa: E402
from inference.grammar import json_constraint  # noqa: E402
from inference.models import default_adapter  # noqa: E402
from inference.relevance import score_probe  # noqa: E402

VARIANTS = (("keys only", None), ("strict layout", 2))
"""(name, grammar indent)."""


def analyzer(indent: int | None, threads: int, parallel: int) -> Analyzer:
    config = EngineConfig(
        lora_path=str(default_adapter()),
        n_threads=threads,
        n_parallel=parallel,
        relevance_rule="median",
    )
    constraint = json_constraint(schemas.load_schema("article_analysis"), score_probe("median"), indent=indent)
    return Analyzer(engine=Engine(config, constraint))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    machine = speed.cpu()
    print(f"CPU: {machine['model']}, {machine['cores']} cores; load average {' '.join(map(str, speed.load()))}")
    items = speed.newsletter_items(speed.default_newsletter())
    times: dict[str, list[float]] = {name: [] for name, _ in VARIANTS}
    answers: dict[str, list[str]] = {}
    forced: dict[str, float] = {}
    for round_ in range(1, args.rounds + 1):
        for name, indent in VARIANTS:
            a = analyzer(indent, args.threads, args.parallel)
            prompts = [a._prepare(item).prompt for item in items]
            a.complete_many(prompts[-4:])  # warm-up: load, first calls (other prompts than the first ones)
            started = time.perf_counter()
            gens = a.engine.generate(prompts, shared_prefix=a._template_head)  # as Analyzer.complete_many
            times[name].append(time.perf_counter() - started)
            if round_ == 1:
                answers[name] = [g.text for g in gens]
                forced[name] = statistics.mean(g.forced_tokens / max(1, g.completion_tokens) for g in gens)
                alone = [a.engine.generate([p], shared_prefix=a._template_head)[0].text for p in prompts]
                same = sum(x == y for x, y in zip(alone, answers[name], strict=True))
                print(f"  {name}: answers equal to the prompt alone: {same}/{len(prompts)}", flush=True)
            a.engine.close()
            print(f"round {round_}: {name:<13} {times[name][-1]:5.1f} s", flush=True)
    base = times["keys only"]
    print(f"{len(items)} items, {args.parallel} slots, {args.threads} threads:")
    for name, _ in VARIANTS:
        ratios = ", ".join(f"{t / b:.2f}" for t, b in zip(times[name], base, strict=True))
        same = sum(x == y for x, y in zip(answers[name], answers["keys only"], strict=True))
        print(
            f"  {name:<13} {' / '.join(f'{t:.1f}' for t in times[name])} s; x keys only per round: {ratios}; "
            f"forced tokens {100 * forced[name]:.0f}% of the answer; answers equal to keys only: {same}/{len(items)}"
        )
    print(f"load average at end: {' '.join(map(str, speed.load()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
