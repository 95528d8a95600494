"""What a decode call costs, and where a newsletter's decode time goes, on this machine.

    .venv/bin/python bench/decode_calls.py [--threads 2] [--parallel 8] [--skip-newsletter]

1. One llama_decode call of the embedded model + shipped adapter, by row count and rows with logits
   (median of 7; the KV cache emptied after each): a call's fixed cost against its cost per row.
2. The 20-item bench newsletter (bench/newsletter_speed.py) in-process, after a warm-up on another
   newsletter (so no prompt is reused from it), with every call of the engine timed by kind:
   prompt chunks, padded answering steps, jump-forward calls. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import newsletter_speed as speed  # noqa: E402

from inference import engine as engine_module  # noqa: E402
from inference.analyzer import Analyzer  # noqa: E402
from inference.engine import Engine, EngineConfig  # noqa: E402
from inference.models import default_adapter  # noqa: E402

SHAPES = ((1, 1, 1), (4, 1, 1), (8, 1, 1), (8, 8, 8), (16, 1, 1), (16, 8, 8), (32, 1, 1), (32, 8, 8))
"""(rows, rows with logits, sequences) per measured call."""


def call_costs(threads: int) -> None:
    engine = Engine(EngineConfig(lora_path=str(default_adapter()), n_threads=threads, n_parallel=8)).load()
    lc, batch = engine._llama_cpp, engine._batch

    def once(rows: int, outputs: int, seqs: int) -> float:
        for i in range(rows):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = 1000 + i, i // seqs, 1
            batch.seq_id[i][0], batch.logits[i] = i % seqs, int(i >= rows - outputs)
        batch.n_tokens = rows
        started = time.perf_counter()
        lc.llama_decode(engine._ctx, batch)
        seconds = time.perf_counter() - started
        for seq in range(seqs):
            lc.llama_memory_seq_rm(engine._memory, seq, 0, -1)
        return seconds

    for rows, outputs, seqs in SHAPES:
        times = sorted(once(rows, outputs, seqs) for _ in range(7))
        print(f"  {rows:2d} rows, {outputs:2d} with logits, {seqs} sequences: {1000 * times[3]:6.1f} ms", flush=True)
    engine.close()


def newsletter_profile(threads: int, parallel: int) -> None:
    # the median rule: the relevance head's embedding pass would blur the decode figures
    config = EngineConfig(
        lora_path=str(default_adapter()), n_threads=threads, n_parallel=parallel, relevance_rule="median"
    )
    analyzer = Analyzer(config)
    analyzer.analyze_newsletter((speed.FIXTURES / "generic.html").read_text(encoding="utf-8"))  # warm-up
    stats: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0])
    original = engine_module.Engine._decode

    def timed(self: Engine, parts: list, pad: bool = False) -> None:
        kind = "answering step" if pad else "jump-forward" if parts and parts[0][0].job.generated else "prompt"
        started = time.perf_counter()
        original(self, parts, pad)
        entry = stats[kind]
        entry[0] += 1
        entry[1] += time.perf_counter() - started
        entry[2] += self._batch.n_tokens

    engine_module.Engine._decode = timed
    started = time.perf_counter()
    report = analyzer.analyze_newsletter(speed.default_newsletter())
    wall = time.perf_counter() - started
    engine_module.Engine._decode = original
    analyzer.engine.close()
    print(f"  {len(report['items'])} items in {wall:.1f} s ({parallel} slots)")
    for kind, (calls, seconds, rows) in stats.items():
        per_call = f"{1000 * seconds / calls:.1f} ms/call, {rows / calls:.1f} rows/call"
        print(f"  {kind}: {calls} calls, {seconds:.2f} s, {per_call}")
    outside = wall - sum(v[1] for v in stats.values())
    print(f"  outside decode calls (grammar, Python, scratch decodes): {outside:.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--skip-newsletter", action="store_true")
    args = parser.parse_args()
    machine = speed.cpu()
    print(f"CPU: {machine['model']}, {machine['cores']} cores; load average {' '.join(map(str, speed.load()))}")
    print("one decode call (embedded base + shipped adapter):")
    call_costs(args.threads)
    if not args.skip_newsletter:
        print("the 20-item bench newsletter, by call kind:")
        newsletter_profile(args.threads, args.parallel)
    print(f"load average at end: {' '.join(map(str, speed.load()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
