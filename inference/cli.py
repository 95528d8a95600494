"""`news-enhancer analyze`: one article or a whole newsletter from a file or stdin, without an MCP client.

Model options come from the one table (`inference.options`). Logs and progress go to stderr; stdout
carries only the result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, TextIO

from inference.options import add_log_level, add_model_options, setup_logging

NEWSLETTER_FORMATS = ("auto", "tldr", "html", "markdown", "text")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="news-enhancer analyze", description="Analyze one article (default) or a newsletter (--newsletter)."
    )
    parser.add_argument("file", nargs="?", default="-", help="input file; - or nothing reads stdin")
    parser.add_argument("--newsletter", action="store_true", help="the input is a whole newsletter")
    parser.add_argument("--format", choices=("json", "markdown"), default="json", help="output format")
    parser.add_argument("--title", help="article title (default: the input's first line)")
    parser.add_argument("--url", help="article url, returned as given")
    parser.add_argument(
        "--newsletter-format", default="auto", choices=NEWSLETTER_FORMATS, help="how the newsletter is written"
    )
    parser.add_argument("--source", help="newsletter name, when the text does not say")
    add_model_options(parser)
    add_log_level(parser)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level or "WARNING")
    out = _private_stdout()
    try:
        text = _read_input(args.file)
    except OSError as exc:
        print(f"news-enhancer analyze: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1

    from inference.analyzer import Analyzer
    from inference.engine import EngineError
    from inference.options import engine_config, engine_factory
    from ingest.report import render_item_markdown

    started = time.perf_counter()
    try:
        config, make_engine = engine_config(args), engine_factory(args)
        analyzer = Analyzer(config, engine=make_engine(config) if make_engine else None, max_items=args.max_items)
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
