"""The Markdown the workflow writes: one report per newsletter (rendered by the MCP tools' own
report renderer, plus where the email came from) and a digest of the whole run."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ingest.report import escape, link, render_markdown

NAME_LIMIT = 80
"""Characters of the subject kept in a file name."""
UNSAFE_NAME_CHARS = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f]+')
TOP_ITEMS = 15
"""Items listed in the digest's "Top items", best first."""
TOP_MIN_SCORE = 7
TOP_COUNTS = 20
"""Companies and tags listed in the digest, most frequent first."""


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
    return escape(text) + (f" (`{target}`)" if target else "")


def render_digest(
    entries: Sequence[DigestEntry], *, title: str, query: str | None = None, failed: Sequence[tuple[str, str]] = ()
) -> str:
    """The run's overview: best items across all newsletters, then each newsletter, companies, tags."""
    items = [(item, entry) for entry in entries for item in entry.report.get("items", [])]
    sponsored = sum(item.get("is_sponsored", False) for item, _ in items)
    lines = [f"# {title}", ""]
    scope = f" for the Gmail search `{query}`" if query else ""
    lines += [f"{len(entries)} newsletters, {len(items)} items ({sponsored} sponsored){scope}.", ""]

    ranked = sorted(
        (pair for pair in items if not pair[0].get("is_sponsored") and pair[0]["relevance_score"] >= TOP_MIN_SCORE),
        key=lambda pair: -pair[0]["relevance_score"],
    )[:TOP_ITEMS]
    lines += ["## Top items", ""]
    if not ranked:
        lines.append(f"No item scored {TOP_MIN_SCORE} or more.")
    for rank, (item, entry) in enumerate(ranked, 1):
        line = f"{rank}. **{link(clean_title(item['title']), item.get('url'))}** ({item['relevance_score']}/10)"
        if item.get("summary"):
            line += f": {escape(item['summary'])}"
        if item.get("company_names"):
            line += f" Companies: {', '.join(map(escape, item['company_names']))}."
        line += f" *({escape(entry.subject or entry.sender or 'newsletter')})*"
        lines.append(line)
    lines.append("")

    lines += ["## Newsletters", ""]
    for entry in sorted(entries, key=lambda e: e.date or ""):
        scores = [i["relevance_score"] for i in entry.report.get("items", [])]
        best = f", best {max(scores)}/10" if scores else ""
        when = f"{entry.date[:10]}, " if entry.date else ""
        lines.append(
            f"- {_report_link(entry.subject or '(no subject)', entry.report_link)}: "
            f"{escape(entry.sender or 'unknown sender')}, {when}{len(scores)} items{best}"
        )
    lines.append("")

    for heading, key in (("Companies", "company_names"), ("Tags", "key_insights")):
        counts = Counter(name for item, _ in items for name in dict.fromkeys(item.get(key, [])))  # once per item
        if counts:
            top = counts.most_common(TOP_COUNTS)
            lines += [f"## {heading}", "", ", ".join(f"{escape(name)} ({n})" for name, n in top), ""]

    if failed:
        lines += ["## Not processed", ""]
        lines += [f"- `{message_id}`: {escape(error)}" for message_id, error in failed]
        lines.append("")
    return "\n".join(lines)
