"""The Markdown report: header, notes, items by relevance, marks, links, and escaping of newsletter text."""

from pathlib import Path

import schemas
from ingest.newsletter import split_newsletter
from ingest.report import escape, link, render_item_markdown, render_markdown

FIXTURES = Path(__file__).parents[1] / "fixtures" / "newsletters"


def result(title="Acme ships Widget 2", score=7, **extra):
    base = {
        "title": title,
        "url": "https://example.com/widget?utm_source=x",
        "is_sponsored": False,
        "truncated": False,
        "complete": True,
        "incomplete_reason": None,
        "relevance": None,
        "relevance_score": score,
        "summary": "",
        "key_insights": ["AI Model", "Robotics"],
        "company_names": ["Acme"],
    }
    return base | extra


def report(items, **extra):
    base = {
        "source": "TLDR AI",
        "subject": "Widgets 🤖, gadgets 📱",
        "date": "Fri, 14 Mar 2025 14:08:00 +0000",
        "format": "tldr",
        "items_found": len(items),
        "notes": [],
        "items": items,
        "markdown": "",
    }
    return base | extra


def test_item_section():
    text = render_item_markdown(result(summary="Sponsored Ad", is_sponsored=True, truncated=True), index=2)
    assert text == (
        "### 2. [Acme ships Widget 2](https://example.com/widget?utm_source=x)\n"
        "\n"
        "**7/10** · *Sponsored* · *Content truncated*\n"
        "\n"
        "> Sponsored Ad\n"
        "\n"
        "- **Tags:** AI Model, Robotics\n"
        "- **Companies:** Acme\n"
    )


def test_item_without_url_summary_tags_or_companies():
    text = render_item_markdown(result(url=None, key_insights=[], company_names=[]))
    assert text.splitlines()[0] == "### Acme ships Widget 2"
    assert ">" not in text  # no empty summary quote
    assert "*Sponsored*" not in text and "*Content truncated*" not in text
    assert "- **Tags:** —" in text and "- **Companies:** —" in text


def test_newsletter_text_cannot_break_the_markdown():
    title = "C++ [beta] *new* <script>x</script> | a_b\n# not a heading"
    text = render_item_markdown(result(title=title, url="https://example.com/a b(c)", company_names=["[Evil](x)"]))
    first = text.splitlines()[0]
    assert first == (
        r"### [C++ \[beta\] \*new\* \<script\>x\</script\> \| a\_b # not a heading]"
        "(https://example.com/a%20b%28c%29)"
    )
    assert r"- **Companies:** \[Evil\](x)" in text
    assert escape("# 1. heading") == r"\# 1. heading"
    assert escape("1. first") == r"1\. first"
    assert escape("- bullet") == r"\- bullet"


def test_only_web_urls_become_links():
    assert link("click", "javascript:alert(1)") == "click"
    assert link("click", "mailto:x@example.com") == "click"
    assert link("click", None) == "click"
    assert link("click", "HTTPS://Example.com/x") == "[click](HTTPS://Example.com/x)"


def test_report_header_notes_and_relevance_order():
    items = [
        result("low", 3),
        result("high first", 9, url=None),
        result("mid", 6, is_sponsored=True),
        result("high second", 9),
    ]
    notes = ["Only the first 4 of 40 items were analyzed."]
    text = render_markdown(report(items, items_found=40, notes=notes))
    lines = text.splitlines()
    assert lines[:7] == [
        "# Widgets 🤖, gadgets 📱",
        "",
        "- **Source:** TLDR AI",
        "- **Date:** Fri, 14 Mar 2025 14:08:00 +0000",
        "- **Format:** tldr",
        "- **Items:** 4 analyzed of 40 found",
        "",
    ]
    assert text.index("Only the first 4 of 40 items were analyzed.") < text.index("## Items by relevance")
    headings = [line for line in lines if line.startswith("### ")]
    assert headings == [
        "### 1. high first",
        "### 2. [high second](https://example.com/widget?utm_source=x)",  # ties keep newsletter order
        "### 3. [mid](https://example.com/widget?utm_source=x)",
        "### 4. [low](https://example.com/widget?utm_source=x)",
    ]
    assert text.count("*Sponsored*") == 1


def test_report_without_subject_or_items():
    text = render_markdown(report([], subject=None, source=None, date=None, items_found=0))
    assert text.startswith("# Newsletter report\n")
    assert "- **Items:** 0 analyzed of 0 found" in text
    assert text.rstrip().endswith("*No items found.*")
    assert "Source" not in text and "Notes" not in text


def test_report_of_a_split_newsletter_is_schema_valid_and_links_every_item():
    newsletter = split_newsletter((FIXTURES / "tldr_ai.html").read_text(encoding="utf-8"))
    items = [
        result(item.title, score=1 + n % 10, url=item.url, is_sponsored=item.is_sponsored)
        for n, item in enumerate(newsletter.items)
    ]
    full = report(items, subject=newsletter.subject, date=newsletter.date)
    full["markdown"] = render_markdown(full)
    schemas.validate("newsletter_report", full)
    for item in newsletter.items:
        assert f"]({item.url})" in full["markdown"]
    assert full["markdown"].count("*Sponsored*") == 2
    assert full["markdown"].count("\n### ") == len(items)
