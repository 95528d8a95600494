"""Load and check a training dataset in the news_train.jsonl format.

One JSON object per line: `messages` (a user prompt and an assistant answer) and optional `metadata`.
Every answer must parse as JSON and validate against the `article_analysis` schema, because that is
what serving constrains the model to; a bad line is reported with its line number, never skipped
silently. Duplicates (same normalized title + content) and leakage between two files are found here
too, since both inflate dev scores without anyone noticing.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import schemas
from data.prompts import is_sponsored_item, shown_prompt

_TITLE_CONTENT = re.compile(r"^Title: (?P<title>.*)\nContent: (?P<content>.*?)\n\nProvide a JSON", re.DOTALL)


_TRAILING_HEADINGS = re.compile(r"(\n\s*(#[^\n]*|\W*))+\Z")
"""Trailing lines that are Markdown headings or carry no word character (emoji, "**")."""


class DatasetError(ValueError):
    """A dataset failed validation; `problems` holds one "line N: ..." string per problem."""

    def __init__(self, path: str | Path, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{path}: {len(problems)} problem(s)\n{shown}{more}")


@dataclass
class Record:
    """One validated example."""

    line: int
    """1-based line number in the source file (for error messages and reports)."""
    prompt: str
    """The user message: the raw task prompt, without chat-format markers."""
    answer: str
    """The assistant message as written in the file (a JSON object string)."""
    analysis: dict[str, Any]
    """The parsed answer."""
    metadata: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] | None = field(default=None, repr=False)
    """The whole JSON object of the line (kept so split files are written back unchanged)."""

    @property
    def item_id(self) -> str:
        return str(self.metadata.get("item_id") or f"line{self.line}")

    @property
    def email_id(self) -> str:
        """Items of one email share the part of `item_id` before the last underscore."""
        item_id = self.item_id
        return item_id.rsplit("_", 1)[0] if "_" in item_id else item_id

    @property
    def title(self) -> str:
        if "article_title" in self.metadata:
            return str(self.metadata["article_title"])
        match = _TITLE_CONTENT.search(self.prompt)
        return match["title"] if match else ""

    @property
    def full_content(self) -> str:
        """All of the item's text: `original_content` without the next section's heading that the
        data's extraction left at its end (e.g. "🧠\n\n# **Research & Innovation**"), else `content`."""
        original = str(self.metadata.get("original_content") or "").strip()
        return _TRAILING_HEADINGS.sub("", original) if original else self.content

    def shown_prompt(self, content_chars: int = 0) -> str:
        """The user prompt showing `content_chars` of the item's text (`prepare_content`); 0: the data's
        own prompt, byte for byte (the first sentence). Training, evaluation and serving cut alike."""
        return shown_prompt(self.prompt, self.full_content, self.is_sponsored, content_chars)

    @property
    def is_sponsored(self) -> bool:
        return is_sponsored_item(self.title, bool(self.metadata.get("is_sponsored")))

    @property
    def content(self) -> str:
        """The content the prompt shows (the truncated content for the news data)."""
        match = _TITLE_CONTENT.search(self.prompt)
        if match:
            return match["content"]
        return str(self.metadata.get("truncated_content") or self.metadata.get("original_content") or "")


def _check_line(number: int, text: str) -> tuple[Record | None, list[str]]:
    """Parse one line; returns the record or the problems found (each prefixed with the line number)."""
    where = f"line {number}"
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, [f"{where}: not valid JSON ({exc.msg} at column {exc.colno})"]
    if not isinstance(obj, dict):
        return None, [f"{where}: expected a JSON object, got {type(obj).__name__}"]
    messages = obj.get("messages")
    if not isinstance(messages, list):
        return None, [f"{where}: missing 'messages' list"]
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    if roles != ["user", "assistant"]:
        return None, [f"{where}: 'messages' must be [user, assistant], got roles {roles}"]
    prompt, answer = messages[0].get("content"), messages[1].get("content")
    problems = []
    if not isinstance(prompt, str) or not prompt.strip():
        problems.append(f"{where}: user message has no text content")
    if not isinstance(answer, str):
        return None, [*problems, f"{where}: assistant message has no text content"]
    try:
        analysis = json.loads(answer)
    except json.JSONDecodeError as exc:
        return None, [*problems, f"{where}: assistant answer is not valid JSON ({exc.msg} at column {exc.colno})"]
    problems += [f"{where}: answer {e}" for e in schemas.errors("article_analysis", analysis)]
    metadata = obj.get("metadata", {})
    if not isinstance(metadata, dict):
        problems.append(f"{where}: 'metadata' must be an object")
        metadata = {}
    if problems:
        return None, problems
    return Record(number, prompt, answer, analysis, metadata, obj), []


def read_records(path: str | Path) -> tuple[list[Record], list[str]]:
    """All valid records and all problems (with line numbers) of a JSONL file; blank lines are ignored."""
    path = Path(path)
    records: list[Record] = []
    problems: list[str] = []
    seen_ids: dict[str, int] = {}
    with open(path, encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            record, line_problems = _check_line(number, text)
            problems += line_problems
            if record is None:
                continue
            if "item_id" in record.metadata:
                if record.item_id in seen_ids:
                    problems.append(
                        f"line {number}: item_id {record.item_id!r} already used on line {seen_ids[record.item_id]}"
                    )
                    continue
                seen_ids[record.item_id] = number
            records.append(record)
    return records, problems


def load_dataset(path: str | Path) -> list[Record]:
    """The records of a JSONL file; raises DatasetError listing every problem when any line is bad."""
    records, problems = read_records(path)
    if problems:
        raise DatasetError(path, problems)
    if not records:
        raise DatasetError(path, ["the file holds no examples"])
    return records


def normalize_text(text: str) -> str:
    """Case-, whitespace- and Markdown-insensitive form used to compare items."""
    text = text.lower().replace("**", "")
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


def item_key(record: Record) -> str:
    """Identity of an item for duplicate and leakage checks: normalized title + content."""
    return normalize_text(record.title) + "\x00" + normalize_text(record.content)


def find_duplicates(records: Iterable[Record]) -> list[list[Record]]:
    """Groups (2+ records each) that share the same normalized title and content."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(item_key(record), []).append(record)
    return [group for group in groups.values() if len(group) > 1]


def find_leakage(train: Iterable[Record], other: Iterable[Record]) -> list[tuple[Record, Record]]:
    """Pairs (train record, other record) with the same item, by normalized title+content or item_id."""
    by_key: dict[str, Record] = {}
    by_id: dict[str, Record] = {}
    for record in train:
        by_key.setdefault(item_key(record), record)
        if "item_id" in record.metadata:
            by_id.setdefault(record.item_id, record)
    pairs = []
    for record in other:
        match = by_key.get(item_key(record)) or (by_id.get(record.item_id) if "item_id" in record.metadata else None)
        if match is not None:
            pairs.append((match, record))
    return pairs


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file (data or model), recorded in manifests so an artifact names exactly what made it.

    The one hashing helper of the project; it sits here, at the bottom, so every stage can use it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def record_to_json(record: Record) -> dict[str, Any]:
    """The record in the file format again (the original object when it was read from a file)."""
    if record.raw is not None:
        return record.raw
    out: dict[str, Any] = {
        "messages": [{"role": "user", "content": record.prompt}, {"role": "assistant", "content": record.answer}]
    }
    if record.metadata:
        out["metadata"] = record.metadata
    return out


def write_records(records: Iterable[Record], path: str | Path) -> int:
    """Write records as JSONL, one original object per line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record_to_json(record), ensure_ascii=False) + "\n")
            count += 1
    return count
