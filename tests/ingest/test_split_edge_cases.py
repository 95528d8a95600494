"""Splitter edge cases seen in real newsletters: headings with no text of their own, url lines after
an item's text, and a plain-text email's header and subject lines. Each has a small fixture."""

from dataclasses import asdict
from pathlib import Path

import pytest

from ingest.newsletter import split_newsletter

FIXTURES = Path(__file__).parents[1] / "fixtures" / "newsletters"


def load(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def items(text: str, fmt: str = "auto", **metadata) -> list[dict]:
    return [asdict(item) for item in split_newsletter(text, fmt, **metadata).items]


def item(title: str, content: str, url: str | None) -> dict:
    return {"title": title, "content": content, "url": url, "is_sponsored": False}


# --- a heading with no text of its own is a section, not an item --------------------------------


def test_headings_followed_only_by_a_link_are_sections():
    assert items(load("heading_without_text.html")) == [
        item(
            "Acme releases Widget-3B for on-device coding",
            "The model fits in 2 GB of memory and completes code in under 50 ms on a laptop CPU.",
            "https://example.com/acme-widget",
        ),
        item(
            "Foo Labs publishes its evaluation suite",
            "The suite covers 40 tasks and ships with the prompts and scoring scripts used in the paper.",
            "https://example.com/foo-evals",
        ),
        item(
            "Sparse routing halves inference cost",
            "A learned router skips two thirds of the layers for easy tokens without losing accuracy.",
            "https://example.com/sparse-routing",
        ),
    ]  # not "Miscellaneous" (a linked url) nor "Events" (a bare url) with the url as its content


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        ("markdown", "## Miscellaneous\n\nhttps://example.com/misc\n\n"),
        ("markdown", "## Miscellaneous\n\n<https://example.com/misc>\n\n"),
        ("html", '<h2>Miscellaneous</h2><p><a href="https://example.com/misc">https://example.com/misc</a></p>'),
        ("text", "MISCELLANEOUS\nhttps://example.com/misc\n\n"),
    ],
)
def test_a_heading_and_a_url_between_items_is_no_item(fmt, text):
    head = {
        "markdown": "## Acme ships a robot\n\nThe robot folds laundry.\n\n",
        "html": "<h2>Acme ships a robot</h2><p>The robot folds laundry.</p>",
        "text": "ACME SHIPS A ROBOT\nThe robot folds laundry.\n\n",
    }[fmt]
    tail = {
        "markdown": "## Foo raises money\n\nFoo raised $4M.\n",
        "html": "<h2>Foo raises money</h2><p>Foo raised $4M.</p>",
        "text": "FOO RAISES MONEY\nFoo raised $4M.\n",
    }[fmt]
    titles = [found["title"].lower() for found in items(head + text + tail, fmt)]
    assert titles == ["acme ships a robot", "foo raises money"]


def test_a_title_its_url_line_then_its_text_is_still_an_item():
    text = (
        "Acme ships a robot\nhttps://example.com/acme\n\nThe robot folds laundry and irons shirts for a whole family.\n"
    )
    assert items(text, "text") == [
        item(
            "Acme ships a robot",
            "The robot folds laundry and irons shirts for a whole family.",
            "https://example.com/acme",
        )
    ]


# --- a url line right after an item's text is that item's url -----------------------------------


def test_url_lines_after_the_text_are_the_items_url_not_its_content():
    assert items(load("lone_url_lines.md")) == [
        item(
            "Acme ships a 1B reasoning model",
            "Acme's new model solves grade-school maths at the level of models ten times its size.",
            "https://example.com/acme-reasoner",  # the next line of the same paragraph
        ),
        item(
            "Foo raises $12M for evaluation tooling",
            "The round is led by Example Ventures; the money goes to hosted eval runs for enterprises.",
            "https://example.com/foo-round",  # an <autolink> paragraph
        ),
        item(
            "Bar open-sources its tokenizer",
            "The tokenizer handles 90 languages and is twice as fast as the one it replaces.",
            "https://example.com/bar-tokenizer",  # a bare url paragraph
        ),
        item(
            "Baz adds structured outputs",
            "Every answer can now follow a JSON Schema, enforced while decoding.",
            "https://example.com/baz-structured",  # the title's own link wins over the url line
        ),
    ]


def test_an_html_url_line_after_a_line_break_is_the_items_url():
    html = (
        "<h2>Acme ships a robot</h2><p>The robot folds laundry.<br>"
        '<a href="https://example.com/acme">https://example.com/acme</a></p>'
        "<h2>Foo raises money</h2><p>Foo raised $4M.</p>"
    )
    assert items(html)[0] == item("Acme ships a robot", "The robot folds laundry.", "https://example.com/acme")


# --- a newsletter's header and subject lines are not an item ------------------------------------


def test_the_header_and_subject_lines_of_a_plain_text_email_are_no_item():
    newsletter = split_newsletter(load("plain_header_subject.txt"))
    assert (newsletter.format, newsletter.source, newsletter.subject) == (
        "text",
        "The Weekly Model",
        "The Weekly Model - issue 43: robots and chips",
    )
    assert [found.title for found in newsletter.items] == [
        "Acme opens its evaluation harness",
        "Zurich lab shrinks speech models",
        "Robots learn to fold laundry from video",
    ]
    assert all(found.url for found in newsletter.items)


BODY = (
    "{header}\nThe Weekly Model - issue 43: robots and chips\n\n"
    "Acme opens its evaluation harness\nAcme published the harness it uses to grade code-review models.\n"
    "https://example.com/acme-harness\n"
)


@pytest.mark.parametrize("header", ["The Weekly Model", "Your weekly digest for AI engineers", "THE WEEKLY MODEL"])
def test_a_decoded_body_drops_its_header_given_the_emails_sender_and_subject(header):
    body = BODY.format(header=header)
    metadata = {"source": "The Weekly Model", "subject": "The Weekly Model - issue 43: robots and chips"}
    assert [found["title"] for found in items(body, content_type="text/plain", **metadata)] == [
        "Acme opens its evaluation harness"
    ]


def test_a_lead_story_that_gives_the_email_its_subject_stays_an_item():
    body = "Acme opens its evaluation harness\nAcme published the harness it uses to grade code-review models.\n"
    found = items(
        body, content_type="text/plain", source="The Weekly Model", subject="Acme opens its evaluation harness"
    )
    assert [f["title"] for f in found] == ["Acme opens its evaluation harness"]
