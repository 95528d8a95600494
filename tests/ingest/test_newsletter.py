"""The splitter on newsletters we wrote in each format: exact items, detection, boilerplate, hostile input."""

import random
import re
from dataclasses import asdict
from pathlib import Path

import pytest

import ingest.newsletter
from data.prompts import format_title
from ingest.email import parse_email
from ingest.newsletter import FORMATS, Newsletter, split_newsletter
from ingest.sanitize import clean_text

FIXTURES = Path(__file__).parents[1] / "fixtures" / "newsletters"
EMAILS = Path(__file__).parents[1] / "fixtures" / "emails"


def load(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def summary(newsletter) -> list[tuple[str, str | None, bool]]:
    return [(item.title, item.url, item.is_sponsored) for item in newsletter.items]


TLDR_AI = [
    (
        "Stop babysitting your vector database (Sponsor)",
        "https://www.vectorforge.dev/?utm_source=tldrai&utm_medium=newsletter&utm_campaign=march2025",
        True,
    ),
    (
        "Mistral releases Pixtral Edge, a 3B vision model for phones (4 minute read)",
        "https://techcrunch.com/2025/03/13/mistral-releases-pixtral-edge/?utm_source=tldrai",
        False,
    ),
    (
        "Nvidia and Foxconn to build a robotics training hub in Taiwan (3 minute read)",
        "https://www.reuters.com/technology/nvidia-foxconn-robotics-hub-2025-03-13/?utm_source=tldrai",
        False,
    ),
    (
        "OpenAI adds memory controls for teams in ChatGPT Enterprise (2 minute read)",
        "https://openai.com/index/enterprise-memory-controls/?utm_source=tldrai",
        False,
    ),
    (
        "Hugging Face acquires Tessellate to speed up model downloads (2 minute read)",
        "https://huggingface.co/blog/tessellate?utm_source=tldrai",
        False,
    ),
    (
        "Sparse attention that learns where to look (18 minute read)",
        "https://arxiv.org/abs/2503.10977?utm_source=tldrai",
        False,
    ),
    (
        "Why reward models disagree with humans on long answers (9 minute read)",
        "https://example-ml-research.org/blog/reward-length-bias?utm_source=tldrai",
        False,
    ),
    (
        "Robots that learn chores from a single video (6 minute read)",
        "https://robot-learning.example.edu/one-video-chores?utm_source=tldrai",
        False,
    ),
    (
        "Serving 1,000 LoRA adapters on one GPU (12 minute read)",
        "https://engineering.example.com/posts/serving-many-lora-adapters?utm_source=tldrai",
        False,
    ),
    ("tinyevals (GitHub Repo)", "https://github.com/example-labs/tinyevals?utm_source=tldrai", False),
    (
        "A practical guide to structured outputs with grammars (7 minute read)",
        "https://blog.example.dev/structured-outputs-grammars?utm_source=tldrai",
        False,
    ),
    (
        "The hidden cost of AI coding assistants in code review (5 minute read)",
        "https://newsletter.example-eng.com/p/ai-code-review-cost?utm_source=tldrai",
        False,
    ),
    (
        "Inside the race to build data centers in the Nordics (8 minute read)",
        "https://www.example-news.com/2025/03/nordic-data-centers?utm_source=tldrai",
        False,
    ),
    (
        "Ship AI features without an ML team (Sponsor)",
        "https://lumenapi.dev/?utm_source=tldr&utm_medium=newsletter&utm_campaign=quicklinks0314",
        True,
    ),
    (
        "Apple is testing an on-device model for Siri summaries (2 minute read)",
        "https://www.example-apple-news.com/2025/03/siri-on-device-summaries?utm_source=tldrai",
        False,
    ),
    (
        "Anthropic opens an office in Seoul (1 minute read)",
        "https://www.anthropic.com/news/seoul-office?utm_source=tldrai",
        False,
    ),
]

TLDR_PLAIN = [
    (
        "DATAFORGE: TURN MESSY PDFS INTO TRAINING DATA (SPONSOR)",
        "https://dataforge.example.com/?utm_source=tldrai&utm_medium=newsletter&utm_campaign=pdfs0317",
        True,
    ),
    (
        "META TESTS A PAID TIER FOR ITS AI ASSISTANT (3 MINUTE READ)",
        "https://www.example-tech-news.com/2025/03/16/meta-ai-paid-tier/?utm_source=tldrai",
        False,
    ),
    (
        "SAMSUNG PUTS A 2B LANGUAGE MODEL IN ITS NEW FRIDGES (2 MINUTE READ)",
        "https://www.example-gadgets.com/samsung-fridge-llm?utm_source=tldrai",
        False,
    ),
    (
        "XAI RAISES $6 BILLION FOR A SECOND DATA CENTER (4 MINUTE READ)",
        "https://www.example-finance.com/xai-second-data-center?utm_source=tldrai",
        False,
    ),
    (
        "TRAINING SMALL MODELS ON TEXTBOOK-STYLE SYNTHETIC DATA (14 MINUTE READ)",
        "https://arxiv.org/abs/2503.11204?utm_source=tldrai",
        False,
    ),
    (
        "A BENCHMARK FOR AGENTS THAT BOOK REAL TRAVEL (6 MINUTE READ)",
        "https://agents-bench.example.org/travel?utm_source=tldrai",
        False,
    ),
    ("PROMPTCACHE (GITHUB REPO)", "https://github.com/example-labs/promptcache?utm_source=tldrai", False),
    (
        "HOW WE CUT OUR EMBEDDING BILL BY 80% (9 MINUTE READ)",
        "https://engineering.example-shop.com/embedding-costs?utm_source=tldrai",
        False,
    ),
    (
        "FREE WORKSHOP: EVALUATING LLM APPS IN PRODUCTION (SPONSOR)",
        "https://evalcamp.example.com/workshop?utm_source=tldr&utm_medium=newsletter&utm_campaign=quicklinks0317",
        True,
    ),
    (
        "DEEPMIND'S WEATHER MODEL NOW RUNS HOURLY FORECASTS (2 MINUTE READ)",
        "https://deepmind.google/discover/blog/hourly-weather?utm_source=tldrai",
        False,
    ),
]

MARKDOWN = [
    (
        "Alibaba open-sources Qwen-Mini 1B with a 128k context",
        "https://qwen.example.com/blog/qwen-mini?utm_source=gradientdigest&utm_medium=email",
        False,
    ),
    (
        "The EU publishes its first code of practice for general-purpose AI",
        "https://digital-strategy.example.eu/ai-code-of-practice?utm_source=gradientdigest",
        False,
    ),
    (
        "Benchmarks are leaking into training sets (3 minute read)",
        "https://evals.example.org/contamination-audit?utm_source=gradientdigest",
        False,
    ),
    (
        "Label 10,000 images before lunch",
        "https://labelfast.example.com/?utm_source=gradientdigest&utm_campaign=issue87",
        True,
    ),
    ("evalkit", "https://github.com/example-org/evalkit?utm_source=gradientdigest", False),
    ("sqlmind", "https://github.com/example-org/sqlmind?utm_source=gradientdigest", False),
    ("Pocket Whisper", "https://pocketwhisper.example.app/?utm_source=gradientdigest", False),
    (
        "Cohere releases a multilingual reranker",
        "https://cohere.example.com/blog/rerank-multilingual?utm_source=gradientdigest",
        False,
    ),
    (
        "Why GPU rental prices stopped falling",
        "https://www.example-analysis.com/gpu-prices-2025?utm_source=gradientdigest",
        False,
    ),
]

GENERIC = [
    (
        "Token prices fell 60% in a year, a new tracker shows",
        "https://www.example-markets.com/token-price-tracker?utm_source=inferencereport",
        False,
    ),
    (
        "Lattice Robotics raises $40M for warehouse arms",
        "https://www.example-robotics-news.com/lattice-raises-40m?utm_source=inferencereport",
        False,
    ),
    ("Faster agents with speculative tool calls", "https://arxiv.org/abs/2503.12345?utm_source=inferencereport", False),
    (
        "日本語のレシートを読み取る小型モデル",
        "https://www.example-jp-tech.jp/receipt-model?utm_source=inferencereport",
        False,
    ),
    ("llm-gateway", "https://github.com/example-org/llm-gateway?utm_source=inferencereport", False),
    ("pgvector-bench 0.9", "https://github.com/example-org/pgvector-bench?utm_source=inferencereport", False),
]

SPONSORED_MIX = [
    (
        "Google expands Gemini in Sheets to all Workspace plans",
        "https://workspace.example.com/blog/gemini-in-sheets?utm_source=bytesized",
        False,
    ),
    (
        "Cut your inference bill in half (Sponsor)",
        "https://quantserve.example.com/?utm_source=bytesized&utm_medium=newsletter&utm_campaign=mar20",
        True,
    ),
    (
        "Meta's research team shares a recipe for 1M-token training",
        "https://ai.example-meta-research.com/blog/million-token-recipe?utm_source=bytesized",
        False,
    ),
    (
        "The AI engineer's guide to vector search",
        "https://vectorhub.example.io/guide?utm_source=bytesized&utm_campaign=guide",
        True,
    ),
    (
        "Perplexity adds shopping to its answer engine",
        "https://www.example-search-news.com/perplexity-shopping?utm_source=bytesized",
        False,
    ),
    ("GPUs by the minute, no contracts", "https://northwind.example.cloud/gpus?utm_source=bytesized", True),
    (
        "Amazon's new Trainium chips reach general availability",
        "https://www.example-cloud-news.com/trainium-ga?utm_source=bytesized",
        False,
    ),
    (
        "Sponsored: Ship agents to production with Relay",
        "https://relay.example.dev/?utm_source=bytesized&utm_medium=email",
        True,
    ),
    (
        "A startup wants to put small models on satellites",
        "https://www.example-space-news.com/small-models-satellites?utm_source=bytesized",
        False,
    ),
]

EXPECTED = {
    "tldr_ai.html": ("tldr", TLDR_AI),
    "tldr_plain.txt": ("tldr", TLDR_PLAIN),
    "newsletter.md": ("markdown", MARKDOWN),
    "generic.html": ("html", GENERIC),
    "sponsored_mix.html": ("html", SPONSORED_MIX),
}

BOILERPLATE = re.compile(
    r"unsubscribe|advertise|referral|refer a friend|view (?:online|in browser)|read online|sign up|swag|jobs@"
    r"|receiving this|preferences|thanks for reading|all for this week|©",
    re.IGNORECASE,
)
SECTION_NAMES = ("Headlines", "Research & Innovation", "Engineering & Resources", "Miscellaneous", "Quick Links")


@pytest.mark.parametrize("name", EXPECTED)
def test_each_fixture_splits_into_exactly_its_items(name):
    fmt, expected = EXPECTED[name]
    newsletter = split_newsletter(load(name))
    assert newsletter.format == fmt
    assert summary(newsletter) == expected


@pytest.mark.parametrize("name", EXPECTED)
def test_no_boilerplate_or_section_header_becomes_an_item_or_content(name):
    for item in split_newsletter(load(name)).items:
        for text in (item.title, item.content):
            assert not BOILERPLATE.search(text), (item.title, text)
            assert not any(section.lower() in text.lower() for section in SECTION_NAMES), (item.title, text)
            assert text == text.strip() and "  " not in text


def test_tldr_html_metadata_and_content():
    newsletter = split_newsletter(load("tldr_ai.html"))
    assert newsletter.source == "TLDR AI"  # from the "TLDR AI 2025-03-14" masthead line
    assert newsletter.date == "2025-03-14"
    assert newsletter.subject == "Mistral's phone vision model 📱, Nvidia robotics hub 🤖, learned sparse attention 🧠"
    first, mistral = newsletter.items[0], newsletter.items[1]
    # Inline links keep their words; entities are decoded; nothing from the hidden preheader leaks in.
    assert first.content.endswith("More than 300 startups ship with it. Start free — no credit card required.")
    assert mistral.content.startswith("Mistral’s new Pixtral Edge model reads screenshots")
    assert mistral.content.endswith("matches models three times its size on document question answering.")
    assert all(item.content for item in newsletter.items)
    assert not any("\u034f" in item.content or "\u200c" in item.content for item in newsletter.items)
    # The analyzer formats titles for the prompt; the splitter's raw titles must format like the training data.
    assert format_title(mistral.title) == "**Mistral releases Pixtral Edge, a 3B vision model for phones **"
    assert format_title(first.title) == "**Stop babysitting your vector database (Sponsor)**"


def test_tldr_plain_email_reads_headers_and_link_references():
    newsletter = split_newsletter(load("tldr_plain.txt"))
    assert newsletter.source == "TLDR AI"
    assert newsletter.subject == "Meta's paid assistant 💳, Samsung's LLM fridge 🧊, synthetic textbooks 📚"
    assert newsletter.date == "Mon, 17 Mar 2025 14:09:03 +0000"
    # Hard-wrapped lines join into one paragraph; "[n]" references become urls and leave the text.
    assert newsletter.items[0].content == (
        "Dataforge parses scanned PDFs, tables and slide decks into clean JSONL with layout-aware chunking, so your "
        "fine-tuning set is not full of page headers and broken tables. Try it on 500 pages for free."
    )
    assert not any("[" in item.title or "[" in item.content for item in newsletter.items)


def test_markdown_paragraphs_inline_markup_and_link_lists():
    items = split_newsletter(load("newsletter.md")).items
    assert items[0].content == (
        "The new model keeps most of its larger sibling's coding ability and runs on a single consumer GPU. "
        "Weights are released under Apache 2.0.\n\n"
        "The team also published its full data mixture, which is rare for a release of this size."
    )
    # A trailing "[Read the draft](url)" lends its url and drops its words; "[Full story →](url)" likewise.
    assert items[1].content.endswith("Comments are open until May.")
    assert items[2].content.endswith("may inflate reported scores by several points.")
    assert items[4].content.startswith("a pytest plugin that runs LLM evals")  # "**[evalkit](url)** — a pytest..."
    assert items[7].content == items[8].content == ""  # a list of bare links: items without text


def test_generic_html_headings_redirects_and_calls_to_action():
    newsletter = split_newsletter(load("generic.html"))
    assert newsletter.subject == "The Inference Report #112: cheaper tokens, faster agents"
    assert newsletter.source is None and newsletter.date is None
    token, _, agents, japanese, *_ = newsletter.items
    assert token.content.count("\n\n") == 1 and "Read more" not in token.content
    assert agents.url == "https://arxiv.org/abs/2503.12345?utm_source=inferencereport"  # from "Read the paper"
    assert japanese.content == (
        "東京のスタートアップが、スマートフォン上で動作する3億パラメータの文書理解モデルを公開した。手書きの金額も読み取れるという。"
    )
    assert newsletter.items[-1].content == "repeatable benchmarks for vector indexes in Postgres."


def test_sponsor_label_marks_the_next_item_and_stays_out_of_content():
    items = split_newsletter(load("sponsored_mix.html")).items
    assert "SPONSORED" not in items[2].content
    assert "Together with" not in items[4].content


@pytest.mark.parametrize("name", EXPECTED)
@pytest.mark.parametrize("fmt", ["tldr", "html", "markdown", "text"])
def test_explicit_format_is_reported_and_never_crashes(name, fmt):
    newsletter = split_newsletter(load(name), fmt)
    assert newsletter.format == fmt
    assert all(item.title for item in newsletter.items)


def test_forcing_the_carrier_that_auto_detects_gives_the_same_items():
    assert summary(split_newsletter(load("tldr_ai.html"), "html")) == TLDR_AI
    assert summary(split_newsletter(load("tldr_ai.html"), "tldr")) == TLDR_AI
    assert summary(split_newsletter(load("newsletter.md"), "markdown")) == MARKDOWN


TLDR_AS_MARKDOWN = """TLDR AI 2024-12-06

🚀

# **Headlines & Launches**

[**Acme ships Widget 2 for warehouse robots (4 minute read)**](https://example.com/a?utm_source=tldrai)

Acme's Widget 2 helps robots grasp soft objects. It ships in May.

⚡

# **Quick Links**

[**Foo Labs raises a seed round (2 minute read)**](https://example.com/b?utm_source=tldrai)

Foo Labs raised $4M to build evaluation tools.

🎁

**

# Miscellaneous

**

[**Bar (GitHub Repo)**](https://github.com/x/bar?utm_source=tldrai)

Bar is a small tokenizer library.
"""


def test_tldr_converted_to_markdown_keeps_section_headers_out_of_content():
    """The original pipeline's bug: "⚡ # **Quick Links**" ended up inside the item before it."""
    newsletter = split_newsletter(TLDR_AS_MARKDOWN)
    assert newsletter.format == "tldr"
    assert (newsletter.source, newsletter.date) == ("TLDR AI", "2024-12-06")
    assert [asdict(item) for item in newsletter.items] == [
        {
            "title": "Acme ships Widget 2 for warehouse robots (4 minute read)",
            "content": "Acme's Widget 2 helps robots grasp soft objects. It ships in May.",
            "url": "https://example.com/a?utm_source=tldrai",
            "is_sponsored": False,
        },
        {
            "title": "Foo Labs raises a seed round (2 minute read)",
            "content": "Foo Labs raised $4M to build evaluation tools.",
            "url": "https://example.com/b?utm_source=tldrai",
            "is_sponsored": False,
        },
        {
            "title": "Bar (GitHub Repo)",
            "content": "Bar is a small tokenizer library.",
            "url": "https://github.com/x/bar?utm_source=tldrai",
            "is_sponsored": False,
        },
    ]


def test_plain_text_newsletter_with_url_lines():
    text = (
        "Weekly AI Notes\nMarch 2025\n\nHi all, here is this week's roundup.\n\n"
        "OpenAI ships a new batch API\nhttps://example.com/openai-api\nThe new API adds batch pricing and longer\n"
        "contexts for all developers on paid plans.\n\n"
        "Google updates Gemma\nhttps://example.com/gemma\nGemma gets a smaller variant for phones.\n\n"
        "Unsubscribe: https://example.com/unsub\n"
    )
    newsletter = split_newsletter(text)
    assert newsletter.format == "text"
    assert [asdict(item) for item in newsletter.items] == [
        {
            "title": "OpenAI ships a new batch API",
            "content": "The new API adds batch pricing and longer contexts for all developers on paid plans.",
            "url": "https://example.com/openai-api",
            "is_sponsored": False,
        },
        {
            "title": "Google updates Gemma",
            "content": "Gemma gets a smaller variant for phones.",
            "url": "https://example.com/gemma",
            "is_sponsored": False,
        },
    ]


MULTIPART = """From: AI Weekly <news@aiweekly.example>
Subject: =?utf-8?q?AI_Weekly_=E2=80=94_issue_3?=
Date: Tue, 18 Mar 2025 09:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="XYZ"

--XYZ
Content-Type: text/plain; charset="utf-8"
Content-Transfer-Encoding: quoted-printable

CAF=C3=89 ROBOTS OPEN IN PARIS (2 MINUTE READ)

Robots serve coffee =E2=80=94 fast.

--XYZ
Content-Type: text/html; charset="utf-8"
Content-Transfer-Encoding: quoted-printable

<html><body><h2><a href=3D"https://example.com/x">Caf=C3=A9 robots open in Paris</a></h2>
<p>Robots serve coffee =E2=80=94 fast.</p></body></html>

--XYZ--
"""


def test_multipart_email_uses_the_html_part_unless_text_is_asked_for():
    html = split_newsletter(MULTIPART)
    assert (html.format, html.source, html.subject, html.date) == (
        "html",
        "AI Weekly",
        "AI Weekly — issue 3",
        "Tue, 18 Mar 2025 09:00:00 +0000",
    )
    assert summary(html) == [("Café robots open in Paris", "https://example.com/x", False)]
    assert html.items[0].content == "Robots serve coffee — fast."
    text = split_newsletter(MULTIPART, "text")
    assert summary(text) == [("CAFÉ ROBOTS OPEN IN PARIS (2 MINUTE READ)", None, False)]


def test_control_characters_and_invisible_junk_are_stripped_from_items():
    html = (
        "<div><p><b>Robots\x00 learn to fold (2 minute read)</b></p>"
        "<p>Body\x07 with\u200b junk\ufeff and&nbsp;spaces.</p></div>"
    )
    assert summary(split_newsletter(html)) == [("Robots learn to fold (2 minute read)", None, False)]
    assert split_newsletter(html).items[0].content == "Body with junk and spaces."


@pytest.mark.parametrize("text", ["", "   \n\n\t", "\x00" * 1000, "\ufeff", "<html></html>", "# \n\n**"])
def test_empty_input_gives_no_items(text):
    assert split_newsletter(text).items == []


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
def test_binary_junk_gives_no_items(fmt, encoding):
    junk = random.Random(7).randbytes(200_000).decode(encoding, errors="replace")
    assert split_newsletter(junk, fmt).items == []


def test_one_megabyte_newsletter_splits_completely():
    page = load("tldr_ai.html")
    head, body = page.split('<table class="document"', 1)
    copies = 1_000_000 // len(body)
    big = page.replace("</body>", body * copies + "</body>")
    assert len(big) > 1_000_000
    newsletter = split_newsletter(big)
    assert len(newsletter.items) == len(TLDR_AI) * (copies + 1)
    assert summary(newsletter)[-len(TLDR_AI) :] == TLDR_AI


@pytest.mark.parametrize("name", ["newsletter.md", "tldr_plain.txt"])
def test_one_megabyte_of_markdown_or_text_splits_completely(name):
    text = load(name)
    if name.endswith(".txt"):
        text = text.split("\n\n", 1)[1]  # the body, repeated
    copies = 1_000_000 // len(text) + 1
    newsletter = split_newsletter(text * copies)
    assert len(newsletter.items) == len(EXPECTED[name][1]) * copies


@pytest.mark.parametrize(
    "text",
    [
        "<div>" * 20_000 + "<p><b>Title after deep nesting (3 minute read)</b></p><p>Body.</p>" + "</div>" * 20_000,
        "<p><b>Title before a broken declaration (3 minute read)</b></p><p>Body.</p><p>x<![ junk]]>y</p>",
        "<b>" * 50_000 + "<p>Title under unclosed bold tags (3 minute read)</p><p>Body.</p>",
    ],
    ids=["deep-nesting", "broken-declaration", "unclosed-tags"],
)
def test_hostile_html_still_yields_its_item(text):
    items = split_newsletter(text).items
    assert [item.title for item in items] == [re.search(r"Title[^<]*read\)", text).group()]
    assert items[0].content.startswith("Body.")


@pytest.mark.parametrize("text", ["**a " * 250_000, "[a](" * 200_000, "<a " * 300_000, "*" * 1_000_000])
def test_pathological_single_lines_finish_with_no_items(text):
    assert split_newsletter(text).items == []


@pytest.mark.parametrize("bad", [b"bytes", None, 42, ["list"]])
def test_non_string_input_is_a_type_error(bad):
    with pytest.raises(TypeError):
        split_newsletter(bad)


def test_unknown_format_is_a_value_error():
    with pytest.raises(ValueError, match="unknown newsletter format 'pdf'"):
        split_newsletter("text", "pdf")


# --- items come out clean; what a caller already knows is not worked out again -----------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "path", sorted(FIXTURES.iterdir()) + sorted(EMAILS.iterdir()), ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_items_come_out_clean(path, fmt):
    """The analyzer does not clean newsletter items again: clean_text must change none of their fields."""
    newsletter = split_newsletter(path.read_bytes().decode("utf-8", errors="replace"), fmt)
    for item in newsletter.items:
        assert clean_text(item.title) == item.title
        assert clean_text(item.content) == item.content
        assert item.url is None or clean_text(item.url) == item.url


def test_entities_and_markup_left_in_markdown_or_text_are_cleaned_once():
    markdown = (
        "## **Acme &amp; Co ship a robot**\n\nThe robot costs &lt;$100 &mdash; cheap.\n\n"
        "## **Second thing happens**\n\nMore <b>text</b> here, <i>really</i>.\n"
    )
    assert [(i.title, i.content) for i in split_newsletter(markdown, "markdown").items] == [
        ("Acme & Co ship a robot", "The robot costs <$100 — cheap."),
        ("Second thing happens", "More text here, really."),
    ]


def _split_decoded(mail, fmt="auto"):
    return split_newsletter(
        mail.body, fmt, content_type=mail.content_type, source=mail.source, subject=mail.subject, date=mail.date_header
    )


@pytest.mark.parametrize("name", [p.name for p in sorted(EMAILS.iterdir()) if p.name != "attachment-only.eml"])
def test_a_decoded_email_gives_what_the_pasted_email_gives_without_a_second_parse(name, monkeypatch):
    raw = (EMAILS / name).read_bytes()
    pasted = split_newsletter(raw.decode("utf-8", errors="replace"))
    mail = parse_email(raw, name)

    def parse_again(*args, **kwargs):
        raise AssertionError("a body with its content type was read as an email again")

    monkeypatch.setattr(ingest.newsletter, "read_email", parse_again)
    assert _split_decoded(mail) == pasted
    assert pasted.items


def test_a_decoded_body_that_looks_like_headers_stays_a_body():
    body = "From: the editor\nSubject: this week\n\nRobots learn to fold laundry (3 minute read)\nThey fold it well.\n"
    assert split_newsletter(body).subject == "this week"  # pasted: an email
    given = split_newsletter(body, content_type="text/plain")
    assert given.subject is None
    assert "Robots learn to fold laundry (3 minute read)" in [item.title for item in given.items]


def test_given_metadata_wins_over_the_masthead_and_page_title():
    newsletter = split_newsletter(
        load("tldr_ai.html"), content_type="text/html", source="TLDR AI (Gmail)", subject="S", date="2025-03-14T09:00"
    )
    assert (newsletter.format, newsletter.source, newsletter.subject, newsletter.date) == (
        "tldr",
        "TLDR AI (Gmail)",
        "S",
        "2025-03-14T09:00",
    )
    assert summary(newsletter) == TLDR_AI


def test_the_content_type_picks_the_carrier_but_a_text_body_is_still_sniffed():
    html = load("generic.html")
    assert split_newsletter(html, content_type="text/plain").format == "html"  # HTML sent as text/plain
    markdown = load("newsletter.md")
    assert split_newsletter(markdown, content_type="text/plain").format == "markdown"
    assert split_newsletter("<b>Robots</b> fold laundry", content_type="text/html").format == "html"


def test_metadata_parameters_are_keyword_only():
    with pytest.raises(TypeError):
        split_newsletter("text", "auto", "text/plain")  # type: ignore[misc]
    assert isinstance(split_newsletter("text", content_type=None), Newsletter)
