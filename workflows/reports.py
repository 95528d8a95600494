"""The Markdown the workflow writes: one report per newsletter (rendered by the MCP tools' own
report renderer, plus where the email came from) and a digest of the whole run."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ingest.report import (
    band,
    escape,
    excerpt,
    is_incomplete,
    link,
    relevance_value,
    render_index,
    render_markdown,
)

NAME_LIMIT = 80
"""Characters of the subject kept in a file name."""
UNSAFE_NAME_CHARS = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f]+')
TOP_ITEMS = 15
"""Items listed in the digest's "Top items", best first."""
TOP_MIN_SCORE = 7
TOP_COUNTS = 30
"""Companies and tags listed in the digest's "What is trending", most items first."""
TRENDING_REFS = 12
"""Items listed per company or tag in "What is trending" (the count covers all of them)."""
TOP_TEXT_CHARS = 200
"""Characters of an item's own text a top item shows when the model wrote no summary."""


def report_name(subject: str | None, date: str | None, message_id: str) -> str:
    """A file name that sorts by date and stays unique: '2025-02-03 TLDR AI - ... (18c2f...).md'."""
    title = UNSAFE_NAME_CHARS.sub(" ", subject or "(no subject)")
    title = " ".join(title.split())[:NAME_LIMIT].rstrip(" .") or "(no subject)"
    day = (date or "")[:10]
    return f"{day + ' ' if day else ''}{title} ({message_id}).md"


def clean_title(title: str) -> str:
    """'**Title **' (the training data's form) -> 'Title'."""
    return title.strip().strip("*").strip() or "(untitled)"


def newsletter_markdown(
    report: dict[str, Any], *, subject: str | None, sender: str | None, date: str | None, link_to: str | None
) -> str:
    """The analyzer's report for one newsletter (`render_markdown`), titled by the email it came from."""
    report = {**report, "subject": subject or report.get("subject"), "date": date or report.get("date")}
    report["source"] = report.get("source") or sender
    footer = [escape(f"From {sender or 'unknown sender'}" + (f", {date}" if date else ""))]
    if link_to:
        footer.append(link("original email", link_to) if link_to.startswith("http") else f"original: `{link_to}`")
    return render_markdown(report).rstrip() + "\n\n---\n\n" + " · ".join(footer) + " · analyzed by news-enhancer\n"


def _inline(text: Any) -> str:
    """`escape` for text that follows other text on its line."""
    return escape(text, start=False)


@dataclass
class DigestEntry:
    """One newsletter of the run, as the digest shows it."""

    subject: str | None
    sender: str | None
    date: str | None
    report: dict[str, Any]
    report_link: str | None
    """The uploaded report (Drive link) or the local report file name (dry run)."""


def _report_link(text: str, target: str | None) -> str:
    """A Drive link, or the local file's name beside the text (a dry run's reports sit in one folder)."""
    if target and target.startswith("http"):
        return link(text, target)
    return _inline(text) + (f" (`{target}`)" if target else "")


def _newsletter_label(entry: DigestEntry) -> str:
    """'TLDR AI, 2025-02-03': short enough to follow every item in the index."""
    name = entry.sender or entry.subject or "newsletter"
    return f"{name}, {entry.date[:10]}" if entry.date else name


def _item_ref(pair: tuple[dict[str, Any], DigestEntry]) -> str:
    item, entry = pair
    return f"{link(clean_title(item.get('title') or ''), item.get('url'))} ({_inline(_newsletter_label(entry))})"


def render_digest(
    entries: Sequence[DigestEntry], *, title: str, query: str | None = None, failed: Sequence[tuple[str, str]] = ()
) -> str:
    """The run's overview: best items across all newsletters, each newsletter (linked to its report), then
    what is trending: the companies and tags of all newsletters with the items they appear in."""
    items = [(item, entry) for entry in entries for item in entry.report.get("items", [])]
    sponsored = sum(bool(item.get("is_sponsored")) for item, _ in items)
    lines = [f"# {_inline(title)}", ""]
    scope = f" for the Gmail search `{query}`" if query else ""
    lines += [f"{len(entries)} newsletters, {len(items)} items ({sponsored} sponsored){scope}.", ""]
    incomplete = sum(is_incomplete(item) for item, _ in items)
    if incomplete:
        lines += [f"{incomplete} item(s) have an incomplete answer (the model hit its token budget).", ""]

    editorial = [pair for pair in items if not pair[0].get("is_sponsored")]
    ranked = sorted(
        (pair for pair in editorial if relevance_value(pair[0]) >= TOP_MIN_SCORE),
        key=lambda pair: -relevance_value(pair[0]),
    )[:TOP_ITEMS]
    lines += ["## Top items", ""]
    if not ranked:
        lines.append(f"No item scored {TOP_MIN_SCORE} or more.")
    for rank, (item, entry) in enumerate(ranked, 1):
        line = f"{rank}. **{link(clean_title(item['title']), item.get('url'))}** ({item['relevance_score']}/10)"
        if is_incomplete(item):
            line += " ⚠ incomplete answer"
        about = item.get("summary") or excerpt(item.get("content"), TOP_TEXT_CHARS)
        if about:
            line += f": {_inline(about)}"
        if item.get("company_names"):
            line += f" Companies: {', '.join(map(_inline, item['company_names']))}."
        line += f" *({_inline(entry.subject or entry.sender or 'newsletter')})*"
        lines.append(line)
    lines.append("")

    lines += ["## Newsletters", ""]
    for entry in sorted(entries, key=lambda e: e.date or ""):
        ones = [i for i in entry.report.get("items", []) if not i.get("is_sponsored")]
        scores = [i["relevance_score"] for i in entry.report.get("items", [])]
        best = f", best {max(scores)}/10" if scores else ""
        high = sum(band(i) == "High relevance" for i in ones)
        when = f"{entry.date[:10]}, " if entry.date else ""
        lines.append(
            f"- {_report_link(entry.subject or '(no subject)', entry.report_link)}: "
            f"{_inline(entry.sender or 'unknown sender')}, {when}{len(scores)} items ({high} high relevance){best}"
        )
    lines.append("")

    intro = (
        f"Companies and tags across all {len(entries)} newsletters (sponsored items left out), most items "
        f"first, with the items they appear in (at most {TRENDING_REFS} listed per name; each newsletter's "
        "report has its own index)."
    )
    pairs = [(item, (item, entry)) for item, entry in editorial]
    lines += render_index(
        pairs, _item_ref, title="What is trending", intro=intro, limit=TOP_COUNTS, max_refs=TRENDING_REFS, sep="; "
    )

    if failed:
        lines += ["## Not processed", ""]
        lines += [f"- `{message_id}`: {_inline(error)}" for message_id, error in failed]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
