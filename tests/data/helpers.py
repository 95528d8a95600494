"""Build small datasets in the training format from the committed fixture, varying what a test needs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

FIXTURE = Path(__file__).parents[1] / "fixtures" / "train_sample.jsonl"


def fixture_rows() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]


def make_row(item_id: str, date: str, title: str | None = None, content: str | None = None, base: int = 0) -> dict:
    """A copy of fixture row `base` with a new item id and date (and optionally another title/content)."""
    row = copy.deepcopy(fixture_rows()[base])
    row["metadata"]["item_id"] = item_id
    row["metadata"]["email_date"] = date
    if title is not None or content is not None:
        title = title if title is not None else row["metadata"]["article_title"]
        content = content if content is not None else row["metadata"]["truncated_content"]
        from data.prompts import render_prompt

        row["messages"][0]["content"] = render_prompt(title, content)
        row["metadata"]["article_title"] = title
        row["metadata"]["truncated_content"] = content
    return row


def write_rows(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path
