"""Newsletter speed against stock llama-server, in one run on the same items.

    .venv/bin/python bench/newsletter_speed.py [--parallel 16 3] [--threads 2] [--newsletter FILE]
        [--relevance-rules greedy median] [--skip-peer] [--skip-floor] [--skip-concurrency] [--json OUT]

Prints, on the CPU it names:

- the project's newsletter time: the real MCP server (`news-enhancer serve`) over stdio, the SDK
  client, one `analyze_newsletter` call on a 20-item newsletter (tldr_ai.html's 16 items and 4 of
  newsletter.md's, written as one Markdown newsletter), for each --parallel and --relevance-rules;
- the same items through upstream `llama-server` (built on demand by bench/llama_server_peer.py
  from the llama.cpp the pinned llama-cpp-python vendors), with the same base GGUF and LoRA: the
  very prompt tokens our engine feeds, all sent at once to `/completion` with the article schema as
  `json_schema`, temperature 0; schema-valid answers, answers identical to ours, and the ratio;
- the floor: `llama-batched-bench` (no grammar, no LoRA) for the same number of sequences of the
  measured prompt and answer lengths;
- 10 concurrent `analyze_article` calls on one MCP session against the same 10 items as one
  `analyze_newsletter` call, and whether their answers agree;
- `initialize` + `tools/list` time after process start.

Asserts nothing; the targets (docs/serving.md): project <= 0.5x llama-server, 10 concurrent calls
<= 1.3x one newsletter call, tools/list <= 1.5 s. The machine's load is printed: compare in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import llama_server_peer as peer  # noqa: E402

import schemas  # noqa: E402
from ingest.newsletter import split_newsletter  # noqa: E402

FIXTURES = ROOT / "tests/fixtures/newsletters"
N_CTX = 2048  # per sequence, as `serve` (EngineConfig.n_ctx)
MAX_TOKENS = 320  # answer budget, as `serve` (EngineConfig.max_tokens)
WARM_UP = {"title": "Acme ships a tiny benchmark model", "content": "It answers quickly."}
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


# --- the machine -----------------------------------------------------------------------------------


def cpu() -> dict[str, Any]:
    """The CPU's model name, core count and the instruction-set flags that decide llama.cpp's kernels."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = set(info.get("flags", "").split())
    model = info.get("model name") or platform.processor() or "unknown"
    return {"model": model, "cores": os.cpu_count(), "flags": [f for f in CPU_FLAGS if f in flags]}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- the items -------------------------------------------------------------------------------------


def markdown_newsletter(items, heading: str) -> str:
    """Items as one Markdown newsletter (`### [title](url)` then the content), which splits back into them."""
    lines = [f"# {heading}", ""]
    for item in items:
        lines += [f"### [{item.title}]({item.url})" if item.url else f"### {item.title}", "", item.content, ""]
    return "\n".join(lines)


def same_items(a, b) -> bool:
    key = lambda i: (i.title, i.content, i.url, i.is_sponsored)  # noqa: E731
    return [key(i) for i in a] == [key(i) for i in b]


def default_newsletter() -> str:
    """tldr_ai.html's 16 items and the first 4 unsponsored items of newsletter.md, as one newsletter."""
    tldr = split_newsletter((FIXTURES / "tldr_ai.html").read_text(encoding="utf-8")).items
    more = [i for i in split_newsletter((FIXTURES / "newsletter.md").read_text(encoding="utf-8")).items]
    items = tldr + [i for i in more if not i.is_sponsored][: 20 - len(tldr)]
    text = markdown_newsletter(items, "news-enhancer bench: 20 items")
    if not same_items(split_newsletter(text).items, items):
        print("note: the combined newsletter does not split back into the fixtures' items exactly")
    return text


def newsletter_items(text: str, max_items: int = 40) -> list:
    """The items `Analyzer.analyze_split` analyzes for `text` (non-empty, at most max_items)."""
    items = [i for i in split_newsletter(text).items if (i.title or "").strip() or (i.content or "").strip()]
    return items[:max_items]


def prepared_prompts(items) -> tuple[list[list[int]], list[str]]:
    """The chat-prompt tokens our engine feeds for each item (Analyzer._prepare, the project's own code),
    and the same prompts as text (data.prompts.render_chat_prompt)."""
    from data.prompts import format_title, prepare_content, render_chat_prompt, render_prompt
    from inference.analyzer import TITLE_CHARS, Analyzer
    from inference.engine import Engine, EngineConfig
    from inference.models import default_adapter, embedded_base_model

    config = EngineConfig(
        model_path=str(embedded_base_model()), lora_path=str(default_adapter()), n_parallel=1, n_ctx=N_CTX
    )
    engine = Engine(config)  # only its tokenizer is used: no grammar, no decoding
    try:
        tokens = [Analyzer(engine=engine)._prepare(item).prompt for item in items]
    finally:
        engine.close()
    texts = []
    for item in items:
        title = (item.title or "").strip()[:TITLE_CHARS].rstrip()
        body, _ = prepare_content((item.content or "").strip(), bool(item.is_sponsored))
        texts.append(render_chat_prompt(render_prompt(format_title(title), body), config.chat_format or "gemma"))
    return tokens, texts


def normalized(analysis: dict[str, Any]) -> dict[str, Any]:
    """An answer as our analyzer keeps it (inference.analyzer.Analyzer._completion): missing keys filled,
    repeated list items dropped; only the four answer keys."""
    from inference.grammar import fill_missing

    out = fill_missing(dict(analysis), schemas.load_schema("article_analysis"))
    return {k: list(dict.fromkeys(v)) if isinstance(v, list) else v for k, v in out.items()}


def analysis_of(result: dict[str, Any]) -> dict[str, Any]:
    return {key: result[key] for key in schemas.ANALYSIS_KEYS}


def compare(ours: list[dict], theirs: list[dict | None]) -> dict[str, int]:
    """How many answers agree: all four keys, and all but the relevance score."""
    same = same_but_score = 0
    for a, b in zip(ours, theirs, strict=True):
        if b is None:
            continue
        same += a == b
        same_but_score += {k: v for k, v in a.items() if k != "relevance_score"} == {
            k: v for k, v in b.items() if k != "relevance_score"
        }
    return {"identical": same, "identical_but_score": same_but_score, "of": len(ours)}


# --- the project's server over MCP -----------------------------------------------------------------


@contextlib.asynccontextmanager
async def served(args: list[str], log_path: Path, out: dict[str, Any] | None = None):
    """A fresh `news-enhancer serve` process and an SDK client session on it, warmed up: the first
    analyze_article waits for the model load. Fresh per phase, so no phase finds another's prompts
    in the engine's KV cache (a repeated prompt in the same slot skips its prefill)."""
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(command=sys.executable, args=args, cwd=str(ROOT))
    with log_path.open("a") as errlog:
        started = time.perf_counter()
        async with Client(stdio_client(params, errlog=errlog), mode="legacy", read_timeout_seconds=3600) as client:
            initialized = time.perf_counter() - started
            await client.list_tools()
            listed = time.perf_counter() - started
            t = time.perf_counter()
            result = await client.call_tool("analyze_article", WARM_UP)
            if result.is_error:
                raise SystemExit(f"warm-up call failed: {result.content}  (log: {log_path})")
            if out is not None:
                out.update(initialize_s=initialized, tools_list_s=listed, first_call_s=time.perf_counter() - t)
            yield client


async def project_run(
    parallel: int,
    threads: int,
    rule: str,
    text: str,
    ten: list,
    ten_text: str | None,
    log_dir: Path,
    extra: list[str] = (),
) -> dict[str, Any]:
    """The newsletter over MCP; with `ten_text`, also the 10 items as one newsletter and as 10 concurrent calls."""
    args = ["-m", "news_enhancer.cli", "serve", "--threads", str(threads), "--parallel", str(parallel)]
    args += ["--relevance-rule", rule, *extra]
    out: dict[str, Any] = {"parallel": parallel, "threads": threads, "relevance_rule": rule}
    print(f"server: {shlex.join([sys.executable, *args])}", flush=True)
    log_path = log_dir / f"serve-p{parallel}-{rule}.log"
    out["log"] = str(log_path)

    async with served(args, log_path, out) as client:
        print(f"initialize after {out['initialize_s']:.2f} s, tools/list after {out['tools_list_s']:.2f} s")
        print(f"first analyze_article (waits for the model load): {out['first_call_s']:.2f} s")
        t = time.perf_counter()
        result = await client.call_tool("analyze_newsletter", {"text": text})
        out["newsletter_s"] = time.perf_counter() - t
    if result.is_error:
        raise SystemExit(f"analyze_newsletter failed: {result.content}  (log: {log_path})")
    report = result.structured_content
    schemas.validate("newsletter_report", report)
    items = report["items"]
    out["items"] = len(items)
    out["complete"] = sum(i["complete"] for i in items)
    out["answers"] = [analysis_of(i) for i in items]
    print(
        f"analyze_newsletter: {len(items)} items in {out['newsletter_s']:.1f} s "
        f"({out['complete']} complete, {len(items) - out['complete']} cut at max_tokens)",
        flush=True,
    )
    if ten_text is None:
        return out

    async with served(args, log_path) as client:
        t = time.perf_counter()
        result = await client.call_tool("analyze_newsletter", {"text": ten_text})
        out["ten_newsletter_s"] = time.perf_counter() - t
    if result.is_error:
        raise SystemExit(f"10-item analyze_newsletter failed: {result.content}")
    batch = [analysis_of(i) for i in result.structured_content["items"]]

    async with served(args, log_path) as client:

        async def one(item) -> tuple[float, Any]:
            r = await client.call_tool("analyze_article", {"title": item.title, "content": item.content})
            return time.perf_counter(), r

        t = time.perf_counter()
        done = await asyncio.gather(*(one(item) for item in ten))  # ten tasks on one session
    out["ten_concurrent_s"] = max(end for end, _ in done) - t
    out["ten_concurrent_first_s"] = min(end for end, _ in done) - t
    failed = [r.content for _, r in done if r.is_error]
    if failed:
        raise SystemExit(f"concurrent analyze_article failed: {failed[0]}")
    alone = [analysis_of(r.structured_content) for _, r in done]
    out["ten_agree"] = compare(batch, alone)
    index = {(i["title"], i["url"]): a for i, a in zip(items, out["answers"], strict=True)}
    out["ten_agree_with_twenty"] = compare(batch, [index.get((item.title, item.url)) for item in ten])
    out["ten_ratio"] = out["ten_concurrent_s"] / out["ten_newsletter_s"]
    print(
        f"10 items as one analyze_newsletter: {out['ten_newsletter_s']:.1f} s; "
        f"10 concurrent analyze_article: {out['ten_concurrent_s']:.1f} s "
        f"(first done after {out['ten_concurrent_first_s']:.1f} s); ratio {out['ten_ratio']:.2f} (target <= 1.3)"
    )
    print(
        f"answers: concurrent calls = 10-item newsletter: {out['ten_agree']['identical']}/10; "
        f"10-item = 20-item newsletter: {out['ten_agree_with_twenty']['identical']}/10",
        flush=True,
    )
    return out


# --- llama-server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def wait_healthy(base: str, process: subprocess.Popen, log_path: Path, timeout: float = 300) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise SystemExit(f"llama-server exited ({process.returncode}); see {log_path}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=5) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise SystemExit(f"llama-server not healthy after {timeout:.0f} s; see {log_path}")


def peer_run(
    server: Path, model: Path, lora: Path | None, n_parallel: int, threads: int, tokens: list[list[int]],
    texts: list[str], log_dir: Path,
) -> dict[str, Any]:  # fmt: skip
    """The items' prompts (the last one: the warm-up) through llama-server, all sent at once."""
    port = free_port()
    command = [str(server), "--model", str(model), *(["--lora", str(lora)] if lora else [])]
    command += ["-np", str(n_parallel), "-t", str(threads), "-c", str(n_parallel * N_CTX)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    print(f"llama-server: {shlex.join(command)}", flush=True)
    log_path = log_dir / f"llama-server-np{n_parallel}.log"
    base = f"http://127.0.0.1:{port}"
    schema = schemas.load_schema("article_analysis")
    out: dict[str, Any] = {"n_parallel": n_parallel, "threads": threads, "command": command, "log": str(log_path)}
    with log_path.open("w") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            out["ready_s"] = wait_healthy(base, process, log_path)
            *tokens, warm_up = tokens
            texts = texts[:-1]
            tokenized = [post(base + "/tokenize", {"content": t, "add_special": True})["tokens"] for t in texts]
            out["text_tokenizes_to_ours"] = sum(a == b for a, b in zip(tokenized, tokens, strict=True))

            def complete(prompt: list[int]) -> tuple[float, dict[str, Any]]:
                body = {
                    "prompt": prompt,  # token ids are used as given (no BOS added): ours already has it
                    "json_schema": schema,
                    "temperature": 0,
                    "n_predict": MAX_TOKENS,
                    "cache_prompt": True,
                }
                answer = post(base + "/completion", body)
                return time.perf_counter(), answer

            complete(warm_up)  # as our server's first call: not timed
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=len(tokens)) as pool:
                done = list(pool.map(complete, tokens))
            out["newsletter_s"] = max(end for end, _ in done) - started
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
    answers, valid, raw = [], 0, []
    for _, response in done:
        raw.append(response.get("content", ""))
        try:
            parsed = json.loads(response["content"])
        except (KeyError, ValueError):
            answers.append(None)
            continue
        valid += not schemas.errors("article_analysis", parsed)
        answers.append(normalized(parsed))
    out.update(
        items=len(done),
        schema_valid=valid,
        answers=answers,
        raw=raw,
        stopped_by_limit=sum(r.get("stop_type") == "limit" for _, r in done),
        prompt_tokens=sum(r.get("tokens_evaluated", 0) for _, r in done),
        answer_tokens=sum(r.get("tokens_predicted", 0) for _, r in done),
    )
    print(
        f"llama-server: {len(done)} items in {out['newsletter_s']:.1f} s ({valid} schema-valid, "
        f"{out['stopped_by_limit']} cut at n_predict); tokens {out['prompt_tokens']} prompt, "
        f"{out['answer_tokens']} answer; its tokenization of the text prompts = ours: "
        f"{out['text_tokenizes_to_ours']}/{len(texts)}",
        flush=True,
    )
    return out


# --- the floor -------------------------------------------------------------------------------------

BATCHED_ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|" + r"\s*([\d.]+)\s*\|" * 6)


def floor_run(bench: Path, model: Path, threads: int, sequences: int, prompt: int, answer: int) -> dict[str, Any]:
    n_ctx = sequences * (prompt + answer) + 256
    command = [str(bench), "-m", str(model), "-t", str(threads), "-c", str(n_ctx), "-b", "2048", "-ub", "512"]
    command += ["-npp", str(prompt), "-ntg", str(answer), "-npl", str(sequences)]
    print(f"llama-batched-bench: {shlex.join(command)}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-2000:], sep="\n")
        raise SystemExit(f"llama-batched-bench failed ({done.returncode})")
    for line in (done.stdout + "\n" + done.stderr).splitlines():  # its log goes to either, by version
        match = BATCHED_ROW.match(line)
        if match:
            pp, tg, b, n_kv = map(int, match.groups()[:4])
            t_pp, s_pp, t_tg, s_tg, t, s = map(float, match.groups()[4:])
            out = dict(command=command, pp=pp, tg=tg, sequences=b, total_s=t, prompt_s=t_pp, prompt_tok_s=s_pp)
            out.update(answer_s=t_tg, answer_tok_s=s_tg, process_s=wall)
            print(
                f"floor: {b} sequences x ({pp} prompt + {tg} answer tokens), no grammar, no LoRA: {t:.1f} s "
                f"(prompt {t_pp:.1f} s at {s_pp:.0f} tok/s, answers {t_tg:.1f} s at {s_tg:.0f} tok/s)",
                flush=True,
            )
            return out
    print(done.stdout[-3000:])
    raise SystemExit("llama-batched-bench: no result row found in its output")


# --- the run ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--newsletter", type=Path, help="newsletter file (default: the 20-item bench newsletter)")
    parser.add_argument("--parallel", type=int, nargs="+", default=[16], help="serve --parallel values to time")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--relevance-rules",
        nargs="+",
        default=["greedy", "median"],
        help="serve --relevance-rule values to time (greedy: the model's own score, comparable with llama-server)",
    )
    parser.add_argument("--peer-parallel", type=int, default=16, help="llama-server -np")
    parser.add_argument("--skip-peer", action="store_true", help="no llama-server run (and no build)")
    parser.add_argument("--skip-floor", action="store_true", help="no llama-batched-bench run")
    parser.add_argument("--skip-concurrency", action="store_true", help="no 10 concurrent analyze_article calls")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--serve-args", default="", help="more `serve` options, one string (e.g. '--engine tests.fakes:FakeEngine')"
    )
    args = parser.parse_args()

    machine = cpu()
    print(f"CPU: {machine['model']}, {machine['cores']} cores, flags: {' '.join(machine['flags']) or 'none of note'}")
    print(f"load average at start: {' '.join(map(str, load()))}")
    text = args.newsletter.read_text(encoding="utf-8") if args.newsletter else default_newsletter()
    items = newsletter_items(text)
    name = args.newsletter or "the 20-item bench newsletter (tldr_ai.html + newsletter.md)"
    print(f"newsletter: {name}, {len(items)} items")
    ten = [i for i in items if not i.is_sponsored][:10]  # analyze_article has no is_sponsored argument
    ten_text = markdown_newsletter(ten, "news-enhancer bench: 10 items")
    if not same_items(newsletter_items(ten_text), ten):
        print("note: the 10-item newsletter does not split back into the same items; its answers may differ")
    figures: dict[str, Any] = {"cpu": machine, "load_start": load(), "items": len(items), "runs": []}
    log_dir = Path(tempfile.mkdtemp(prefix="newsletter-speed-"))

    for parallel in args.parallel:
        for rule in args.relevance_rules:
            section(f"project: news-enhancer serve --parallel {parallel} --relevance-rule {rule}")
            concurrency = not args.skip_concurrency and rule == args.relevance_rules[-1]
            run = asyncio.run(
                project_run(
                    parallel,
                    args.threads,
                    rule,
                    text,
                    ten,
                    ten_text if concurrency else None,
                    log_dir,
                    shlex.split(args.serve_args),
                )
            )
            figures["runs"].append(run)

    tokens = texts = None
    if not args.skip_peer or not args.skip_floor:
        section("the peer: llama-server and llama-batched-bench from the pinned llama.cpp")
        if not peer.binaries():
            print("building them first: 10-15 minutes on 2 cores (or bench/llama_server_peer.py --background ahead)")
        bins = peer.build()
        from inference.models import default_adapter, embedded_base_model

        model, lora = embedded_base_model(), default_adapter()
    if not args.skip_peer:
        from inference.analyzer import Item

        tokens, texts = prepared_prompts([*items, Item(**WARM_UP)])  # the last: the warm-up item
        result = peer_run(bins["llama-server"], model, lora, args.peer_parallel, args.threads, tokens, texts, log_dir)
        figures["llama_server"] = result
        for run in figures["runs"]:
            agree = compare([normalized(a) for a in run["answers"]], result["answers"])
            run["vs_llama_server"] = agree
            run["ratio"] = run["newsletter_s"] / result["newsletter_s"]
    if not args.skip_floor:
        peer_out = figures.get("llama_server")
        n = len(items)
        prompt = round(peer_out["prompt_tokens"] / n) if peer_out else 116
        answer = round(peer_out["answer_tokens"] / n) if peer_out else 64
        figures["floor"] = floor_run(bins["llama-batched-bench"], model, args.threads, n, prompt, answer)

    figures["load_end"] = load()
    section("summary")
    print(f"CPU: {machine['model']} ({machine['cores']} cores; {' '.join(machine['flags'])})")
    print(f"load average: start {' '.join(map(str, figures['load_start']))}, end {' '.join(map(str, load()))}")
    peer_out = figures.get("llama_server")
    if peer_out:
        print(
            f"llama-server -np {peer_out['n_parallel']} -t {peer_out['threads']}: {peer_out['newsletter_s']:.1f} s "
            f"for {peer_out['items']} items, {peer_out['schema_valid']}/{peer_out['items']} schema-valid"
        )
    for run in figures["runs"]:
        line = (
            f"project --parallel {run['parallel']} --relevance-rule {run['relevance_rule']}: "
            f"{run['newsletter_s']:.1f} s for {run['items']} items"
        )
        if "ratio" in run:
            agree = run["vs_llama_server"]
            line += (
                f"; {run['ratio']:.2f}x llama-server (target <= 0.5); identical answers {agree['identical']}/"
                f"{agree['of']} (all but the score: {agree['identical_but_score']}/{agree['of']})"
            )
        print(line)
        if "ten_ratio" in run:
            print(
                f"  10 concurrent analyze_article / one 10-item analyze_newsletter: {run['ten_ratio']:.2f} "
                f"({run['ten_concurrent_s']:.1f} s / {run['ten_newsletter_s']:.1f} s; target <= 1.3)"
            )
        print(f"  initialize + tools/list after start: {run['tools_list_s']:.2f} s (target <= 1.5)")
    if "floor" in figures:
        f = figures["floor"]
        print(f"floor (llama-batched-bench, no grammar, no LoRA): {f['total_s']:.1f} s")
        for run in figures["runs"]:
            times = run["newsletter_s"] / f["total_s"]
            print(f"  project --parallel {run['parallel']} {run['relevance_rule']}: {times:.2f}x the floor")
    print(f"logs: {log_dir}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"figures: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
