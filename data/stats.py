"""Describe a dataset: label distributions, empty-field rates and lengths.

The numbers that decide training choices: how skewed relevance is, how often each list is empty (a
model can score well by answering empty), and how long examples are in tokens (max_length, speed).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Any

from data.convert import tokenize_records
from data.dataset import Record
from data.split import email_dates


def _lengths(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "min": ordered[0],
        "median": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "max": ordered[-1],
        "mean": round(statistics.fmean(ordered), 1),
    }


def dataset_stats(records: Sequence[Record], tokenizer: Any = None, fmt: str = "gemma", top: int = 15) -> dict:
    """A JSON-ready summary. Token lengths need a tokenizer (prompt includes the chat format and BOS)."""
    n = len(records)
    analyses = [r.analysis for r in records]
    tags = Counter(tag for a in analyses for tag in a["key_insights"])
    companies = Counter(name for a in analyses for name in a["company_names"])
    stats: dict[str, Any] = {
        "items": n,
        "emails": len({r.email_id for r in records}),
        "relevance_score": {str(k): v for k, v in sorted(Counter(a["relevance_score"] for a in analyses).items())},
        "empty_rate": {
            "summary": round(sum(not a["summary"] for a in analyses) / n, 4),
            "key_insights": round(sum(not a["key_insights"] for a in analyses) / n, 4),
            "company_names": round(sum(not a["company_names"] for a in analyses) / n, 4),
        },
        "summary_values": dict(Counter(a["summary"] for a in analyses if a["summary"]).most_common(top)),
        "key_insights": {"distinct": len(tags), "per_item": _lengths([len(a["key_insights"]) for a in analyses])},
        "key_insights_top": dict(tags.most_common(top)),
        "company_names": {
            "distinct": len(companies),
            "per_item": _lengths([len(a["company_names"]) for a in analyses]),
        },
        "company_names_top": dict(companies.most_common(top)),
        "sponsored": sum(bool(r.metadata.get("is_sponsored")) for r in records),
        "chars": {
            "prompt": _lengths([len(r.prompt) for r in records]),
            "answer": _lengths([len(r.answer) for r in records]),
        },
    }
    try:
        dates = email_dates(records)
        stats["dates"] = {"first": min(dates.values()).isoformat(), "last": max(dates.values()).isoformat()}
    except ValueError:
        stats["dates"] = None
    if tokenizer is not None:
        examples = tokenize_records(tokenizer, records, fmt)
        stats["tokens"] = {
            "prompt": _lengths([e.prompt_tokens for e in examples]),
            "answer": _lengths([e.answer_tokens for e in examples]),
            "total": _lengths([len(e.input_ids) for e in examples]),
        }
    return stats


def format_stats(stats: dict) -> str:
    """Human-readable lines for the terminal."""
    lines = [f"items {stats['items']} in {stats['emails']} emails"]
    if stats.get("dates"):
        lines.append(f"dates {stats['dates']['first']} .. {stats['dates']['last']}")
    lines.append("relevance_score " + ", ".join(f"{k}:{v}" for k, v in stats["relevance_score"].items()))
    lines.append("empty " + ", ".join(f"{k} {v:.1%}" for k, v in stats["empty_rate"].items()))
    lines.append(f"sponsored {stats['sponsored']}")
    lines.append(f"summary values {stats['summary_values']}")
    for key in ("key_insights", "company_names"):
        lines.append(f"{key}: {stats[key]['distinct']} distinct, per item {stats[key]['per_item']}")
        lines.append(f"  top {stats[key + '_top']}")
    for kind, values in stats.get("tokens", stats["chars"]).items():
        unit = "tokens" if "tokens" in stats else "chars"
        lines.append(f"{unit} {kind}: {values}")
    return "\n".join(lines)
