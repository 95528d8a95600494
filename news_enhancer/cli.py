"""The `news-enhancer` console script: one table of subcommands, each owned by its package.

A subcommand's module is imported only when that subcommand runs, so `serve` never pays for
torch or matplotlib. Each module exposes `main(argv: list[str]) -> int` with its own argparse.
"""

from __future__ import annotations

import importlib
import os
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module with main(argv), one-line help)
    "serve": ("mcp_server.commands", "run the MCP server over stdio"),
    "analyze": ("inference.cli", "analyze an article or a newsletter from a file or stdin"),
    "data": ("data.cli", "validate, describe and split a training dataset"),
    "train": ("trainers.cli", "fine-tune a LoRA adapter (backends: hf, unsloth, tinker)"),
    "export": ("export.cli", "export an adapter to GGUF (LoRA or merged), quantize, check parity"),
    "eval": ("evaluation.cli", "run, score and compare evaluations; the publish gate"),
    "workflow": ("workflows.cli", "Gmail -> analyze -> Google Drive reports"),
    "split": ("ingest.cli", "show how a newsletter is split into items, as JSON (no model)"),
}


def usage() -> str:
    lines = ["usage: news-enhancer COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `news-enhancer COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"news-enhancer: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.main(rest) or 0)
    except BrokenPipeError:
        # The reader went away (`... | head`): not an error worth a traceback. Python's documented
        # remedy: point stdout at devnull so the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
