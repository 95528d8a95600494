"""`news-enhancer serve` (the MCP server over stdio) and `news-enhancer analyze` (one article or newsletter).

Every model option is a flag with an environment variable (the flag wins), so an MCP client's
config can set either. Logs and progress go to stderr; stdout carries only the protocol (serve)
or the result (analyze).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

MULTI_COMMAND = True


@dataclass(frozen=True)
class Option:
    flag: str
    env: str
    type: type
    help: str
    default: Any = None


MODEL_OPTIONS = (
    Option("--model", "NEWS_ENHANCER_MODEL", str, "GGUF model file (default: the embedded Gemma 3 270M)"),
    Option("--lora", "NEWS_ENHANCER_LORA", str, "GGUF LoRA adapter applied on top of --model"),
    Option("--lora-scale", "NEWS_ENHANCER_LORA_SCALE", float, "LoRA strength", 1.0),
    Option("--threads", "NEWS_ENHANCER_THREADS", int, "CPU threads (default: min(2, CPUs))"),
    Option("--gpu-layers", "NEWS_ENHANCER_GPU_LAYERS", int, "layers offloaded to a GPU build (-1: all)", 0),
    Option("--ctx", "NEWS_ENHANCER_CTX", int, "context tokens per item (prompt + answer)", 2048),
    Option("--chat-format", "NEWS_ENHANCER_CHAT_FORMAT", str, "chat turns of the model family: gemma, llama3", "gemma"),
    Option("--max-tokens", "NEWS_ENHANCER_MAX_TOKENS", int, "answer token budget per item", 320),
    Option("--parallel", "NEWS_ENHANCER_PARALLEL", int, "items decoded together", 3),
    Option("--max-items", "NEWS_ENHANCER_MAX_ITEMS", int, "items analyzed per newsletter", 40),
    Option("--log-level", "NEWS_ENHANCER_LOG_LEVEL", str, "DEBUG, INFO, WARNING or ERROR", None),
)


def _parser(command: str) -> argparse.ArgumentParser:
    if command == "serve":
        parser = argparse.ArgumentParser(
            prog="news-enhancer serve",
            description="Run the MCP server over stdio (tools analyze_article, "
            "analyze_newsletter). The model loads in the background; clients can list tools at once.",
        )
    else:
        parser = argparse.ArgumentParser(
            prog="news-enhancer analyze", description="Analyze one article (default) or a newsletter (--newsletter)."
        )
        parser.add_argument("file", nargs="?", default="-", help="input file; - or nothing reads stdin")
        parser.add_argument("--newsletter", action="store_true", help="the input is a whole newsletter")
        parser.add_argument("--format", choices=("json", "markdown"), default="json", help="output format")
        parser.add_argument("--title", help="article title (default: the input's first line)")
        parser.add_argument("--url", help="article url, returned as given")
        parser.add_argument(
            "--newsletter-format",
            default="auto",
            choices=("auto", "tldr", "html", "markdown", "text"),
            help="how the newsletter is written",
        )
        parser.add_argument("--source", help="newsletter name, when the text does not say")
    for opt in MODEL_OPTIONS:
        env = os.environ.get(opt.env)
        try:
            default = opt.type(env) if env not in (None, "") else opt.default
        except ValueError:
            parser.error(f"{opt.env}={env!r} is not a valid {opt.type.__name__}")
        parser.add_argument(opt.flag, type=opt.type, default=default, help=f"{opt.help} [env {opt.env}]")
    parser.add_argument(
        "--no-default-lora",
        action="store_true",
        default=os.environ.get("NEWS_ENHANCER_NO_DEFAULT_LORA", "") not in ("", "0", "false"),
        help="serve the plain embedded base model, without the shipped news adapter "
        "(which applies only when neither --model nor --lora is given) [env NEWS_ENHANCER_NO_DEFAULT_LORA=1]",
    )
    return parser


def _config(args: argparse.Namespace):
    from mcp_server.engine import EngineConfig
    from mcp_server.models import resolve_model_files

    model, lora = resolve_model_files(args.model, args.lora, default_lora=not args.no_default_lora)
    return EngineConfig(
        model_path=model,
        lora_path=lora,
        lora_scale=args.lora_scale,
        n_threads=args.threads,
        n_gpu_layers=args.gpu_layers,
        n_ctx=args.ctx,
        chat_format=args.chat_format,
        max_tokens=args.max_tokens,
        n_parallel=args.parallel,
    )


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr, level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if level.upper() != "DEBUG":
        logging.getLogger("llama_cpp").setLevel(logging.ERROR)  # llama.cpp's load chatter is noise here


def main(argv: list[str]) -> int:
    command, rest = argv[0], argv[1:]
    args = _parser(command).parse_args(rest)
    if command == "serve":
        return serve(args)
    return analyze(args)


def serve(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level or "INFO")
    from mcp_server.server import AnalyzerService, build_server

    build_server(AnalyzerService(lambda: _config(args), args.max_items)).run("stdio")
    return 0


def analyze(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level or "WARNING")
    out = _private_stdout()
    try:
        text = _read_input(args.file)
    except OSError as exc:
        print(f"news-enhancer analyze: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1

    from mcp_server.analyzer import Analyzer
    from mcp_server.engine import EngineError
    from mcp_server.report import render_item_markdown

    analyzer = Analyzer(_config(args), max_items=args.max_items)
    started = time.perf_counter()
    try:
        if args.newsletter:
            result = analyzer.analyze_newsletter(text, args.newsletter_format, args.source, on_item=_progress)
            rendered = result["markdown"] if args.format == "markdown" else _json(result)
        else:
            title, content = _split_article(text, args.title)
            result = analyzer.analyze_item(title, content, args.url)
            rendered = render_item_markdown(result, level=1) if args.format == "markdown" else _json(result)
    except (ValueError, EngineError) as exc:
        print(f"news-enhancer analyze: {exc}", file=sys.stderr)
        return 1
    print(f"done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    out.write(rendered if rendered.endswith("\n") else rendered + "\n")
    out.flush()
    return 0


def _json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=2)


def _read_input(path: str) -> str:
    if path == "-":
        return sys.stdin.buffer.read().decode("utf-8", errors="replace")
    with open(path, "rb") as f:
        return f.read().decode("utf-8", errors="replace")


def _split_article(text: str, title: str | None) -> tuple[str, str]:
    """(title, content): --title and the whole text, or the first non-empty line and the rest."""
    if title is not None:
        return title, text
    lines = text.strip().splitlines()
    return (lines[0].strip(), "\n".join(lines[1:]).strip()) if lines else ("", "")


def _progress(done: int, total: int, result: dict[str, Any], seconds: float) -> None:
    print(
        f"[{done}/{total}] {seconds:5.1f} s  {result['relevance_score']:>2}/10  {result['title'][:70]}", file=sys.stderr
    )


def _private_stdout() -> TextIO:
    """The result's own handle on stdout; fd 1 then points at stderr, so stray C-level prints from
    llama.cpp can never mix into the output."""
    sys.stdout.flush()
    try:
        private = os.dup(1)
        os.dup2(2, 1)
    except OSError:
        return sys.stdout
    sys.stdout = sys.stderr
    return os.fdopen(private, "w", encoding="utf-8", closefd=True)
