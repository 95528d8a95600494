"""Markdown for people: one analyzed item, or a whole newsletter report with its items by relevance.

Works on the plain dicts the tools return (ArticleResult, NewsletterReport; see schemas/). Text
that came from a newsletter is escaped, so a title such as "C++ [beta] *new*" cannot break the
layout, and only http(s) urls become links.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_SPECIAL = re.compile(r"([\\`*_\[\]<>~|])")
_LINE_START = re.compile(r"^(\d*)([#+-]|[.)](?=\s))")  # would start a heading or a list
_URL_UNSAFE = {" ": "%20", "(": "%28", ")": "%29", "<": "%3C", ">": "%3E", "\\": "%5C"}


def escape(text: Any) -> str:
    """One line of inline Markdown showing `text` literally (newlines become spaces)."""
    text = " ".join(str(text).split())
    text = _SPECIAL.sub(r"\\\1", text)
    return _LINE_START.sub(r"\1\\\2", text)


def link(text: Any, url: Any) -> str:
    """`[text](url)` for an http(s) url; the escaped text alone for anything else (javascript:, None)."""
    label = escape(text) or "untitled"
    if not isinstance(url, str) or not re.match(r"https?://[^\s/]", url.strip(), re.IGNORECASE):
        return label
    target = "".join(_URL_UNSAFE.get(c, c) for c in url.strip())
    return f"[{label}]({target})"


def _score(result: Mapping[str, Any]) -> int:
    score = result.get("relevance_score")
    return score if isinstance(score, int) and not isinstance(score, bool) else 0


def _names(values: Any) -> str:
    if not isinstance(values, list) or not values:
        return "—"
    return ", ".join(escape(v) for v in values)


def render_item_markdown(result: Mapping[str, Any], *, index: int | None = None, level: int = 3) -> str:
    """One ArticleResult as a Markdown section: linked title, score and marks, summary, tags, companies."""
    number = f"{index}. " if index is not None else ""
    lines = [f"{'#' * level} {number}{link(result.get('title', ''), result.get('url'))}", ""]
    score = _score(result)
    marks = [f"**{score}/10**" if score else "**unscored**"]
    if result.get("is_sponsored"):
        marks.append("*Sponsored*")
    if result.get("truncated"):
        marks.append("*Content truncated*")
    lines += [" · ".join(marks), ""]
    summary = escape(result.get("summary") or "")
    if summary:
        lines += [f"> {summary}", ""]
    lines.append(f"- **Tags:** {_names(result.get('key_insights'))}")
    lines.append(f"- **Companies:** {_names(result.get('company_names'))}")
    return "\n".join(lines) + "\n"


def render_markdown(report: Mapping[str, Any]) -> str:
    """A NewsletterReport as Markdown: header, notes, then the items by relevance (highest first, ties in
    newsletter order)."""
    subject = report.get("subject")
    lines = [f"# {escape(subject) if subject else 'Newsletter report'}", ""]
    for label, key in (("Source", "source"), ("Date", "date"), ("Format", "format")):
        if report.get(key):
            lines.append(f"- **{label}:** {escape(report[key])}")
    items = [item for item in report.get("items") or [] if isinstance(item, Mapping)]
    found = report.get("items_found")
    counted = f"{len(items)} analyzed" + (f" of {found} found" if isinstance(found, int) else "")
    lines += [f"- **Items:** {counted}", ""]
    notes = [escape(note) for note in report.get("notes") or [] if str(note).strip()]
    if notes:
        lines += ["> **Notes**", ">"] + [f"> - {note}" for note in notes] + [""]
    if not items:
        lines.append("*No items found.*")
        return "\n".join(lines) + "\n"
    lines += ["## Items by relevance", ""]
    ranked = sorted(items, key=lambda item: -_score(item))  # sorted() is stable: ties keep newsletter order
    for n, item in enumerate(ranked, 1):
        lines.append(render_item_markdown(item, index=n))
    return "\n".join(lines)
