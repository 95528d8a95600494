"""`news-enhancer split FILE`: how a newsletter is split into items, as JSON. No model is loaded.

    news-enhancer split tests/fixtures/newsletters/tldr_ai.html
    news-enhancer split message.eml --format text      # the text/plain part of a multipart email
    cat newsletter.md | news-enhancer split -

FILE may be an HTML, Markdown or plain-text newsletter, or a whole RFC 822 email (.eml); "-" reads
standard input. Prints {"format", "source", "subject", "date", "items": [{title, content, url,
is_sponsored}, ...]}: exactly what the analyzer would analyze.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from ingest.newsletter import FORMATS, split_bytes


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="news-enhancer split", description="Show how a newsletter is split into items, as JSON (no model)."
    )
    p.add_argument("file", metavar="FILE", help='the newsletter or .eml file; "-" for standard input')
    p.add_argument(
        "--format", default="auto", choices=FORMATS, help="auto detects; the others force a carrier (default: auto)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as error:
        print(f"news-enhancer split: cannot read {args.file}: {error.strerror or error}", file=sys.stderr)
        return 2
    json.dump(asdict(split_bytes(data, args.format)), sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
