"""`news-enhancer serve`: the MCP server over stdio.

Every model option comes from the one table (`inference.options`), so an MCP client's config can set
a flag or its environment variable (the flag wins). Logs go to stderr; stdout carries only the protocol.
"""

from __future__ import annotations

import argparse
import sys

from inference.options import add_log_level, add_model_options, setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="news-enhancer serve",
        description="Run the MCP server over stdio (tools analyze_article, "
        "analyze_newsletter). The model loads in the background; clients can list tools at once.",
    )
    add_model_options(parser)
    add_log_level(parser)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level or "INFO")
    from inference.options import engine_config, engine_factory
    from mcp_server.server import AnalyzerService, build_server

    try:
        engine = engine_factory(args)
    except ValueError as exc:
        print(f"news-enhancer serve: {exc}", file=sys.stderr)
        return 2
    build_server(AnalyzerService(lambda: engine_config(args), args.max_items, engine=engine)).run("stdio")
    return 0
