"""Split a newsletter into its items: title, content, url and whether it is sponsored.

Newsletters arrive as TLDR emails, other HTML emails, Markdown or plain text, sometimes as a whole
RFC 822 email with headers. Each carrier is first turned into one stream of *blocks* (headings,
title lines, paragraphs), then one set of rules groups the stream into items:

- a title is a heading, a line that is all bold or all one link, or a line carrying a TLDR marker
  such as "(4 minute read)", "(Sponsor)" or "(GitHub Repo)";
- a title followed by paragraphs is an item; a title followed straight by another title is a
  section header ("🚀 Headlines & Launches"): it ends the item before it and never becomes content;
- the title level most items use wins: a bigger heading holding content is the masthead, a smaller
  one inside an item is a sub-heading and stays in the content;
- boilerplate (unsubscribe, advertise with us, referral blurbs, view online, sign-up) ends an item
  and is skipped with the paragraphs after it; "Read more" links lend their url and vanish.

Pure functions, no model. Titles keep their raw text ("Genie 2 can generate worlds (4 minute read)");
the analyzer formats them for the prompt with `data.prompts.format_title`. See docs/newsletter-formats.md.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from mcp_server.sanitize import strip_junk

Format = Literal["tldr", "html", "markdown", "text"]
FORMATS = ("auto", "tldr", "html", "markdown", "text")
"""What `fmt` accepts: "auto" detects; "tldr" detects the carrier but reports "tldr"; the others force the carrier."""


@dataclass
class NewsItem:
    title: str
    content: str
    url: str | None = None
    is_sponsored: bool = False


@dataclass
class Newsletter:
    format: Format
    source: str | None = None
    subject: str | None = None
    date: str | None = None
    items: list[NewsItem] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# What the rules recognise. Tables of patterns, so that adding a newsletter's phrasing is one line.

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

_READING_TIME = re.compile(r"\(\s*\d+\s+min(?:ute)?s?\s+read\s*\)", re.IGNORECASE)
_MARKER = re.compile(
    r"(?:\(\s*\d+\s+min(?:ute)?s?\s+read\s*\)|\((?:" + "|".join(ITEM_TAGS) + r")\))\s*(?:\[\d+\])?\s*$",
    re.IGNORECASE,
)

SPONSORED_TITLE = (
    r"\((?:sponsor|sponsored|partner|ad)\)",
    r"^\W*\[?(?:sponsored|sponsor|ad|advertisement|partner)\]?\s*[:|\-–—\]]",
    r"\b(?:sponsored by|presented by|together with|brought to you by|in partnership with)\b",
    r"\bsponsored\W*$|\[(?:sponsor|sponsored|ad)\]",
)
"""A title that says it is an ad."""

SPONSOR_LABELS = (
    r"sponsored?",
    r"ad",
    r"advertisement",
    r"promoted",
    r"paid (?:post|content)",
    r"partner(?:ed)? content",
    r"(?:a word )?from our (?:sponsors?|partners?)",
    r"our sponsors?",
    r"(?:together|in partnership) with\b.*",
    r"(?:presented|brought to you) by\b.*",
    r"sponsored by\b.*",
)
"""A short line on its own that marks what follows as an ad: as a paragraph it marks the next item,
as a section header every item of its section."""

BOILERPLATE = (
    # (a word the line must contain, the pattern): the word is a cheap test before the regex.
    ("unsubscribe", r"unsubscribe"),
    ("online", r"\bview (?:this (?:email|newsletter|issue|post) )?online\b"),
    ("browser", r"\bview (?:this (?:email|newsletter|issue|post) )?in (?:your |a |the )?browser\b"),
    ("web version", r"\bweb version\b"),
    ("online", r"\bread (?:it |this (?:email |issue )?)?online\b"),
    ("advertise", r"\badvertise (?:with|in|on)\b|\bwant to advertise\b"),
    ("refer", r"\brefer(?:ral|rals| a friend| your friends)\b"),
    ("friends", r"\btell your friends\b"),
    ("rewards", r"\bget rewards\b"),
    ("manage", r"\bmanage (?:your |all of your |my )?(?:[\w-]+ ){0,3}(?:subscriptions?|preferences)\b"),
    ("preferences", r"\b(?:update|change) (?:your |my )?(?:email |subscription )?preferences\b"),
    ("receiving this", r"\byou(?:'re| are) receiving this\b"),
    ("forwarded", r"\bforwarded (?:this|to you)\b"),
    ("receive", r"\bno longer wish to receive\b|\bdon'?t want to receive\b"),
    ("sign up", r"\bsign up (?:for|to) (?:this|our|the|tldr)\b"),
    ("subscribe", r"\bsubscribe (?:to|for) (?:this|our|the) newsletter\b|\bnot (?:yet )?subscribed\b"),
    ("for reading", r"\bthanks? (?:you )?for reading\b"),
    ("rights reserved", r"\ball rights reserved\b"),
    ("©", r"^\W*©\s*\d{4}"),
    ("copyright", r"^\W*copyright\s*(?:©\s*)?\d{4}"),
    ("for t", r"\bthat'?s (?:all|it) for (?:this|today)\b"),
    ("see you next", r"\bsee you next (?:week|time|issue|\w+day)\b"),
    ("until next time", r"\buntil next time\b"),
    ("privacy policy", r"\bprivacy policy\b"),
    ("mailing address", r"\bour mailing address\b"),
    ("work at", r"\bwant to work at\b"),
    ("jobs@", r"\bjobs@"),
    ("to this email", r"\b(?:respond|reply) to this email\b"),
    ("powered by", r"\bpowered by (?:beehiiv|substack|mailchimp|convertkit|kit|buttondown|ghost)\b"),
    ("", r"^\W*(?:sign up|subscribe|advertise|share|tweet|forward|view online|follow us)\W*$"),
    ("", r"^\W*(?:cheers|best|best regards|kind regards|regards|thanks|thank you|warmly|yours|talk soon)\W*$"),
)
"""Newsletter machinery, not news. Only short blocks are checked (see BOILERPLATE_MAX)."""

BOILERPLATE_MAX = 400

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

MASTHEADS = (r"(?P<source>TLDR(?:\s+[A-Za-z]+)?)\s+(?P<date>\d{4}-\d{2}-\d{2})",)
"""Lines naming the newsletter and its date ("TLDR AI 2025-03-14"); read into the metadata, not items."""

URL_REDIRECT_PARAMS = ("url", "u", "redirect", "redirect_url", "redirect_uri", "target", "dest", "destination", "link")


def _any_of(patterns: tuple[str, ...], whole: bool = False) -> re.Pattern[str]:
    body = "|".join(f"(?:{p})" for p in patterns)
    return re.compile(rf"^\W*(?:{body})\W*$" if whole else body, re.IGNORECASE)


_SPONSORED_TITLE = _any_of(SPONSORED_TITLE)
_SPONSOR_LABEL = _any_of(SPONSOR_LABELS, whole=True)
_BOILERPLATE = tuple((word, re.compile(pattern, re.IGNORECASE)) for word, pattern in BOILERPLATE)
_CTA = _any_of(CALLS_TO_ACTION, whole=True)
_MASTHEAD = _any_of(MASTHEADS, whole=True)


# ---------------------------------------------------------------------------------------------
# Blocks: what every carrier is turned into.

PARAGRAPH, BOLD_LINE, LINK_LINE = 0, 7, 8
"""Block ranks besides heading levels 1-6: the smaller the rank, the bigger the title."""


@dataclass
class _Block:
    text: str
    url: str | None = None
    rank: int = PARAGRAPH
    list_item: bool = False
    soft: bool = False
    """Follows the paragraph before it after a single line break (joined with one newline)."""


Segment = tuple[str, bool, "str | None"]
"""A run of inline text: (text, is_bold, link href)."""

_URL_IN_TEXT = re.compile(r"https?://[^\s<>\"'\]]+[^\s<>\"'\]).,;:!?]")


_ALNUM = re.compile(r"[^\W_]")
_SENTENCE_END = re.compile(r"[^.]\.$")
"""A bold line ending like a sentence is emphasis, not a title (headlines carry no full stop)."""
_NOT_ALNUM = re.compile(r"[\W_]+")
_LETTER = re.compile(r"[^\W\d_]")


def _squash(text: str) -> str:
    return " ".join(text.split())


_HTTP = re.compile(r"https?://", re.IGNORECASE)
_TRACKED = re.compile(r"/CL\d/(https?(?::|%3A)[^/]+)", re.IGNORECASE)
_REDIRECT = re.compile(r"[?&](?:" + "|".join(URL_REDIRECT_PARAMS) + r")=https?(?::|%3A)", re.IGNORECASE)


def _clean_url(href: str | None) -> str | None:
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


def _is_title_sized(text: str) -> bool:
    return 0 < len(text) <= TITLE_MAX and not re.fullmatch(r"\S*://\S*", text)


def _is_wordy(text: str) -> bool:
    """Several words, or a script written without spaces: enough to be an item's title."""
    return len(text.split()) >= 2 or any(ord(c) > 0x2E7F and c.isalpha() for c in text)


def _blocks_from_segments(segments: list[Segment], heading: int = 0, list_item: bool = False) -> list[_Block]:
    """Classify one block of inline runs: heading, all-bold line, all-link line, a bold/link lead
    followed by text (split in two), or a paragraph."""
    cta_url = None
    tail = [i for i, (t, _, _) in enumerate(segments) if t.strip()]
    if len(tail) > 1 and segments[tail[-1]][2] and _CTA.match(segments[tail[-1]][0].strip()):
        # "... Comments are open until May. [Read the draft](url)": keep the url, drop the words.
        cta_url = _clean_url(segments[tail[-1]][2])
        segments = segments[: tail[-1]]
    text = _squash(strip_junk("".join(t for t, _, _ in segments)))
    if not text:
        return []
    hrefs = [_clean_url(h) for _, _, h in segments if h]
    url = next((h for h in hrefs if h), cta_url)
    if heading:
        return [_Block(text, url, heading, list_item)]
    counts = [(_visible(t), bold, href) for t, bold, href in segments]
    total = sum(n for n, _, _ in counts) or 1
    bold = sum(n for n, b, _ in counts if b)
    first_href = next((h for _, _, h in segments if h), None)
    linked = sum(n for n, _, h in counts if h and h == first_href)
    if _is_title_sized(text):
        if bold >= 0.9 * total and (url or not _SENTENCE_END.search(text)):
            return [_Block(text, url, BOLD_LINE, list_item)]
        if first_href and linked >= 0.9 * total:
            return [_Block(text, _clean_url(first_href), LINK_LINE, list_item)]
        if _MARKER.search(text):
            return [_Block(text, url, BOLD_LINE, list_item)]
    split = _split_lead(segments, list_item)
    if split:
        return split
    return [_Block(text, url, PARAGRAPH, list_item)]


def _split_lead(segments: list[Segment], list_item: bool) -> list[_Block] | None:
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
    lead_text = _squash("".join(t for t, _, _ in lead))
    rest = _squash("".join(t for t, _, _ in segments[i:]))
    if not lead_text or not rest or not _is_title_sized(lead_text) or lead_text.endswith(":"):
        return None
    lead_bold = all(b for t, b, _ in lead if t.strip())
    lead_href = next((_clean_url(h) for _, _, h in lead if h), None)
    separated = rest[0] in "-–—:|·"
    if not (
        _MARKER.search(lead_text)
        or (lead_href and lead_bold)
        or (lead_href and separated)
        or (list_item and lead_bold and separated)
    ):
        return None
    rest = rest.lstrip("-–—:|· ").strip()
    rest_url = next((_clean_url(h) for _, _, h in segments[i:] if h), None)
    title = _Block(lead_text, lead_href, BOLD_LINE if lead_bold else LINK_LINE, list_item)
    return [title, _Block(rest, rest_url, PARAGRAPH, list_item, soft=True)] if rest else [title]


# ---------------------------------------------------------------------------------------------
# HTML


_BLOCK_TAGS = frozenset(
    re.findall(
        r"\w+",
        "address article aside blockquote body caption center dd details dialog div dl dt fieldset figcaption figure"
        " footer form h1 h2 h3 h4 h5 h6 header hgroup hr html li main nav ol p pre section summary table tbody td tfoot"
        " th thead tr ul",
    )
)
"""Elements that start a new line of text; everything else is inline."""
_HIDDEN = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden|max-height\s*:\s*0(?![.\d])", re.IGNORECASE)
_BOLD_STYLE = re.compile(r"font-weight\s*:\s*(?:bold|bolder|[6-9]00)", re.IGNORECASE)

_VOID_TAGS = frozenset(re.findall(r"\w+", "area base br col embed hr img input link meta param source track wbr"))
_HIDDEN_TAGS = frozenset(re.findall(r"\w+", "head script style title noscript template svg object iframe"))
_IMPLICIT_CLOSE = {"p": (), "a": (), "li": ("ul", "ol"), "dt": ("dl",), "dd": ("dl",), "tr": ("table",)}
_IMPLICIT_CLOSE |= {"td": ("tr", "table"), "th": ("tr", "table")}
"""A start tag that closes an open element of the same name (unless a container lies between)."""
MAX_DEPTH = 512
"""Deeper elements are not tracked (their text still counts): hostile nesting stays linear."""


@dataclass
class _Open:
    name: str
    bold: bool
    href: str | None
    heading: int
    list_item: bool
    hidden: bool
    block: bool


class _HtmlWalker(HTMLParser):
    """Streams an HTML document into blocks without building a tree (a 1 MB email in well under a second).

    Keeps a stack of open elements with what they imply for their text (bold, link, heading level,
    list item, hidden); every block element's start and end closes the current run of text.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[_Open] = [_Open("#root", False, None, 0, False, False, True)]
        self.open_names: Counter[str] = Counter()
        self.segments: list[Segment | None] = []  # None marks a <br>
        self.shape: tuple[int, bool] = (0, False)  # heading level and list-item flag of the current block
        self.blocks: list[_Block] = []
        self.title: list[str] = []

    def flush(self) -> None:
        if self.segments:
            self.blocks.extend(_blocks_from_lines(self.segments, *self.shape))
            self.segments = []

    def _pop_to(self, name: str) -> None:
        closed_block = False
        while len(self.stack) > 1:
            top = self.stack.pop()
            self.open_names[top.name] -= 1
            closed_block |= top.block
            if top.name == name:
                break
        if closed_block:
            self.flush()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.segments.append(None)
            return
        block = tag in _BLOCK_TAGS
        if block:
            self.flush()
        if tag in _VOID_TAGS:
            return
        if tag in _IMPLICIT_CLOSE and self.open_names[tag]:
            for top in reversed(self.stack[-50:]):
                if top.name == tag:
                    self._pop_to(tag)
                    break
                if top.name in _IMPLICIT_CLOSE[tag]:
                    break
        if len(self.stack) >= MAX_DEPTH:
            return
        parent = self.stack[-1]
        attr = dict(attrs)
        style = attr.get("style") or ""
        href = attr.get("href") if tag == "a" else None
        heading = int(tag[1]) if len(tag) == 2 and tag[0] == "h" and tag[1] in "123456" else parent.heading
        self.stack.append(
            _Open(
                tag,
                parent.bold or tag in ("b", "strong") or bool(_BOLD_STYLE.search(style)),
                href or parent.href,
                heading,
                parent.list_item or tag == "li",
                parent.hidden or tag in _HIDDEN_TAGS or "hidden" in attr or bool(_HIDDEN.search(style)),
                block,
            )
        )
        self.open_names[tag] += 1

    def handle_endtag(self, tag: str) -> None:
        if self.open_names[tag]:
            self._pop_to(tag)
        elif tag in _BLOCK_TAGS:
            self.flush()

    def handle_data(self, data: str) -> None:
        top = self.stack[-1]
        if top.name == "title":
            self.title.append(data)
        if top.hidden:
            return
        if not self.segments:
            self.shape = (top.heading, top.list_item)
        self.segments.append((data, top.bold, top.href))


def _html_blocks(markup: str) -> tuple[list[_Block], str | None]:
    """The blocks of an HTML document in reading order, and its <title>."""
    for attempt in (markup, markup.replace("<![", "&lt;![")):
        walker = _HtmlWalker()
        try:
            walker.feed(attempt)
            walker.close()
        except AssertionError:  # html.parser gives up on some malformed declarations ("<![ junk")
            continue
        walker.flush()
        return walker.blocks, _squash(strip_junk("".join(walker.title))) or None
    return _text_blocks(re.sub(r"<[^<>]{0,2000}>", " ", markup)), None


def _blocks_from_lines(segments: list[Segment | None], heading: int, list_item: bool) -> list[_Block]:
    """Split a block at its <br>s: a title and its text are often one <div> with <br><br> between."""
    lines: list[tuple[list[Segment], int]] = []
    line: list[Segment] = []
    breaks = 0
    for seg in segments:
        if seg is None:
            if any(t.strip() for t, _, _ in line):
                lines.append((line, breaks))
                line, breaks = [], 0
            breaks += 1
        else:
            line.append(seg)
    if any(t.strip() for t, _, _ in line):
        lines.append((line, breaks))
    out: list[_Block] = []
    for n, (line, breaks) in enumerate(lines):
        new = _blocks_from_segments(line, heading, list_item)
        if new and n and breaks == 1:
            new[0].soft = True
        out.extend(new)
    return out


# ---------------------------------------------------------------------------------------------
# Markdown

_ATX = re.compile(r"^(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_SETEXT = re.compile(r"^(=+|-+)$")
_HR = re.compile(r"^(?:[-*_]\s*){3,}$")
_LIST = re.compile(r"^(?:[-*+]|\d{1,3}[.)])\s+")
_FENCE = re.compile(r"^(?:```|~~~)")
_QUOTE = re.compile(r"^(?:>\s?)+")
_MD_INLINE = re.compile(
    r"!\[[^\]\n]*\]\([^)\n]*\)"  # image: dropped
    r"|\[((?:[^\[\]\n]|\[[^\[\]\n]*\])*)\]\(\s*<?([^()\s<>]*(?:\([^()\s]*\)[^()\s<>]*)*)>?(?:\s+\"[^\"\n]*\")?\s*\)"
    r"|<(https?://[^>\s]+)>"  # autolink
    r"|(\*\*|__)(?=\S)(.+?)(?<=\S)\4"  # bold
)
_MD_SPECIAL = re.compile(r"[*_`\\]")
_MD_STRAY = re.compile(r"(?:(?<=\s)|^)\*+|(?<!\\)\*+(?=\s|$)")
"""Emphasis stars left over when a link splits "*italic [link](url) text*"."""
_MD_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_MD_EMPHASIS = re.compile(
    r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"  # *italic*
    r"|(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])"  # _italic_, not snake_case
)
INLINE_MAX = 20_000
"""Longer Markdown paragraphs skip inline parsing (their markers are only stripped): keeps junk linear."""


def _md_plain(text: str) -> str:
    if not _MD_SPECIAL.search(text):
        return text
    text = _MD_EMPHASIS.sub(lambda m: m.group(1) or m.group(2), text)
    text = _MD_STRAY.sub("", text.replace("**", "").replace("`", ""))
    return _MD_ESCAPE.sub(r"\1", text)


def _md_segments(text: str, bold: bool = False, href: str | None = None, depth: int = 0) -> list[Segment]:
    if depth > 3 or len(text) > INLINE_MAX:
        return [(_md_plain(text), bold, href)]
    out: list[Segment] = []
    pos = 0
    for m in _MD_INLINE.finditer(text):
        if m.start() > pos:
            out.append((_md_plain(text[pos : m.start()]), bold, href))
        if m.group(1) is not None:
            out += _md_segments(m.group(1), bold, m.group(2), depth + 1)
        elif m.group(3):
            out.append((m.group(3), bold, m.group(3)))
        elif m.group(5) is not None:
            out += _md_segments(m.group(5), True, href, depth + 1)
        pos = m.end()
    if pos < len(text):
        out.append((_md_plain(text[pos:]), bold, href))
    return out


def _markdown_blocks(text: str) -> list[_Block]:
    blocks: list[_Block] = []
    para: list[str] = []
    in_list = False
    in_fence = False

    def flush() -> None:
        nonlocal in_list
        if para:
            blocks.extend(_blocks_from_segments(_md_segments(" ".join(para)), list_item=in_list))
        para.clear()
        in_list = False

    for raw in text.split("\n"):
        line = raw.strip()
        if line.startswith(">"):
            line = _QUOTE.sub("", line).strip()
        if _FENCE.match(line):
            in_fence = not in_fence
            flush()
            continue
        if in_fence:
            if line:
                para.append(line)
            continue
        if not line:
            flush()
            continue
        if m := _ATX.match(line):
            flush()
            blocks.extend(_blocks_from_segments(_md_segments(m.group(2)), heading=len(m.group(1))))
        elif _SETEXT.match(line) and len(para) == 1 and not in_list:
            heading_text = para.pop()
            blocks.extend(_blocks_from_segments(_md_segments(heading_text), heading=1 if line[0] == "=" else 2))
        elif _HR.match(line):
            flush()
        elif m := _LIST.match(line):
            flush()
            para.append(line[m.end() :])
            in_list = True
        else:
            para.append(line)
    flush()
    return blocks


# ---------------------------------------------------------------------------------------------
# Plain text

_REF_LINE = re.compile(r"^\s*\[(\d{1,4})\]\s*(https?://\S+)\s*$", re.IGNORECASE)
_REF = re.compile(r"\s*\[(\d{1,4})\]")
_BARE_URL = re.compile(r"<?https?://\S+>?")
_NUMBERED = re.compile(r"^\d{1,2}[.)]\s+\S")


def _is_caps(line: str) -> bool:
    return line.isupper() and len(_LETTER.findall(line)) >= 4


def _text_title_rank(first: str, rest: list[str]) -> int:
    """Is the first line of a plain-text paragraph a title? Returns its rank (0: no)."""
    if not _is_title_sized(first):
        return PARAGRAPH
    if _MARKER.search(first):
        return BOLD_LINE
    if _is_caps(first):
        return 2  # caps without a marker: a section header, or an item title when items look like that
    if first[-1] in ".,;:!" or not (first[0].isupper() or first[0].isdigit() or not first[0].isascii()):
        return PARAGRAPH
    if not _is_wordy(first):
        return PARAGRAPH
    if _NUMBERED.match(first) or not rest:
        return BOLD_LINE if len(first) <= 150 else PARAGRAPH
    if _BARE_URL.fullmatch(rest[0]) or len(first) <= min(100, 0.6 * len(rest[0])):
        return BOLD_LINE
    return PARAGRAPH


def _text_links(text: str, refs: dict[str, str]) -> tuple[str, str | None]:
    """Strip "[n]" references and bare urls out of a line; return the text and its first url."""
    urls: list[str] = []

    def ref(m: re.Match[str]) -> str:
        if m.group(1) in refs:
            urls.append(refs[m.group(1)])
            return ""
        return m.group(0)

    text = _REF.sub(ref, text)
    for m in _URL_IN_TEXT.finditer(text):
        urls.append(m.group(0))
    return text, next((u for u in map(_clean_url, urls) if u), None)


def _text_blocks(text: str) -> list[_Block]:
    refs: dict[str, str] = {}
    lines: list[str] = []
    for line in text.split("\n"):
        m = _REF_LINE.match(line)
        if m:
            refs[m.group(1)] = m.group(2)
        else:
            lines.append(line.strip())
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        if line:
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])

    blocks: list[_Block] = []
    for para in paragraphs:
        if len(para) >= 2 and _SETEXT.match(para[1]) and len(para[1]) >= 3:
            title, url = _text_links(para[0], refs)
            blocks.append(_Block(_squash(title), url, 1 if para[1][0] == "=" else 2))
            para = para[2:]
        para = [line for line in para if not _HR.match(line)]
        if not para:
            continue
        rank = _text_title_rank(para[0], para[1:])
        if rank:
            title, url = _text_links(para[0], refs)
            title = _URL_IN_TEXT.sub("", title).replace("()", "").replace("<>", "")
            title = re.sub(r"[\s\-–—:|]+$", "", title) or para[0]
            blocks.append(_Block(_squash(title), url, rank))
            para = para[1:]
        if para:
            bare = [_clean_url(line.strip("<>")) for line in para if _BARE_URL.fullmatch(line)]
            body, url = _text_links(" ".join(line for line in para if not _BARE_URL.fullmatch(line)), refs)
            url = next((u for u in bare if u), url)
            if _squash(body) or url:
                blocks.append(_Block(_squash(body), url))
    return blocks


# ---------------------------------------------------------------------------------------------
# Grouping blocks into items


@dataclass
class _Draft:
    title: _Block
    sponsored: bool
    paragraphs: list[_Block] = field(default_factory=list)
    url: str | None = None

    def item(self) -> NewsItem:
        content = ""
        for para in self.paragraphs:
            if not para.text:
                continue
            if content:
                content += "\n" if para.soft else "\n\n"
            content += para.text
        url = self.title.url or self.url or next((p.url for p in self.paragraphs if p.url), None)
        return NewsItem(self.title.text, content, url, self.sponsored)


def _is_junk(text: str) -> bool:
    """Binary junk decoded as text: mostly symbols with hardly any spaces, or hardly any letters."""
    sample = text[:4000]
    chars = "".join(sample.split())
    n = len(chars)
    if n < 16:
        return False
    alnum = len(_NOT_ALNUM.sub("", chars))
    spaces = len(sample) - n
    return alnum < 0.4 * n or (n - alnum > 0.25 * n and spaces < 0.08 * len(sample))


def _is_boilerplate(text: str) -> bool:
    low = text.lower()
    return any(word in low and pattern.search(text) for word, pattern in _BOILERPLATE)


def _kind(block: _Block) -> str:
    text = block.text
    if len(text) <= BOILERPLATE_MAX and _is_boilerplate(text):
        return "boilerplate"
    if len(text) <= 80 and _SPONSOR_LABEL.match(text):
        return "label"
    if block.rank == LINK_LINE and not _MARKER.search(text):
        if _CTA.match(text):
            return "cta"
        if not _is_wordy(text):
            return "decoration"  # "Twitter", "Website": footer and social links
    if block.rank == PARAGRAPH and block.url and len(text) <= 60 and _CTA.match(text):
        return "cta"
    return "title" if block.rank else "paragraph"


def _assemble(blocks: list[_Block]) -> list[NewsItem]:
    kinds = [_kind(b) for b in blocks]
    n = len(blocks)

    def item_like(i: int) -> bool:
        block = blocks[i]
        if _MARKER.search(block.text):
            return True
        if i + 1 < n and kinds[i + 1] in ("paragraph", "cta"):
            return True
        return block.list_item and block.url is not None and block.rank >= BOLD_LINE

    ranks = Counter(blocks[i].rank for i in range(n) if kinds[i] == "title" and item_like(i))
    if not ranks:
        return []
    item_rank = max(ranks, key=lambda r: (ranks[r], r))

    drafts: list[_Draft] = []
    current: _Draft | None = None
    skipping = sponsored_section = sponsor_next = seen_title = False
    for i, (block, kind) in enumerate(zip(blocks, kinds, strict=True)):
        if kind == "decoration":
            continue
        if kind == "boilerplate":
            current, skipping = None, True
        elif kind == "cta":
            if current is not None and current.url is None and block.url:
                current.url = block.url
        elif kind == "label":
            if block.rank:
                current, skipping, sponsored_section = None, False, True
            else:
                sponsor_next = True
        elif kind == "paragraph":
            if current is not None and not skipping:
                current.paragraphs.append(block)
        else:
            skipping = False
            first, seen_title = not seen_title, True
            if not item_like(i):  # a section header
                current, sponsored_section, sponsor_next = None, False, False
            elif block.rank < item_rank and first:  # the masthead
                current = None
            elif block.rank > item_rank and current is not None and not (block.url or _MARKER.search(block.text)):
                current.paragraphs.append(_Block(block.text, soft=False))  # a sub-heading inside an item
            else:
                sponsored = bool(_SPONSORED_TITLE.search(block.text)) or sponsored_section or sponsor_next
                current = _Draft(block, sponsored)
                drafts.append(current)
                sponsor_next = False
    items = [d.item() for d in drafts]
    # A contents list repeats the titles that come later with their text: keep the full ones.
    full_urls = {it.url for it in items if it.content and it.url}
    return [it for it in items if it.content or it.url not in full_urls]


# ---------------------------------------------------------------------------------------------
# Emails, detection, the entry point

_HEADER = re.compile(r"[A-Za-z][A-Za-z0-9-]*:")
_HTML_SNIFF = re.compile(
    r"<(?:html|body|table|div|p|br|h[1-6]|a\s[^<>]*href|span|td|li|strong|b|img|center|font)\b[^<>]{0,2000}>",
    re.IGNORECASE,
)
_MD_SNIFF = re.compile(
    r"^#{1,6}[ \t]+\S|\[[^\]\n]{1,300}\]\(<?https?://|^[ \t]*(?:[-*+][ \t]+)?\*\*[^*\n]+\*\*[ \t]*$",
    re.MULTILINE,
)
SNIFF_CHARS = 200_000
_TLDR_NAME = re.compile(r"\bTLDR\b|tldrnewsletter\.com|tldr\.tech")


@dataclass
class _Email:
    body: str
    content_type: str
    source: str | None
    subject: str | None
    date: str | None


def _parse_email(text: str, prefer_html: bool) -> _Email | None:
    """Headers and the best body part of an RFC 822 message; None when `text` is not one."""
    head = text.lstrip("\n").split("\n\n", 1)[0]
    lines = head.split("\n")
    if lines and lines[0].startswith("From "):  # mbox separator line
        lines = lines[1:]
    if not lines or len(head) > 65_536 or not _HEADER.match(lines[0]):
        return None
    names = set()
    for line in lines:
        if line[:1] in (" ", "\t"):
            continue
        m = _HEADER.match(line)
        if not m:
            return None
        names.add(m.group()[:-1].lower())
    if not names & {"subject", "from", "date"}:
        return None
    try:
        # From bytes: the str parser re-encodes an 8bit body with raw-unicode-escape ("\U0001f680").
        raw = text.lstrip("\n").encode("utf-8", errors="surrogateescape")
        msg = email.message_from_bytes(raw, policy=email.policy.default)
    except Exception:
        return None

    def header(name: str) -> str | None:
        try:
            value = msg[name]
        except Exception:
            return None
        if value is None:
            return None
        return _squash(strip_junk(str(value))) or None

    sender = header("from")
    source = sender
    if sender:
        display, address = email.utils.parseaddr(sender)
        source = display or address or sender

    parts = [p for p in msg.walk() if not p.is_multipart() and p.get_content_disposition() != "attachment"]
    by_type = {}
    for part in parts:
        by_type.setdefault(part.get_content_type(), part)
    order = ("text/html", "text/plain") if prefer_html else ("text/plain", "text/html")
    part = next((by_type[t] for t in order if t in by_type), None)
    body, content_type = "", "text/plain"
    if part is not None:
        content_type = part.get_content_type()
        try:
            body = part.get_content()
        except Exception:
            payload = part.get_payload(decode=True) or b""
            body = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else str(payload)
        if not isinstance(body, str):
            body = ""
    return _Email(strip_junk(body), content_type, source, header("subject"), header("date"))


def _carrier(body: str, content_type: str | None) -> str:
    if content_type == "text/html":
        return "html"
    sample = body[:SNIFF_CHARS]
    if re.search(r"<!doctype\s+html|<html\b|<body\b", sample, re.IGNORECASE) or (
        len(tags := _HTML_SNIFF.findall(sample)) >= 3 and ("</" in sample or len(tags) >= 10)
    ):
        return "html"
    lines = sample.count("\n") + 1
    if len(_MD_SNIFF.findall(sample)) >= max(3, lines // 100):
        return "markdown"
    return "text"


def _looks_tldr(body: str, source: str | None) -> bool:
    reading_times = len(_READING_TIME.findall(body[:SNIFF_CHARS]))
    named = "tldr" in (source or "").lower() or bool(_TLDR_NAME.search(body[:20_000]))
    return reading_times >= 2 or (named and reading_times >= 1)


def split_newsletter(text: str, fmt: str = "auto") -> Newsletter:
    """Split a newsletter into items.

    `fmt`: "auto" (detect), "tldr", "html", "markdown" or "text" (see FORMATS). `text` may be a whole
    RFC 822 email; its Subject, From and Date fill `subject`, `source` and `date`. Never raises on
    bad input: empty, binary or itemless text gives no items. Raises TypeError when `text` is not a
    str and ValueError for an unknown `fmt`.
    """
    if not isinstance(text, str):
        raise TypeError(f"newsletter text must be str, got {type(text).__name__}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown newsletter format {fmt!r}; expected one of {', '.join(FORMATS)}")
    text = strip_junk(text)
    source = subject = date = None
    content_type = None
    mail = _parse_email(text, prefer_html=fmt not in ("markdown", "text"))
    if mail is not None:
        text, content_type = mail.body, mail.content_type
        source, subject, date = mail.source, mail.subject, mail.date

    carrier = fmt if fmt in ("html", "markdown", "text") else _carrier(text, content_type)
    page_title = None
    if carrier == "html":
        blocks, page_title = _html_blocks(text)
    elif carrier == "markdown":
        blocks = _markdown_blocks(text)
    else:
        blocks = _text_blocks(text)

    kept: list[_Block] = []
    junk = total = 0
    for block in blocks:
        total += len(block.text)
        if not _ALNUM.search(block.text) and not block.url:
            continue  # decoration: emoji section icons, stray "**", rules
        if _is_junk(block.text):
            junk += len(block.text)
            continue
        masthead = _MASTHEAD.match(block.text) if len(block.text) <= 60 else None
        if masthead:
            source = source or masthead.group("source")
            date = date or masthead.group("date")
            continue
        kept.append(block)

    if junk > total / 2:
        kept = []  # binary junk: what survived the junk filter is fragments of it, not titles
    if fmt == "auto":
        fmt = "tldr" if _looks_tldr(text, source) else carrier
    return Newsletter(fmt, source, subject or page_title or None, date, _assemble(kept))  # type: ignore[arg-type]
