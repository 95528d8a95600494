"""The Markdown report: header with counts, relevance bands, sponsored section, each item's own text and
summary, incomplete marks, the index of companies and tags, links, and escaping only where it is needed."""

import re
from pathlib import Path

import pytest

import schemas
from ingest.newsletter import split_newsletter
from ingest.report import (
    TEXT_CHARS,
    band,
    build_index,
    escape,
    excerpt,
    link,
    relevance_value,
    render_item_markdown,
    render_markdown,
)

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


def relevance(expected, confidence=0.5):
    return {"expected": expected, "confidence": confidence, "probabilities": [0.1] * 10, "rule": "median"}


def report(items, **extra):
    base = {
        "source": "TLDR AI",
        "subject": "Widgets 🤖, gadgets 📱",
        "date": "2025-03-14",
        "format": "tldr",
        "items_found": len(items),
        "notes": [],
        "items": items,
        "markdown": "",
    }
    return base | extra


def headings(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


# --- one item ----------------------------------------------------------------------------------------------


def test_item_section_shows_marks_text_summary_tags_and_companies():
    item = result(
        summary="Acme's second widget is faster.",
        truncated=True,
        complete=False,
        incomplete_reason="max_tokens",
        relevance=relevance(7.4, 0.61),
        content="Acme shipped Widget 2 today.\nIt is twice as fast as the first one.",
    )
    assert render_item_markdown(item, index=2) == (
        "### 2. [Acme ships Widget 2](https://example.com/widget?utm_source=x)\n"
        "\n"
        "**7/10** (expected 7.4, confidence 61%) · **⚠ Incomplete answer** (hit the token budget): missing "
        "fields are empty · *Model saw part of the text*\n"
        "\n"
        "Acme shipped Widget 2 today. It is twice as fast as the first one.\n"
        "\n"
        "**Summary:** Acme's second widget is faster.\n"
        "\n"
        "- **Tags:** AI Model, Robotics\n"
        "- **Companies:** Acme\n"
    )


def test_item_without_url_text_summary_tags_or_companies():
    text = render_item_markdown(result(url=None, key_insights=[], company_names=[]))
    assert text.splitlines()[0] == "### Acme ships Widget 2"
    assert "Summary" not in text  # no empty summary
    assert "Sponsored" not in text and "part of the text" not in text and "Incomplete" not in text
    assert "- **Tags:** —" in text and "- **Companies:** —" in text
    assert text.count("\n\n") == 2  # title, marks, lists: no empty paragraph for the missing text


def test_a_sponsored_items_placeholder_summary_is_not_repeated():
    text = render_item_markdown(result(is_sponsored=True, summary="Sponsored Ad", content="Try Foobar CI."))
    assert "*Sponsored*" in text and "Try Foobar CI." in text and "Sponsored Ad" not in text


# --- escaping and links ----------------------------------------------------------------------------------


def test_newsletter_text_cannot_break_the_markdown():
    title = "C++ [beta] *new* <script>x</script> | _a_ b\n# not a heading"
    text = render_item_markdown(result(title=title, url="https://example.com/a b(c)", company_names=["[Evil](x)"]))
    assert text.splitlines()[0] == (
        r"### [C++ \[beta\] \*new\* \<script>x\</script> | \_a\_ b # not a heading]"
        "(https://example.com/a%20b%28c%29)"
    )
    assert r"- **Companies:** \[Evil\](x)" in text
    assert escape("# 1. heading") == r"\# 1. heading"
    assert escape("1. first") == r"1\. first"
    assert escape("2) second") == r"2\) second"
    assert escape("- bullet") == r"\- bullet"
    assert escape("> quoted") == r"\> quoted"
    assert escape("***") == r"\*\*\*"
    assert escape("&copy; ~~struck~~ `code`") == r"\&copy; \~\~struck\~\~ \`code\`"
    assert escape(r"a \*b") == r"a \\\*b"


@pytest.mark.parametrize(
    "plain",
    [
        "2025-03-14",
        "Fri, 14 Mar 2025 14:08:00 +0000",
        "snake_case_name",
        "1,000 LoRA adapters",
        "#1 on the leaderboard",
        "C# and F#, a -> b, 3 > 2",
        "AT&T",
        "~300 tokens",
        "C:\\models\\gemma",
        "+1 for open weights",
    ],
)
def test_plain_text_is_not_escaped_where_markdown_would_not_read_markup(plain):
    assert escape(plain) == plain


def test_what_only_matters_at_the_start_of_a_line_is_left_alone_inside_a_line():
    assert escape("1. first", start=False) == "1. first"
    assert escape("- bullet", start=False) == "- bullet"
    text = render_markdown(report([result("2025. A year in review")], date="2025-03-14"))
    assert "- **Date:** 2025-03-14" in text
    assert "#### 1. [2025. A year in review]" in text


def test_only_web_urls_become_links():
    assert link("click", "javascript:alert(1)") == "click"
    assert link("click", "mailto:x@example.com") == "click"
    assert link("click", None) == "click"
    assert link("click", "HTTPS://Example.com/x") == "[click](HTTPS://Example.com/x)"


# --- the item's own text, cut at a sentence ------------------------------------------------------------------


def test_excerpt_keeps_short_text_and_cuts_long_text_after_a_sentence():
    assert excerpt("  One line.\n\nAnother  line. ") == "One line. Another line."
    assert excerpt(None) == "" and excerpt("") == ""
    sentences = " ".join(f"Sentence number {n} says a little more." for n in range(40))
    cut = excerpt(sentences)
    assert cut.endswith(". …") and len(cut) <= TEXT_CHARS + 2
    assert sentences.startswith(cut.removesuffix(" …"))
    assert len(cut) > TEXT_CHARS - 45  # the last sentence that fits, not an early one


def test_excerpt_does_not_cut_after_an_abbreviation_and_falls_back_to_a_word():
    text = "Intro sentence here. " + "The U.S. and e.g. Acme Inc. grow " + "x" * 300 + " more words follow here."
    cut = excerpt(text, limit=100)
    assert cut == "Intro sentence here. The U.S. and e.g. Acme Inc. grow …"  # a word cut: no sentence end after 33
    assert excerpt("word " * 100, limit=50) == ("word " * 10).strip() + " …"


# --- relevance bands -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "expected_band"),
    [
        (result(score=10), "High relevance"),
        (result(score=8), "High relevance"),
        (result(score=7), "Medium relevance"),
        (result(score=5), "Medium relevance"),
        (result(score=4), "Low relevance"),
        (result(score=None), "Low relevance"),  # unscored
        (result(score=9, relevance=relevance(7.9)), "Medium relevance"),  # the expected score decides
        (result(score=7, relevance=relevance(7.96)), "High relevance"),  # shown as 8.0, so high
        (result(score=5, relevance=relevance(4.94)), "Low relevance"),
    ],
)
def test_bands_use_the_expected_score_when_known(item, expected_band):
    assert band(item) == expected_band


def test_relevance_value_prefers_the_expected_score():
    assert relevance_value(result(score=6)) == 6.0
    assert relevance_value(result(score=6, relevance=relevance(6.7))) == 6.7
    assert relevance_value(result(score=True)) == 0.0  # not a number


# --- the whole report -----------------------------------------------------------------------------------------


def test_report_header_counts_bands_order_and_sponsored_section():
    items = [
        result("low", 3),
        result("high first", 9, url=None),
        result("ad", 6, is_sponsored=True, company_names=["Foobar"]),
        result("high second", 9),
        result("expected high", 7, relevance=relevance(9.4)),
        result("cut answer", 6, complete=False, incomplete_reason="max_tokens"),
    ]
    notes = ["Only the first 6 of 40 items were analyzed."]
    text = render_markdown(report(items, items_found=40, notes=notes))
    lines = text.splitlines()
    assert lines[:9] == [
        "# Widgets 🤖, gadgets 📱",
        "",
        "- **Source:** TLDR AI",
        "- **Date:** 2025-03-14",
        "- **Format:** tldr",
        "- **Items:** 6 analyzed of 40 found",
        "- **By relevance:** 3 high (8–10), 1 medium (5–7.9), 1 low (under 5); 1 sponsored",
        "- **Incomplete answers:** 1 (marked ⚠ below)",
        "",
    ]
    assert text.index("Only the first 6 of 40 items were analyzed.") < text.index("## Items by relevance")
    assert headings(text, "## ") == ["## Items by relevance", "## Sponsored: 1 item", "## Index"]
    assert headings(text, "### ")[:3] == [
        "### High relevance (8–10): 3 items",
        "### Medium relevance (5–7.9): 1 item",
        "### Low relevance (under 5): 1 item",
    ]
    assert headings(text, "#### ") == [
        "#### 1. [expected high](https://example.com/widget?utm_source=x)",  # 9.4 expected beats 9
        "#### 2. high first",
        "#### 3. [high second](https://example.com/widget?utm_source=x)",  # ties keep newsletter order
        "#### 4. [cut answer](https://example.com/widget?utm_source=x)",
        "#### 5. [low](https://example.com/widget?utm_source=x)",
    ]
    sponsored = text.split("## Sponsored: 1 item")[1].split("## Index")[0]
    assert sponsored.lstrip().startswith("### 6. [ad](")
    assert text.count("*Sponsored*") == 1
    assert text.count("⚠ Incomplete answer") == 1
    assert "**7/10** (expected 9.4, confidence 50%)" in text


def test_index_counts_each_name_once_per_item_and_points_to_item_numbers():
    items = [
        result("a", 9, company_names=["Acme", "acme", "Nvidia"], key_insights=["Robotics"]),
        result("b", 6, company_names=["Nvidia"], key_insights=["AI Model", "Robotics"]),
        result("c", 2, company_names=["Acme"], key_insights=[]),
        result("ad", 5, is_sponsored=True, company_names=["Foobar"], key_insights=["Ads"]),
    ]
    text = render_markdown(report(items))
    index = text.split("## Index")[1]
    assert "(sponsored items left out)" in index
    companies = index.split("### Companies")[1].split("### Tags")[0].strip().splitlines()
    assert companies == ["- **Acme** (2): 1, 3", "- **Nvidia** (2): 1, 2"]  # "acme" is Acme; ties: first seen
    tags = index.split("### Tags")[1].strip().splitlines()
    assert tags == ["- **Robotics** (2): 1, 2", "- **Once each:** AI Model #2"]
    assert "Foobar" not in index and "Ads" not in index
    entries = build_index([(item, n) for n, item in enumerate(items, 1)], "company_names")
    assert [(e.name, e.refs) for e in entries] == [("Acme", [1, 3]), ("Nvidia", [1, 2]), ("Foobar", [4])]


def test_report_without_subject_or_items():
    text = render_markdown(report([], subject=None, source=None, date=None, items_found=0))
    assert text.startswith("# Newsletter report\n")
    assert "- **Items:** 0 analyzed of 0 found" in text
    assert text.rstrip().endswith("*No items found.*")
    assert "Source" not in text and "Notes" not in text and "Index" not in text


def _schema_valid(full: dict) -> None:
    """Validate against the NewsletterReport schema; items carry `content`, which ArticleResult does not
    have yet (the lead adds it): strip it for the check until the schema knows it."""
    if "content" not in schemas.load_schema("article_result")["properties"]:
        full = {**full, "items": [{k: v for k, v in i.items() if k != "content"} for i in full["items"]]}
    schemas.validate("newsletter_report", full)


def test_report_of_a_fixture_newsletter_holds_every_items_text_links_and_the_index():
    newsletter = split_newsletter((FIXTURES / "tldr_ai.html").read_text(encoding="utf-8"))
    companies = {"Mistral": "Mistral", "Nvidia": "Nvidia", "Hugging Face": "Hugging Face", "OpenAI": "OpenAI"}
    items = [
        result(
            item.title,
            score=1 + n % 10,
            url=item.url,
            is_sponsored=item.is_sponsored,
            content=item.content,
            company_names=[name for key, name in companies.items() if key in item.title + item.content],
            key_insights=["AI Model"] + (["Robotics"] if "robot" in (item.title + item.content).lower() else []),
        )
        for n, item in enumerate(newsletter.items)
    ]
    full = report(items, subject=newsletter.subject, date=newsletter.date)
    full["markdown"] = text = render_markdown(full)
    _schema_valid(full)
    assert "- **Date:** 2025-03-14" in text  # not "2025\-03-14"
    for item in newsletter.items:
        assert f"]({item.url})" in text
        assert excerpt(item.content) in text  # its own text, unescaped where nothing needed escaping
        assert len(excerpt(item.content)) > 50
    numbered = re.findall(r"^#{3,4} (\d+)\. ", text, re.MULTILINE)  # banded items, then the sponsored ones
    assert numbered == [str(n) for n in range(1, len(items) + 1)]
    sponsored = text.split("## Sponsored: 2 items")[1].split("## Index")[0]
    assert "VectorForge" in sponsored and "Lumen" in sponsored
    assert text.count("*Sponsored*") == 2
    index = text.split("## Index")[1]
    editorial = [i for i in items if not i["is_sponsored"]]
    assert f"- **AI Model** ({len(editorial)}): " in index
    robotics = sum("Robotics" in i["key_insights"] for i in editorial)
    assert robotics >= 2 and f"- **Robotics** ({robotics}): " in index
    once_each = index.split("### Companies")[1].split("### Tags")[0].split("- **Once each:** ")[-1]
    for name in companies:
        n = sum(name in i["company_names"] for i in editorial)
        assert n >= 1, name
        assert (f"- **{name}** ({n}): " in index) if n > 1 else (f"{name} #" in once_each)
