"""Clean untrusted text before it reaches the model: newsletters arrive as HTML, as mangled email text,
sometimes with binary junk; the model was trained on short, plain, well-formed text.

`clean_text` is applied once to every text on its way to the model: the newsletter splitter cleans
the items it returns (`ingest.assemble`), the analyzer cleans a single article. The smaller functions
exist because the splitter needs the junk removed *without* flattening the layout it parses.
Nothing here translates, transliterates or drops letters: text in any script stays as it was.
"""

from __future__ import annotations

import html
import re
import unicodedata

# Characters that carry no text: C0/C1 controls (tab and newline are layout, kept), lone surrogates
# (left by bytes decoded with surrogateescape), private-use code points, noncharacters, the
# replacement character (what undecodable bytes become), and invisible formatting characters used
# as padding or to hide text (zero-width space, word joiner, BOM, soft hyphen, combining grapheme
# joiner, bidi embeddings/overrides/isolates). Zero-width (non-)joiners are legitimate inside
# words (Persian, Indic scripts, emoji sequences), so they go only where they touch whitespace.
_JUNK = re.compile(
    "["
    "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"  # controls except \t \n \r
    "\ud800-\udfff"  # lone surrogates
    "\ue000-\uf8ff\U000f0000-\U0010ffff"  # private use
    "\ufdd0-\ufdef\ufffe\uffff"  # noncharacters
    "\ufffd"  # replacement character
    "\u00ad\u034f\u180e\u200b\u2060\u2061-\u2064\ufeff"  # soft hyphen, CGJ, zero-width space, word joiner, BOM
    "\u202a-\u202e\u2066-\u2069"  # bidi embeddings, overrides, isolates
    "]+"
)
_LOOSE_JOINERS = re.compile(r"(?:(?<=\s)|^)[\u200c\u200d]+|[\u200c\u200d]+(?=\s|$)", re.MULTILINE)

_NEWLINES = re.compile(r"\r\n?|[\u2028\u2029\x85]")
_HSPACE = re.compile(r"[^\S\n]{2,}|[^\S\n ]")  # runs, or any whitespace but space and newline (tab, NBSP, ...)
_LINE_EDGES = re.compile(r"[ \t]*\n[ \t]*")
_BLANK_RUNS = re.compile(r"\n{3,}")

_HTML_TAG = re.compile(
    r"<(/?)(?:a|abbr|article|b|blockquote|body|br|center|code|div|em|font|footer|h[1-6]|head|header|hr|html|i|img"
    r"|li|meta|ol|p|pre|section|small|span|strong|style|sub|sup|table|tbody|td|th|thead|tr|u|ul)\b[^<>]{0,2000}>",
    re.IGNORECASE,
)
_ENTITY = re.compile(r"&(?:[a-zA-Z]{2,8}|#\d{1,7}|#[xX][0-9a-fA-F]{1,6});")


def _as_str(s: str | bytes) -> str:
    if isinstance(s, bytes):
        return s.decode("utf-8", errors="replace")
    if not isinstance(s, str):
        raise TypeError(f"expected str or bytes, got {type(s).__name__}")
    return s


def strip_junk(s: str | bytes) -> str:
    """Remove characters that carry no text and normalize to NFC; keeps every line break and space.

    Bytes are decoded as UTF-8 with undecodable bytes dropped.
    """
    s = _NEWLINES.sub("\n", _as_str(s))
    s = _JUNK.sub("", s)
    if "\u200c" in s or "\u200d" in s:
        s = _LOOSE_JOINERS.sub("", s)
    if not unicodedata.is_normalized("NFC", s):
        s = unicodedata.normalize("NFC", s)
    return s


def normalize_whitespace(s: str) -> str:
    """One space between words, no spaces at line edges, at most one blank line between paragraphs.

    A run of tabs alone becomes one tab (tab-separated values stay readable); any other run of
    horizontal whitespace (including NBSP and other Unicode spaces) becomes one space.
    """
    s = _HSPACE.sub(lambda m: "\t" if m.group().strip("\t") == "" else " ", s)
    s = _LINE_EDGES.sub("\n", s)
    s = _BLANK_RUNS.sub("\n\n", s)
    return s.strip()


def looks_like_html(s: str) -> bool:
    """True for markup, not for prose that mentions a tag ("use a <div> here") or a generic ("Vec<String>")."""
    tags = _HTML_TAG.finditer(s)
    first = next(tags, None)
    if first is None:
        return False
    return bool(first.group(1)) or next(tags, None) is not None


def html_to_text(s: str) -> str:
    """The visible text of an HTML fragment, one line per block element; scripts, styles and hidden
    elements dropped. The splitter's own HTML walk (`ingest.html.html_to_text`): one block table, one
    notion of hidden, for both."""
    from ingest.html import html_to_text as walk_to_text  # ingest.html builds on this module

    return walk_to_text(s)


def clean_text(s: str | bytes) -> str:
    """Plain, tidy text from whatever arrived: junk characters removed, HTML turned into its text,
    HTML entities decoded, Unicode NFC, whitespace normalized.

    Raises TypeError for anything but str or bytes (bytes are decoded as UTF-8, bad bytes dropped).
    """
    s = strip_junk(s)
    if looks_like_html(s):
        s = strip_junk(html_to_text(s))  # entities such as &#0; can decode to junk
    elif _ENTITY.search(s):
        s = strip_junk(html.unescape(s))
    return normalize_whitespace(s)
