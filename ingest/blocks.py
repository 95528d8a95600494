"""Blocks: what every carrier (HTML, Markdown, plain text) is turned into before items are found.

A block is one heading, title line or paragraph with its link. `blocks_from_segments` classifies one
block of inline runs (text, bold, link) the same way for every carrier, so the rules that recognise
a title live here once: a heading, a line that is all bold or all one link, or a line carrying a
TLDR marker such as "(4 minute read)", "(Sponsor)" or "(GitHub Repo)".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from ingest.sanitize import strip_junk

# ---------------------------------------------------------------------------------------------
# What a title looks like. Tables of patterns, so that adding a newsletter's phrasing is one line.

TITLE_MAX = 250
"""Longer lines are paragraphs even when bold: titles are short."""

ITEM_TAGS = (
    "sponsor",
    "sponsored",
    "github repo",
    "website",
    "hacker news thread",
    "hugging face hub",
    "podcast",
    "video",
    "paper",
    "pdf",
    "tool",
    "demo",
)
"""TLDR's bracketed tags at the end of a title, e.g. "Sequin (GitHub Repo)"."""

CALLS_TO_ACTION = (
    r"read (?:more|on|it here|the(?: full)? \w+(?: post)?)",
    r"continue reading",
    r"learn more",
    r"full story",
    r"see more",
    r"more here",
    r"source",
    r"link",
    r"here",
    r"watch(?: the video)?",
    r"listen",
    r".{0,50}(?:→|»|>>)",
)
"""A link line that only points at the item above: its url becomes the item's url when it has none."""

URL_REDIRECT_PARAMS = ("url", "u", "redirect", "redirect_url", "redirect_uri", "target", "dest", "destination", "link")
"""Query parameters of click-tracking redirects that hold the real url."""


def any_of(patterns: tuple[str, ...], whole: bool = False) -> re.Pattern[str]:
    """One case-insensitive regex for any of `patterns`; with `whole`, the whole line (punctuation aside)."""
    body = "|".join(f"(?:{p})" for p in patterns)
    return re.compile(rf"^\W*(?:{body})\W*$" if whole else body, re.IGNORECASE)


READING_TIME = re.compile(r"\(\s*\d+\s+min(?:ute)?s?\s+read\s*\)", re.IGNORECASE)
MARKER = re.compile(
    r"(?:\(\s*\d+\s+min(?:ute)?s?\s+read\s*\)|\((?:" + "|".join(ITEM_TAGS) + r")\))\s*(?:\[\d+\])?\s*$",
    re.IGNORECASE,
)
"""A TLDR marker at the end of a title: a reading time or an item tag, maybe with a "[n]" reference."""
CTA = any_of(CALLS_TO_ACTION, whole=True)

SETEXT = re.compile(r"^(=+|-+)$")
"""A line underlining the one above it as a heading (Markdown and plain-text emails alike)."""
HR = re.compile(r"^(?:[-*_]\s*){3,}$")
"""A horizontal rule."""

URL_IN_TEXT = re.compile(r"https?://[^\s<>\"'\]]+[^\s<>\"'\]).,;:!?]")
LONE_URL = re.compile(r"<?https?://\S+>?")
"""A line that is nothing but a url: never an item's text (see `ingest.assemble`)."""
ALNUM = re.compile(r"[^\W_]")
LETTER = re.compile(r"[^\W\d_]")
_SENTENCE_END = re.compile(r"[^.]\.$")
"""A bold line ending like a sentence is emphasis, not a title (headlines carry no full stop)."""

# ---------------------------------------------------------------------------------------------
# The block model

PARAGRAPH, BOLD_LINE, LINK_LINE = 0, 7, 8
"""Block ranks besides heading levels 1-6: the smaller the rank, the bigger the title."""


@dataclass
class Block:
    text: str
    url: str | None = None
    rank: int = PARAGRAPH
    list_item: bool = False
    soft: bool = False
    """Follows the paragraph before it after a single line break (joined with one newline)."""


Segment = tuple[str, bool, "str | None"]
"""A run of inline text: (text, is_bold, link href)."""


def squash(text: str) -> str:
    return " ".join(text.split())


_HTTP = re.compile(r"https?://", re.IGNORECASE)
_TRACKED = re.compile(r"/CL\d/(https?(?::|%3A)[^/]+)", re.IGNORECASE)
_REDIRECT = re.compile(r"[?&](?:" + "|".join(URL_REDIRECT_PARAMS) + r")=https?(?::|%3A)", re.IGNORECASE)


def clean_url(href: str | None) -> str | None:
    """An http(s) url, unwrapped from click-tracking redirects (TLDR's /CL0/<encoded url>/, ?url=...)."""
    if not href:
        return None
    href = href.strip()
    if not _HTTP.match(href):
        return None
    tracked = _TRACKED.search(href)
    if tracked:
        return unquote(tracked.group(1))
    if not _REDIRECT.search(href):
        return href
    try:
        query = parse_qs(urlsplit(href).query)
    except ValueError:
        return href
    for name in URL_REDIRECT_PARAMS:
        for value in query.get(name, ()):
            if _HTTP.match(value):
                return value
    return href


def _visible(text: str) -> int:
    return len("".join(text.split()))


def is_title_sized(text: str) -> bool:
    return 0 < len(text) <= TITLE_MAX and not re.fullmatch(r"\S*://\S*", text)


def is_wordy(text: str) -> bool:
    """Several words, or a script written without spaces: enough to be an item's title."""
    return len(text.split()) >= 2 or any(ord(c) > 0x2E7F and c.isalpha() for c in text)


# ---------------------------------------------------------------------------------------------
# Classifying inline runs


def blocks_from_segments(segments: list[Segment], heading: int = 0, list_item: bool = False) -> list[Block]:
    """Classify one block of inline runs: heading, all-bold line, all-link line, a bold/link lead
    followed by text (split in two), or a paragraph."""
    cta_url = None
    tail = [i for i, (t, _, _) in enumerate(segments) if t.strip()]
    if len(tail) > 1 and segments[tail[-1]][2] and CTA.match(segments[tail[-1]][0].strip()):
        # "... Comments are open until May. [Read the draft](url)": keep the url, drop the words.
        cta_url = clean_url(segments[tail[-1]][2])
        segments = segments[: tail[-1]]
    text = squash(strip_junk("".join(t for t, _, _ in segments)))
    if not text:
        return []
    hrefs = [clean_url(h) for _, _, h in segments if h]
    url = next((h for h in hrefs if h), cta_url)
    if heading:
        return [Block(text, url, heading, list_item)]
    counts = [(_visible(t), bold, href) for t, bold, href in segments]
    total = sum(n for n, _, _ in counts) or 1
    bold = sum(n for n, b, _ in counts if b)
    first_href = next((h for _, _, h in segments if h), None)
    linked = sum(n for n, _, h in counts if h and h == first_href)
    if is_title_sized(text):
        if bold >= 0.9 * total and (url or not _SENTENCE_END.search(text)):
            return [Block(text, url, BOLD_LINE, list_item)]
        if first_href and linked >= 0.9 * total:
            return [Block(text, clean_url(first_href), LINK_LINE, list_item)]
        if MARKER.search(text):
            return [Block(text, url, BOLD_LINE, list_item)]
    split = _split_lead(segments, list_item)
    if split:
        return split
    if url is None and LONE_URL.fullmatch(text):
        url = clean_url(text.strip("<>"))  # a bare url in Markdown: a link all the same
    return [Block(text, url, PARAGRAPH, list_item)]


def _split_lead(segments: list[Segment], list_item: bool) -> list[Block] | None:
    """ "**[Title](url)** - what it is" -> a title block and a paragraph, when the lead is clearly a title."""
    lead: list[Segment] = []
    i = 0
    for i, (t, bold, href) in enumerate(segments):  # noqa: B007
        if not t.strip():
            lead.append((t, bold, href))
            continue
        if not (bold or href):
            break
        lead.append((t, bold, href))
    else:
        return None
    lead_text = squash("".join(t for t, _, _ in lead))
    rest = squash("".join(t for t, _, _ in segments[i:]))
    if not lead_text or not rest or not is_title_sized(lead_text) or lead_text.endswith(":"):
        return None
    lead_bold = all(b for t, b, _ in lead if t.strip())
    lead_href = next((clean_url(h) for _, _, h in lead if h), None)
    separated = rest[0] in "-–—:|·"
    if not (
        MARKER.search(lead_text)
        or (lead_href and lead_bold)
        or (lead_href and separated)
        or (list_item and lead_bold and separated)
    ):
        return None
    rest = rest.lstrip("-–—:|· ").strip()
    rest_url = next((clean_url(h) for _, _, h in segments[i:] if h), None)
    title = Block(lead_text, lead_href, BOLD_LINE if lead_bold else LINK_LINE, list_item)
    return [title, Block(rest, rest_url, PARAGRAPH, list_item, soft=True)] if rest else [title]
