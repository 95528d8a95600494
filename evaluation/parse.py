"""Generated text -> a record of the four task fields, by the study's validity rule (docs/metrics.md §1).

A prediction is valid when a JSON object holding the task keys can be parsed from the generated text: the
whole text first, otherwise the first object embedded in it (a base model often writes prose around its
JSON) that holds at least one task key. Invalid predictions are not skipped: they become the empty record
(relevance 0, empty summary and lists) and are scored like any other. A task key missing from a valid object
counts as empty. References are parsed strictly: a reference that is not a JSON object is an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from schemas import ANALYSIS_KEYS

Record = dict[str, Any]
"""{"relevance_score": number, "summary": str, "key_insights": list[str], "company_names": list[str]}."""

LIST_FIELDS = ("key_insights", "company_names")


def empty_record() -> Record:
    """What an invalid prediction is scored as."""
    return {"relevance_score": 0, "summary": "", "key_insights": [], "company_names": []}


@dataclass(frozen=True)
class Parsed:
    record: Record
    valid: bool


def _number(value: Any) -> int | float:
    """A relevance score as a number; anything unreadable counts as 0 (like a missing score)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return 0
    return 0


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _strings(value: Any) -> list[str]:
    """A list field as a list of strings: a lone string is a one-item list, other values are dropped."""
    if isinstance(value, str):
        return [value] if value else []
    if not isinstance(value, list):
        return []
    items = [item for item in value if item is not None]
    return [item if isinstance(item, str) else json.dumps(item, ensure_ascii=False) for item in items]


def to_record(obj: dict[str, Any]) -> Record:
    """The four task fields of a parsed object, missing or mistyped ones as empty."""
    return {
        "relevance_score": _number(obj.get("relevance_score", 0)),
        "summary": _text(obj.get("summary", "")),
        "key_insights": _strings(obj.get("key_insights", [])),
        "company_names": _strings(obj.get("company_names", [])),
    }


def _holds_task_keys(obj: Any) -> bool:
    return isinstance(obj, dict) and any(key in obj for key in ANALYSIS_KEYS)


def find_object(text: str) -> dict[str, Any] | None:
    """The JSON object with task keys in `text`: the whole text, else the first embedded one."""
    stripped = text.strip()
    try:
        whole = json.loads(stripped)
    except (json.JSONDecodeError, RecursionError):
        whole = None
    if _holds_task_keys(whole):
        return whole
    decoder = json.JSONDecoder()
    start = stripped.find("{")
    while start != -1:
        try:
            obj, _ = decoder.raw_decode(stripped, start)
        except (json.JSONDecodeError, RecursionError):
            obj = None
        if _holds_task_keys(obj):
            return obj
        start = stripped.find("{", start + 1)
    return None


def parse_prediction(text: str | None) -> Parsed:
    """A prediction's record and whether it was valid; never raises."""
    obj = find_object(text) if isinstance(text, str) else None
    if obj is None:
        return Parsed(empty_record(), False)
    return Parsed(to_record(obj), True)


def parse_reference(text: str) -> Record:
    """A reference answer (the assistant message); raises ValueError when it is not a JSON object."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"reference answer is not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"reference answer is a JSON {type(obj).__name__}, not an object")
    return to_record(obj)
