"""clean_text turns whatever arrives into plain, tidy text without touching the words of any script."""

import random
import unicodedata
from pathlib import Path

import pytest

from ingest.newsletter import split_newsletter
from ingest.sanitize import clean_text, looks_like_html, normalize_whitespace, strip_junk

CASES = [
    # (input, expected)
    ("a\x00b\x07c\x1b[0md", "abc[0md"),  # NUL, BEL, ESC gone; the printable rest stays
    ("x\x9by\x7fz", "xyz"),  # C1 control and DEL
    ("keep\ttabs\nand lines", "keep\ttabs\nand lines"),
    ("win\r\nmac\rend", "win\nmac\nend"),
    ("a \t  b\u00a0\u2003c", "a b c"),  # mixed and Unicode spaces collapse to one space
    ("a" + " " * 100_000 + "b", "a b"),
    ("p1\n\n\n\n\n\np2", "p1\n\np2"),
    ("  \n  padded  \n  ", "padded"),
    ("e\u0301te\u0301", "été"),  # NFC
    ("zero\u200bwidth\ufeffbom\u2060joiner", "zerowidthbomjoiner"),
    ("pay\u202eload\u202c", "payload"),  # bidi override (hides text) removed
    ("priv\ue000ate", "private"),
    ("bad \ufffd\ufffd bytes", "bad bytes"),
    ("lone \udcff surrogate", "lone surrogate"),
    ("AT&amp;T &lt;3 &#233;", "AT&T <3 é"),
    ("Vec<String> and a <div> tag", "Vec<String> and a <div> tag"),  # prose about markup is not HTML
]


@pytest.mark.parametrize(("raw", "expected"), CASES)
def test_clean_text(raw, expected):
    assert clean_text(raw) == expected


def test_html_fragment_becomes_its_visible_text():
    html = (
        "<div><p>Hello <b>world</b> &amp; friends</p><script>alert('x')</script>"
        "<style>p{color:red}</style><ul><li>one</li><li>two</li></ul>line<br>break</div>"
    )
    assert clean_text(html) == "Hello world & friends\n\none\n\ntwo\n\nline\nbreak"


def test_html_is_read_as_the_splitter_reads_it():
    """One HTML walk for clean_text and the splitter: hidden text stays hidden, every block element
    starts a line, markup html.parser rejects does not raise."""
    assert clean_text('<span style="display:none">preview text</span><p>Shown</p>') == "Shown"
    assert clean_text("<p>a</p><center>b</center>c") == "a\n\nb\nc"
    assert clean_text("<p>Title<![ junk</p><p>more</p>") == "Title<![ junk\n\nmore"


def test_clean_text_of_a_newsletter_keeps_every_item_title_as_a_line():
    fixtures = Path(__file__).parents[1] / "fixtures" / "newsletters"
    for name in ("tldr_ai.html", "sponsored_mix.html"):
        html = (fixtures / name).read_text(encoding="utf-8")
        lines = clean_text(html).split("\n")
        assert all(item.title in lines for item in split_newsletter(html).items)


@pytest.mark.parametrize(
    "text",
    [
        "日本語のテキストはそのまま残る。",
        "مرحبا بالعالم، هذا نص عربي.",
        "\u0645\u0646\u200f \u0647\u0646\u0627",  # Arabic with a right-to-left mark
        "می\u200cخواهم",  # Persian: the zero-width non-joiner inside the word is part of the spelling
        "🧑\u200d💻 Engineering & Resources",  # an emoji ZWJ sequence
        "Ελληνικά, русский, हिन्दी, 한국어",
    ],
)
def test_non_english_text_is_kept_intact(text):
    assert clean_text(text) == unicodedata.normalize("NFC", text)


def test_bytes_are_decoded_dropping_undecodable_ones():
    assert clean_text(b"caf\xc3\xa9 \xff\xfe\x00 ok") == "café ok"


def test_binary_junk_leaves_no_control_characters():
    junk = random.Random(3).randbytes(1 << 18)
    for text in (clean_text(junk), clean_text(junk.decode("latin-1"))):
        assert isinstance(text, str)
        text.encode("utf-8")  # no lone surrogates survive
        assert not [c for c in text if unicodedata.category(c) in ("Cc", "Cs", "Co") and c not in "\n\t"]
        assert "\ufffd" not in text and "   " not in text


@pytest.mark.parametrize("raw", [raw for raw, _ in CASES] + ["<p>a <i>b</i></p>", "x&nbsp;&nbsp;y"])
def test_cleaning_twice_changes_nothing(raw):
    once = clean_text(raw)
    assert clean_text(once) == once


def test_strip_junk_keeps_layout_for_the_splitter():
    assert strip_junk("# Title\x00\n\n  - item\u200b one\n") == "# Title\n\n  - item one\n"
    assert normalize_whitespace(" a \n\n\n b ") == "a\n\nb"


def test_html_detection():
    assert looks_like_html("<p>x</p>")
    assert looks_like_html("a<br>b<br>c")
    assert not looks_like_html("use a <div> here")
    assert not looks_like_html("if a < b and c > d")


@pytest.mark.parametrize("bad", [None, 3, ["x"]])
def test_non_text_is_a_type_error(bad):
    with pytest.raises(TypeError):
        clean_text(bad)
