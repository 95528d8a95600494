"""Markdown for people (and NotebookLM): one analyzed item, or a whole newsletter report.

Works on the plain dicts the tools return (ArticleResult, NewsletterReport; see schemas/). A report has
a header with counts, the items in relevance bands (each with its own text from the newsletter, cut at a
sentence boundary, and the model's summary when it wrote one), the sponsored items in a section of their
own at the end, and an index of the companies and tags with the items they appear in.

Marks: *Sponsored*; **⚠ Incomplete answer** when the model's answer hit the token budget and was closed
with empty values (`complete` false); *Model saw part of the text* when the input was cut to the prompt
budget (`truncated`).

Bands, by `relevance["expected"]` (the mean of the model's score distribution) when the engine read it,
else by `relevance_score`: **high** 8 and up, **medium** 5 to under 8, **low** under 5 (and unscored).
Within a band, items are sorted by that value, highest first; ties keep newsletter order.

Text that came from a newsletter is escaped only where Markdown would read it as markup (so a title
such as "C++ [beta] *new*" cannot break the layout, while "2025-03-14" or "snake_case" stay as they
are), and only http(s) urls become links.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TEXT_CHARS = 400
"""Most characters of an item's own text shown in a report (cut at a sentence boundary)."""
HIGH, MEDIUM = 8.0, 5.0
"""Band floors: high >= 8, medium >= 5, low below 5."""
BANDS = (
    ("High relevance", "8–10", HIGH),
    ("Medium relevance", "5–7.9", MEDIUM),
    ("Low relevance", "under 5", float("-inf")),
)
PLACEHOLDER_SUMMARIES = {"sponsored ad"}
"""Summaries the training data gives every ad; the Sponsored section already says so."""

# Inline markup, escaped wherever it appears: a backslash that would escape the next character, code
# spans, emphasis with *, link brackets, an underscore that can open or close emphasis (one between two
# letters or digits cannot), the start of an HTML tag or autolink, an entity reference, and the
# trailing #s that a heading would drop.
_INLINE = re.compile(
    r"\\(?=[!-/:-@\[-`{-~])"
    r"|[`*\[\]]"
    r"|(?<![^\W_])_|_(?![^\W_])"
    r"|<(?=[A-Za-z/!?])"
    r"|&(?=#?\w+;)"
    r"|(?<=\s)#(?=#*\s*$)"
)
# What would start a block at the start of a line: a heading, a list item, a quote, a thematic break.
_BLOCK_START = re.compile(r"^(?:(#{1,6}(?=\s|$)|[-+](?=\s|$)|>)|(\d{1,9})([.)])(?=\s|$))")
_THEMATIC_BREAK = re.compile(r"^(?:[-_*]\s*){3,}$")
_URL_UNSAFE = {" ": "%20", "(": "%28", ")": "%29", "<": "%3C", ">": "%3E", "\\": "%5C"}


def escape(text: Any, *, start: bool = True) -> str:
    """One line of inline Markdown showing `text` literally (newlines become spaces).

    `start=False` where the text follows other text on its line (after a label, in a heading or a link),
    so that what only matters at the start of a line ("1. ", "- ", "#") is left alone."""
    text = " ".join(str(text).split())
    text = _INLINE.sub(lambda m: "\\" + m.group(0), text)
    if text.count("~") >= 2:  # strikethrough needs a pair
        text = text.replace("~", "\\~")
    if not start:
        return text
    if _THEMATIC_BREAK.match(text):
        return "\\" + text
    match = _BLOCK_START.match(text)
    if match and match.group(1):
        return "\\" + text
    if match:
        return f"{match.group(2)}\\{text[len(match.group(2)) :]}"
    return text


def _inline(text: Any) -> str:
    return escape(text, start=False)


def link(text: Any, url: Any) -> str:
    """`[text](url)` for an http(s) url; the escaped text alone for anything else (javascript:, None)."""
    label = _inline(text) or "untitled"
    if not isinstance(url, str) or not re.match(r"https?://[^\s/]", url.strip(), re.IGNORECASE):
        return label
    target = "".join(_URL_UNSAFE.get(c, c) for c in url.strip())
    return f"[{label}]({target})"


# --- the item's own text --------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*(?=\s)")
_ABBREVIATION = re.compile(r"(?:\b[A-Za-z]|\be\.g|\bi\.e|\bvs|\bMr|\bMs|\bDr|\bInc|\bLtd|\bCo|\bSt|\bNo|\bJr|\bSr)\.$")


def excerpt(text: Any, limit: int = TEXT_CHARS) -> str:
    """`text` on one line, at most about `limit` characters: cut after the last sentence that fits (at a
    word when no sentence ends in the first third), with " …" when something was left out."""
    text = " ".join(str(text or "").split())
    if len(text) <= limit:
        return text
    ends = [
        m.end()
        for m in _SENTENCE_END.finditer(text, 0, limit + 1)
        if m.end() >= limit // 3 and not _ABBREVIATION.search(text[: m.start() + 1])
    ]
    if ends:
        return text[: ends[-1]] + " …"
    head = text[:limit]
    return (head.rsplit(" ", 1)[0] if " " in head else head).rstrip(" ,;:") + " …"


# --- values read from an ArticleResult -------------------------------------------------------------------


def _score(result: Mapping[str, Any]) -> int:
    score = result.get("relevance_score")
    return score if isinstance(score, int) and not isinstance(score, bool) else 0


def _expected(result: Mapping[str, Any]) -> float | None:
    relevance = result.get("relevance")
    value = relevance.get("expected") if isinstance(relevance, Mapping) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def relevance_value(result: Mapping[str, Any]) -> float:
    """What items are sorted and banded by: the expected score when known, else the score (0: unscored)."""
    expected = _expected(result)
    return expected if expected is not None else float(_score(result))


def band(result: Mapping[str, Any]) -> str:
    """ "High relevance", "Medium relevance" or "Low relevance" (see the module docstring)."""
    value = round(relevance_value(result), 1)  # as the report shows it: 7.96 is "8.0", high
    return next(name for name, _, floor in BANDS if value >= floor)


def is_incomplete(result: Mapping[str, Any]) -> bool:
    """True when the model's answer hit the token budget and was closed with filler values."""
    return result.get("complete") is False or bool(result.get("incomplete_reason"))


def _names(values: Any) -> str:
    if not isinstance(values, list) or not values:
        return "—"
    return ", ".join(_inline(v) for v in values)


def _summary(result: Mapping[str, Any]) -> str:
    summary = " ".join(str(result.get("summary") or "").split())
    if result.get("is_sponsored") and summary.casefold().rstrip(".") in PLACEHOLDER_SUMMARIES:
        return ""
    return summary


def _marks(result: Mapping[str, Any]) -> str:
    score = _score(result)
    marks = [f"**{score}/10**" if score else "**unscored**"]
    relevance = result.get("relevance")
    expected = _expected(result)
    if expected is not None and isinstance(relevance, Mapping):
        confidence = relevance.get("confidence")
        sure = f", confidence {confidence:.0%}" if isinstance(confidence, int | float) else ""
        marks[0] += f" (expected {expected:.1f}{sure})"
    if result.get("is_sponsored"):
        marks.append("*Sponsored*")
    if is_incomplete(result):
        reason = " (hit the token budget)" if result.get("incomplete_reason") == "max_tokens" else ""
        marks.append(f"**⚠ Incomplete answer**{reason}: missing fields are empty")
    if result.get("truncated"):
        marks.append("*Model saw part of the text*")
    return " · ".join(marks)


def render_item_markdown(result: Mapping[str, Any], *, index: int | None = None, level: int = 3) -> str:
    """One ArticleResult as a Markdown section: linked title; score and marks; the item's own text (when
    the result carries it, as `content`); the model's summary; tags; companies."""
    number = f"{index}. " if index is not None else ""
    lines = [f"{'#' * level} {number}{link(result.get('title', ''), result.get('url'))}", "", _marks(result), ""]
    text = excerpt(result.get("content"))
    if text:
        lines += [escape(text), ""]
    summary = _summary(result)
    if summary:
        lines += [f"**Summary:** {_inline(summary)}", ""]
    lines.append(f"- **Tags:** {_names(result.get('key_insights'))}")
    lines.append(f"- **Companies:** {_names(result.get('company_names'))}")
    return "\n".join(lines) + "\n"


# --- the index of companies and tags -------------------------------------------------------------------


@dataclass
class IndexEntry:
    """One company or tag: the name as first seen, and the items it appears in (once each)."""

    name: str
    refs: list[Any] = field(default_factory=list)


INDEX_KEYS = (("Companies", "company_names"), ("Tags", "key_insights"))


def build_index(items: Iterable[tuple[Mapping[str, Any], Any]], key: str) -> list[IndexEntry]:
    """Index the (result, ref) pairs by the names in `result[key]`: names that differ only in case are one
    entry; most items first, ties in order of first appearance."""
    entries: dict[str, IndexEntry] = {}
    for result, ref in items:
        values = result.get(key)
        if not isinstance(values, list):
            continue
        seen: set[str] = set()
        for value in values:
            name = " ".join(str(value).split())
            folded = name.casefold()
            if not name or folded in seen:
                continue
            seen.add(folded)
            entries.setdefault(folded, IndexEntry(name)).refs.append(ref)
    return sorted(entries.values(), key=lambda e: -len(e.refs))  # stable: ties keep first appearance


def render_index(
    items: Sequence[tuple[Mapping[str, Any], Any]],
    show: Callable[[Any], str],
    *,
    level: int = 2,
    title: str = "Index",
    intro: str = "",
    limit: int | None = None,
    max_refs: int | None = None,
    sep: str = ", ",
    once_each: bool = False,
) -> list[str]:
    """Markdown lines: a `title` heading, then companies and tags, each `- **Name** (count): refs`, where
    `show` renders one ref (an item number, a linked title). At most `limit` names per list and
    `max_refs` refs per name (the count is always the full one); `once_each` puts the names of a single
    item on one closing line (`Name #ref, ...`). Empty when no item has either."""
    sections = []
    for heading, key in INDEX_KEYS:
        entries = build_index(items, key)
        if not entries:
            continue
        shown = entries[:limit] if limit else entries
        singles = [e for e in shown if len(e.refs) == 1] if once_each else []
        lines = [f"{'#' * (level + 1)} {heading}", ""]
        for entry in shown[: len(shown) - len(singles)]:
            refs = entry.refs[:max_refs] if max_refs else entry.refs
            more = f"{sep}… {len(entry.refs) - len(refs)} more" if len(refs) < len(entry.refs) else ""
            lines.append(f"- **{_inline(entry.name)}** ({len(entry.refs)}): {sep.join(map(show, refs))}{more}")
        if singles:
            lines.append("- **Once each:** " + ", ".join(f"{_inline(e.name)} #{show(e.refs[0])}" for e in singles))
        if len(shown) < len(entries):
            rest = entries[len(shown) :]
            lines.append(f"- … {len(rest)} more, each in {len(rest[0].refs)} item(s) or fewer")
        sections += lines + [""]
    if not sections:
        return []
    return [f"{'#' * level} {title}", "", *([intro, ""] if intro else []), *sections]


# --- the newsletter report -----------------------------------------------------------------------------


def rank(items: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Highest relevance first; sorted() is stable, so ties keep newsletter order."""
    return sorted(items, key=lambda item: -relevance_value(item))


def _counts(items: Sequence[Mapping[str, Any]]) -> list[str]:
    """The header's count lines."""
    editorial = [item for item in items if not item.get("is_sponsored")]
    per_band = {name: sum(band(item) == name for item in editorial) for name, _, _ in BANDS}
    parts = [f"{per_band[name]} {name.split()[0].lower()} ({span})" for name, span, _ in BANDS]
    sponsored = len(items) - len(editorial)
    lines = [f"- **By relevance:** {', '.join(parts)}; {sponsored} sponsored"]
    incomplete = sum(map(is_incomplete, items))
    if incomplete:
        lines.append(f"- **Incomplete answers:** {incomplete} (marked ⚠ below)")
    return lines


def render_markdown(report: Mapping[str, Any]) -> str:
    """A NewsletterReport as Markdown: header with counts, notes, the items in relevance bands, the
    sponsored items, then the index of companies and tags (by item number)."""
    subject = report.get("subject")
    lines = [f"# {_inline(subject) if subject else 'Newsletter report'}", ""]
    for label, key in (("Source", "source"), ("Date", "date"), ("Format", "format")):
        if report.get(key):
            lines.append(f"- **{label}:** {_inline(report[key])}")
    items = [item for item in report.get("items") or [] if isinstance(item, Mapping)]
    found = report.get("items_found")
    counted = f"{len(items)} analyzed" + (f" of {found} found" if isinstance(found, int) else "")
    lines.append(f"- **Items:** {counted}")
    if items:
        lines += _counts(items)
    lines.append("")
    notes = [escape(note) for note in report.get("notes") or [] if str(note).strip()]
    if notes:
        lines += ["> **Notes**", ">"] + [f"> - {note}" for note in notes] + [""]
    if not items:
        lines.append("*No items found.*")
        return "\n".join(lines) + "\n"

    numbered: list[tuple[Mapping[str, Any], int]] = []
    editorial = rank(item for item in items if not item.get("is_sponsored"))
    if editorial:
        lines += ["## Items by relevance", ""]
        for name, span, _ in BANDS:
            members = [item for item in editorial if band(item) == name]
            if not members:
                continue
            lines += [f"### {name} ({span}): {len(members)} item{'s' if len(members) != 1 else ''}", ""]
            for item in members:
                numbered.append((item, len(numbered) + 1))
                lines.append(render_item_markdown(item, index=len(numbered), level=4))
    sponsored = [item for item in items if item.get("is_sponsored")]  # newsletter order
    if sponsored:
        lines += [f"## Sponsored: {len(sponsored)} item{'s' if len(sponsored) != 1 else ''}", ""]
        for item in sponsored:
            numbered.append((item, len(numbered) + 1))
            lines.append(render_item_markdown(item, index=len(numbered), level=3))
    intro = (
        "Companies and tags of the items above (sponsored items left out), most items first, with the "
        "numbers of the items they appear in."
    )
    editorial_numbers = [pair for pair in numbered if not pair[0].get("is_sponsored")]
    lines += render_index(editorial_numbers, str, intro=intro, once_each=True)
    return "\n".join(lines).rstrip() + "\n"
