"""Temporal split: parsed dates (not strings), newest emails to dev, one email's items together."""

import pytest

from data.dataset import load_dataset
from data.split import parse_email_date, temporal_split

from .helpers import make_row, write_rows

# As strings, "Fri, ..." < "Mon, ..." < "Sat, ..." < "Thu, ..." < "Wed, ...": the weekday would decide.
EMAILS = {
    "e_oldest": "Wed, 4 Dec 2024 09:00:00 +0000",
    "e_dec30": "Mon, 30 Dec 2024 23:30:00 -0500",  # = 31 Dec 04:30 UTC
    "e_dec31": "Tue, 31 Dec 2024 03:00:00 +0000",
    "e_feb": "Sat, 1 Feb 2025 12:00:00 +0000",
    "e_newest": "Fri, 28 Mar 2025 08:00:00 +0000",
}
ITEMS = {"e_oldest": 3, "e_dec30": 2, "e_dec31": 1, "e_feb": 4, "e_newest": 2}


@pytest.fixture
def records(tmp_path):
    rows = [
        make_row(f"{email}_{n:03d}", EMAILS[email], f"**Item {email} {n} **", f"Content of {email} item {n}.")
        for email in reversed(list(EMAILS))  # file order must not matter
        for n in range(1, ITEMS[email] + 1)
    ]
    return load_dataset(write_rows(tmp_path / "d.jsonl", rows))


def test_dates_are_parsed_with_their_time_zone():
    assert parse_email_date(EMAILS["e_dec30"]) > parse_email_date(EMAILS["e_dec31"])
    assert parse_email_date("2025-03-28T08:00:00").tzinfo is not None
    with pytest.raises(ValueError, match="unparseable"):
        parse_email_date("last Tuesday")


def test_newest_emails_go_to_dev_with_all_their_items(records):
    split = temporal_split(records, dev_fraction=0.4)  # 2 of 5 emails
    assert split.dev_emails == ["e_feb", "e_newest"]
    assert sorted(r.item_id for r in split.dev) == [
        "e_feb_001",
        "e_feb_002",
        "e_feb_003",
        "e_feb_004",
        "e_newest_001",
        "e_newest_002",
    ]
    assert {r.email_id for r in split.train} == {"e_oldest", "e_dec30", "e_dec31"}
    assert split.cutoff == parse_email_date(EMAILS["e_feb"])
    newest_train = max(parse_email_date(r.metadata["email_date"]) for r in split.train)
    assert newest_train <= split.cutoff


def test_time_zones_decide_the_order(records):
    split = temporal_split(records, dev_fraction=0.6)  # 3 of 5 emails
    # Dec 30 -0500 is later than Dec 31 03:00 UTC, so it is dev and Dec 31 is train
    assert split.dev_emails == ["e_dec30", "e_feb", "e_newest"]


def test_at_least_one_email_each_side_and_no_overlap(records):
    split = temporal_split(records, dev_fraction=0.01)
    assert split.dev_emails == ["e_newest"]
    assert not {r.item_id for r in split.train} & {r.item_id for r in split.dev}
    assert len(split.train) + len(split.dev) == len(records)
    summary = split.summary()
    assert summary["dev_items"] == 2 and summary["train_emails"] == 4


def test_missing_or_bad_dates_name_the_line(tmp_path):
    rows = [make_row("e1_001", "Mon, 3 Feb 2025 10:00:00 +0000"), make_row("e2_001", "not a date")]
    records = load_dataset(write_rows(tmp_path / "d.jsonl", rows))
    with pytest.raises(ValueError, match=r"line 2 \(e2_001\): unparseable email date"):
        temporal_split(records)
