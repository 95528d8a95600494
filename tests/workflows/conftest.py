"""Shared pieces of the workflow tests: fixture emails in a fake Google account, and clients for it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from googleapiclient.discovery import build

import schemas
from inference.analyzer import Analyzer
from inference.engine import EngineConfig
from tests.workflows.fake_google import FakeGoogle

EMAILS = Path(__file__).parents[1] / "fixtures" / "emails"
CARRIES_CONTENT = "content" in schemas.load_schema("article_result")["properties"]
"""ArticleResult carries the item's own text (`content`) once the analyzer adds it; the scripted results
then carry it too, and the report tests check it."""
MESSAGES = {
    # Gmail id: fixture (internalDate rises in this order, so this is also oldest-first order)
    "m1": "tldr-multipart-alternative.eml",
    "m2": "plain-text-base64.eml",
    "m3": "windows-1252-quoted-printable.eml",
}


class ScriptedAnalyzer(Analyzer):
    """The real `Analyzer` with the model's answers scripted: `analyze_split` and `analyze_newsletter`
    (the item limit, the notes, the report dict and its Markdown) are the real ones; only
    `analyze_items`, the generation, is replaced (the slow tests run the real model)."""

    def __init__(self, fail_on: str | None = None):
        super().__init__(EngineConfig(chat_format="gemma"))  # the model would load on first use; never here
        self.calls: list[str | None] = []
        self.fail_on = fail_on

    @staticmethod
    def score(title: str) -> int:
        return int(hashlib.sha256(title.encode()).hexdigest(), 16) % 10 + 1

    def analyze_split(self, newsletter, source=None, on_item=None, cancelled=None) -> dict[str, Any]:
        self.calls.append(source)
        return super().analyze_split(newsletter, source, on_item, cancelled)

    def analyze_items(self, items, on_item=None, cancelled=None) -> list[dict[str, Any]]:
        if self.fail_on and any(self.fail_on in f"{item.title}\n{item.content}" for item in items):
            raise RuntimeError("the model ran out of memory")
        results = [
            {
                "title": item.title,
                "url": item.url,
                "is_sponsored": item.is_sponsored,
                "truncated": False,
                "complete": True,
                "incomplete_reason": None,
                "relevance": None,
                "relevance_score": 1 if item.is_sponsored else self.score(item.title),
                "summary": "Sponsored Ad" if item.is_sponsored else "",
                "key_insights": ["AI Model"],
                "company_names": ["Acme"] if "Acme" in item.title else [],
            }
            | ({"content": item.content} if CARRIES_CONTENT else {})
            for item in items
        ]
        for done, result in enumerate(results, 1):
            if on_item:
                on_item(done, len(results), result, 0.0)
        return results


@pytest.fixture
def google(tmp_path) -> FakeGoogle:
    return FakeGoogle(tmp_path / "google.json", {mid: (EMAILS / name).read_bytes() for mid, name in MESSAGES.items()})


def clients(fake: FakeGoogle) -> tuple[Any, Any]:
    """Gmail v1 and Drive v3 clients from the library's bundled discovery documents, talking to `fake`."""
    gmail = build("gmail", "v1", http=fake, static_discovery=True)
    drive = build("drive", "v3", http=fake, static_discovery=True)
    return gmail, drive
