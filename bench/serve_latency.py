"""Serving figures: model load, per-item latency, grammar cost, prefix reuse, start-up to tools/list.

Prints figures; asserts nothing. Run on an idle machine for numbers worth quoting:

    .venv/bin/python bench/serve_latency.py [--threads 2] [--newsletter FILE] [--model X.gguf --lora A.gguf]

Targets (2 cores, embedded default): grammar-constrained decoding >= 0.9x unconstrained tokens/s;
a 20-item newsletter <= 15 s; tools/list answered <= 1.5 s after process start.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inference.analyzer import Analyzer  # noqa: E402
from inference.engine import EngineConfig  # noqa: E402
from inference.options import add_model_options, engine_config  # noqa: E402
from ingest.newsletter import split_newsletter  # noqa: E402

DEFAULT_NEWSLETTER = ROOT / "tests/fixtures/newsletters/tldr_ai.html"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def bench_load(config: EngineConfig) -> Analyzer:
    section("model load")
    started = time.perf_counter()
    analyzer = Analyzer(config)
    analyzer.engine.load()
    print(f"load (import llama_cpp + model + context): {time.perf_counter() - started:.2f} s")
    print(f"engine.load_seconds: {analyzer.engine.load_seconds:.2f} s  model: {analyzer.engine.model_path}")
    return analyzer


def bench_newsletter(analyzer: Analyzer, text: str, parallel: int) -> None:
    section(f"newsletter, {parallel} item(s) decoded together")
    analyzer.engine.config.n_parallel = parallel  # read at load time: reload with the new setting
    analyzer.engine.close()
    latencies: list[float] = []
    gens = []
    generate = analyzer.engine.generate

    def recording(*args, **kwargs):  # keeps the token counts the report does not carry
        out = generate(*args, **kwargs)
        gens.extend(out)
        return out

    analyzer.engine.generate = recording
    started = time.perf_counter()
    try:
        report = analyzer.analyze_newsletter(text, on_item=lambda d, n, r, s: latencies.append(s))
    finally:
        del analyzer.engine.generate
    wall = time.perf_counter() - started
    n = len(report["items"])
    print(f"items: {n}   wall: {wall:.1f} s   ({wall / n:.2f} s per item; 20 items would take ~{20 * wall / n:.0f} s)")
    prompt, answer = sum(g.prompt_tokens for g in gens), sum(g.completion_tokens for g in gens)
    print(f"tokens: {prompt} prompt ({prompt / n:.0f}/item), {answer} answer ({answer / n:.0f}/item)")
    print(f"per-item latency: p50 {percentile(latencies, 0.5):.1f} s   p90 {percentile(latencies, 0.9):.1f} s")


def bench_grammar(analyzer: Analyzer, prompts: list[str], max_tokens: int, rounds: int) -> None:
    section(f"decoding speed with and without the grammar ({len(prompts)} prompts x {rounds} rounds, one at a time)")
    engine = analyzer.engine
    engine.config.n_parallel = 1
    engine.close()
    totals = {mode: [0, 0.0, 0.0] for mode in ("none", "fast", "full")}

    def run(mode: str, prompt: str) -> None:
        gen = engine.generate([prompt], grammar=mode, max_tokens=max_tokens)[0]
        totals[mode][0] += gen.completion_tokens - 1  # the first token comes from the prompt pass
        totals[mode][1] += gen.seconds - gen.prompt_seconds
        totals[mode][2] += gen.grammar_seconds

    for _ in range(rounds):
        for prompt in prompts:  # ABBA order cancels drift in the machine's load
            for mode in ("none", "fast", "fast", "none"):
                run(mode, prompt)
    for prompt in prompts:  # slow: once
        run("full", prompt)
    speed = {mode: tokens / seconds for mode, (tokens, seconds, _) in totals.items()}
    labels = {
        "none": "unconstrained",
        "fast": "grammar, greedy token checked first",
        "full": "grammar, full vocabulary mask every step",
    }
    for mode, label in labels.items():
        tokens, seconds, in_grammar = totals[mode]
        print(
            f"{label:<42} {speed[mode]:6.1f} tok/s  ({tokens} tokens in {seconds:.1f} s; "
            f"{1000 * in_grammar / max(tokens, 1):.2f} ms/token in the grammar)"
        )
    tokens, seconds, in_grammar = totals["fast"]
    print(f"ratio fast grammar / unconstrained, end to end: {speed['fast'] / speed['none']:.2f}   (target >= 0.9)")
    print(
        f"ratio fast grammar / the same run without its grammar time: {(seconds - in_grammar) / seconds:.3f}"
        "   (load-independent)"
    )
    print(f"ratio full-mask grammar / unconstrained: {speed['full'] / speed['none']:.2f}")


def bench_prefix(analyzer: Analyzer, prompts: list[str]) -> None:
    section("prompt-prefix reuse")
    engine = analyzer.engine
    engine.config.n_parallel = 1
    engine.close()
    first = prompts[0]
    cold = engine.generate([first], max_tokens=1)[0]
    warm = engine.generate([first], max_tokens=1)[0]
    print(
        f"same prompt again ({cold.prompt_tokens} tokens): cold {cold.prompt_seconds:.2f} s, "
        f"warm {warm.prompt_seconds:.2f} s ({warm.reused_tokens} tokens reused)"
    )
    for label, head in (("without", None), ("with", analyzer._template_head)):
        engine.close()
        gens = engine.generate(prompts, max_tokens=1, shared_prefix=head)
        reused = sum(g.reused_tokens for g in gens)
        tokens = sum(g.prompt_tokens for g in gens)
        seconds = sum(g.prompt_seconds for g in gens)
        print(
            f"newsletter items {label} the shared template head: {seconds:.2f} s prompt time, "
            f"{reused}/{tokens} tokens reused"
        )


def bench_startup(repeats: int) -> None:
    section("process start -> tools/list answered (stdio, a real MCP client)")
    code = (
        "import sys, time, anyio\n"
        "from mcp import Client\n"
        "from mcp.client.stdio import StdioServerParameters\n"
        "async def main():\n"
        "    t = time.perf_counter()\n"
        f"    p = StdioServerParameters(command={str(ROOT / '.venv/bin/news-enhancer')!r}, args=['serve'])\n"
        "    async with Client(p, mode='legacy') as c:\n"
        "        await c.list_tools()\n"
        "        print(time.perf_counter() - t)\n"
        "anyio.run(main)\n"
    )
    times = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        times.append(float(out.stdout.strip().splitlines()[-1]))
    bare = subprocess.run(
        [
            sys.executable,
            "-c",
            "import time; t=time.perf_counter(); import mcp.server.mcpserver; print(time.perf_counter()-t)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    print(
        f"tools/list after {statistics.median(times):.2f} s "
        f"(median of {repeats}: {', '.join(f'{t:.2f}' for t in times)})"
    )
    print(f"for reference, `import mcp.server.mcpserver` alone: {float(bare.stdout):.2f} s   (target <= 1.5 s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--newsletter", type=Path, default=DEFAULT_NEWSLETTER)
    add_model_options(parser)  # the same model options as `serve`, from one table
    parser.add_argument("--grammar-prompts", type=int, default=4, help="prompts for the grammar comparison")
    parser.add_argument("--grammar-tokens", type=int, default=96, help="answer tokens per prompt in that comparison")
    parser.add_argument("--grammar-rounds", type=int, default=1, help="repeats of that comparison")
    parser.add_argument("--startup-repeats", type=int, default=3)
    parser.add_argument("--skip", nargs="*", default=[], choices=("newsletter", "grammar", "prefix", "startup"))
    args = parser.parse_args()

    config = engine_config(args)
    print(f"threads: {config.threads()}   parallel: {args.parallel}   newsletter: {args.newsletter}")
    text = args.newsletter.read_text(encoding="utf-8")
    analyzer = bench_load(config)
    items = split_newsletter(text).items
    prompts = [analyzer._prepare(item).prompt for item in items]
    if "newsletter" not in args.skip:
        bench_newsletter(analyzer, text, args.parallel)
        if args.parallel != 1:
            bench_newsletter(analyzer, text, 1)
    if "grammar" not in args.skip:
        bench_grammar(analyzer, prompts[: args.grammar_prompts], args.grammar_tokens, args.grammar_rounds)
    if "prefix" not in args.skip:
        bench_prefix(analyzer, prompts)
    if "startup" not in args.skip:
        bench_startup(args.startup_repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
