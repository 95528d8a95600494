"""Shared pieces of the workflow tests: fixture emails in a fake Google account, and clients for it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from googleapiclient.discovery import build

from mcp_server.newsletter import split_newsletter
from mcp_server.report import render_markdown
from tests.workflows.fake_google import FakeGoogle

EMAILS = Path(__file__).parents[1] / "fixtures" / "emails"
MESSAGES = {
    # Gmail id: fixture (internalDate rises in this order, so this is also oldest-first order)
    "m1": "tldr-multipart-alternative.eml",
    "m2": "plain-text-base64.eml",
    "m3": "windows-1252-quoted-printable.eml",
}


class ScriptedAnalyzer:
    """`Analyzer.analyze_newsletter` with the model's answers scripted: the real splitter and the real
    report renderer run, only generation is replaced (the slow tests run the real model)."""

    def __init__(self, fail_on: str | None = None):
        self.calls: list[str | None] = []
        self.fail_on = fail_on

    @staticmethod
    def score(title: str) -> int:
        return int(hashlib.sha256(title.encode()).hexdigest(), 16) % 10 + 1

    def analyze_newsletter(
        self, text: str, fmt: str = "auto", source: str | None = None, on_item=None
    ) -> dict[str, Any]:
        self.calls.append(source)
        if self.fail_on and self.fail_on in text:
            raise RuntimeError("the model ran out of memory")
        newsletter = split_newsletter(text, fmt)
        items = [
            {
                "title": item.title,
                "url": item.url,
                "is_sponsored": item.is_sponsored,
                "truncated": False,
                "relevance_score": 1 if item.is_sponsored else self.score(item.title),
                "summary": "Sponsored Ad" if item.is_sponsored else "",
                "key_insights": ["AI Model"],
                "company_names": ["Acme"] if "Acme" in item.title else [],
            }
            for item in newsletter.items
        ]
        for done, item in enumerate(items, 1):
            if on_item:
                on_item(done, len(items), item, 0.0)
        report = {
            "source": source or newsletter.source,
            "subject": newsletter.subject,
            "date": newsletter.date,
            "format": newsletter.format,
            "items_found": len(items),
            "notes": [],
            "items": items,
        }
        return {**report, "markdown": render_markdown(report)}


@pytest.fixture
def google(tmp_path) -> FakeGoogle:
    return FakeGoogle(tmp_path / "google.json", {mid: (EMAILS / name).read_bytes() for mid, name in MESSAGES.items()})


def clients(fake: FakeGoogle) -> tuple[Any, Any]:
    """Gmail v1 and Drive v3 clients from the library's bundled discovery documents, talking to `fake`."""
    gmail = build("gmail", "v1", http=fake, static_discovery=True)
    drive = build("drive", "v3", http=fake, static_discovery=True)
    return gmail, drive
