"""Temporal train/dev split: the most recent emails become dev, and one email's items stay together.

A random split would put items of the same newsletter (same week, same stories told twice) on both
sides and flatter the dev score; holding out the newest emails also measures what we care about,
the model on newsletters it has not seen yet. Dates are parsed (RFC 2822 `email_date`), not compared
as strings ("Mon, 2 Dec" sorts after "Fri, 28 Nov" as text).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from data.dataset import Record


@dataclass
class Split:
    train: list[Record]
    dev: list[Record]
    cutoff: datetime | None
    """Date of the oldest dev email; every train email is older or equal (ties broken by email id)."""
    dev_emails: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "train_items": len(self.train),
            "dev_items": len(self.dev),
            "train_emails": len({r.email_id for r in self.train}),
            "dev_emails": len(self.dev_emails),
            "cutoff": self.cutoff.isoformat() if self.cutoff else None,
            "dev_item_ids": sorted(r.item_id for r in self.dev),
        }


def parse_email_date(value: object) -> datetime:
    """An RFC 2822 date (or ISO 8601) as an aware datetime; naive dates are taken as UTC."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"missing email date: {value!r}")
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"unparseable email date: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def email_dates(records: Sequence[Record], date_key: str = "email_date") -> dict[str, datetime]:
    """Email id -> its date (the earliest date among its items). Errors name the offending line."""
    dates: dict[str, datetime] = {}
    for record in records:
        try:
            date = parse_email_date(record.metadata.get(date_key))
        except ValueError as exc:
            raise ValueError(f"line {record.line} ({record.item_id}): {exc}") from None
        email = record.email_id
        dates[email] = min(date, dates.get(email, date))
    return dates


def temporal_split(records: Sequence[Record], dev_fraction: float = 0.2, date_key: str = "email_date") -> Split:
    """Hold out the newest `dev_fraction` of emails (rounded, at least one when there are two or more)."""
    if not 0 <= dev_fraction < 1:
        raise ValueError(f"dev_fraction must be in [0, 1), got {dev_fraction}")
    dates = email_dates(records, date_key)
    ordered = sorted(dates, key=lambda email: (dates[email], email))
    n_dev = round(len(ordered) * dev_fraction)
    if dev_fraction > 0 and len(ordered) >= 2:
        n_dev = min(max(n_dev, 1), len(ordered) - 1)
    dev_emails = ordered[len(ordered) - n_dev :] if n_dev else []
    dev_set = set(dev_emails)
    train = [r for r in records if r.email_id not in dev_set]
    dev = [r for r in records if r.email_id in dev_set]
    cutoff = dates[dev_emails[0]] if dev_emails else None
    return Split(train, dev, cutoff, dev_emails)


def dev_fraction_items(split: Split) -> float:
    total = len(split.train) + len(split.dev)
    return len(split.dev) / total if total else math.nan
