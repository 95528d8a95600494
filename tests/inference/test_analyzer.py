"""The analyzer on the real model: items cleaned, cut and flagged as trained; newsletters capped and reported."""

import pytest

import schemas
from inference.analyzer import Analyzer, Item
from inference.engine import EngineConfig
from tests.conftest import NEWSLETTERS


@pytest.mark.parametrize("title, content", [("", ""), ("   ", "\n\t "), ("\x00\x07", "\u200b\ufffd")])
def test_empty_input_is_a_clear_error_before_any_model_work(title, content):
    analyzer = Analyzer()
    with pytest.raises(ValueError, match="title and the content are both empty"):
        analyzer.analyze_item(title, content)
    assert not analyzer.engine.loaded


def test_an_empty_newsletter_is_a_clear_error():
    with pytest.raises(ValueError, match="newsletter text is empty"):
        Analyzer().analyze_newsletter("  \n ")


def test_an_unknown_newsletter_format_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown newsletter format 'pdf'"):
        Analyzer().analyze_newsletter("Some text", fmt="pdf")


@pytest.mark.slow
def test_an_article_result_is_schema_valid_and_flags_the_cut(analyzer):
    result = analyzer.analyze_item(
        "  Mistral releases a 3B vision model (4 minute read)",
        "Mistral released Pixtral Edge for phones. It runs fully on-device.\x00 More details inside.",
        url=" https://example.com/pixtral ",
    )
    schemas.validate("article_result", result)
    assert result["title"] == "Mistral releases a 3B vision model (4 minute read)"
    assert result["url"] == "https://example.com/pixtral"
    assert result["truncated"] is True  # cut to its first sentence, as the training data was
    assert result["is_sponsored"] is False


@pytest.mark.slow
def test_a_one_sentence_item_is_not_flagged(analyzer):
    result = analyzer.analyze_item("Anthropic opens a Seoul office", "Anthropic opened an office in Seoul.")
    assert result["truncated"] is False
    assert result["url"] is None


@pytest.mark.slow
def test_sponsored_content_too_long_for_the_context_is_cut_to_fit():
    # Sponsored items are kept whole by the training-data rule; 60k characters cannot fit the context.
    small = Analyzer(EngineConfig(n_threads=1, n_parallel=1, n_ctx=384, max_tokens=16))
    content = "Try VectorForge today, the managed vector database for teams of every size. " * 800
    try:
        result = small.analyze_item("Stop babysitting your vector database (Sponsor)", content, is_sponsored=True)
        used = len(small._prepare(Item("Stop babysitting your vector database (Sponsor)", content, None, True)).prompt)
    finally:
        small.engine.close()
    schemas.validate("article_result", result)
    assert result["truncated"] is True
    assert result["is_sponsored"] is True
    assert 300 < used <= 384 - 16  # cut to the budget, not far below it


@pytest.mark.slow
def test_a_newsletter_is_split_capped_and_reported(analyzer):
    text = (NEWSLETTERS / "tldr_ai.html").read_text(encoding="utf-8")
    progress = []
    report = analyzer.analyze_newsletter(text, on_item=lambda done, total, r, s: progress.append((done, total)))
    schemas.validate("newsletter_report", report)
    assert report["format"] == "tldr"
    assert report["items_found"] > 3
    assert len(report["items"]) == 3  # the analyzer under test caps at 3
    assert any("analyzed the first 3" in note for note in report["notes"])
    assert sorted(progress) == [(1, 3), (2, 3), (3, 3)]
    for item in report["items"]:
        assert item["title"] in report["markdown"].replace("\\", "")
    assert report["markdown"].startswith("# ")
