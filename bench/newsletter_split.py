"""Splitting speed: seconds per newsletter for each fixture and for 1 MB inputs (HTML, Markdown, text, junk).

    .venv/bin/python bench/newsletter_split.py [--repeat 5]

Prints the median of --repeat runs for each input, with its size and the number of items found.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

from ingest.newsletter import split_newsletter

FIXTURES = Path(__file__).parents[1] / "tests" / "fixtures" / "newsletters"
MEGABYTE = 1_000_000


def _grow(text: str, size: int = MEGABYTE) -> str:
    return text * (size // len(text) + 1)


def inputs() -> dict[str, str]:
    found = {path.name: path.read_text(encoding="utf-8") for path in sorted(FIXTURES.iterdir())}
    page = found["tldr_ai.html"]
    head, body = page.split('<table class="document"', 1)
    found["tldr_ai.html x1MB"] = page.replace("</body>", _grow(body) + "</body>")
    found["newsletter.md x1MB"] = _grow(found["newsletter.md"])
    found["tldr_plain body x1MB"] = _grow(found["tldr_plain.txt"].split("\n\n", 1)[1])
    junk = random.Random(0).randbytes(MEGABYTE)
    found["random bytes 1MB (utf-8)"] = junk.decode("utf-8", errors="replace")
    found["random bytes 1MB (latin-1)"] = junk.decode("latin-1")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    split_newsletter("<p>warm-up</p>")
    print(f"{'input':<28} {'chars':>9} {'format':>9} {'items':>6} {'median s':>9}")
    for name, text in inputs().items():
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            newsletter = split_newsletter(text)
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        print(f"{name:<28} {len(text):>9} {newsletter.format:>9} {len(newsletter.items):>6} {median:>9.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
