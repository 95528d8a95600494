"""HTML: one streaming walk of a document, read two ways.

`walk_html` turns markup into *runs*: the text between two block-element boundaries, as inline
segments (text, bold, link) with the heading level and list-item flag of where the run starts.
The splitter classifies the runs into blocks (`html_blocks`); `html_to_text` joins them into the
visible text that `ingest.sanitize.clean_text` returns for HTML. Both read the same walk, with the
same table of block elements and the same rules for what is hidden.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser

from ingest.blocks import Block, Segment, blocks_from_segments, squash
from ingest.sanitize import strip_junk
from ingest.text import text_blocks

BLOCK_TAGS = frozenset(
    re.findall(
        r"\w+",
        "address article aside blockquote body caption center dd details dialog div dl dt fieldset figcaption figure"
        " footer form h1 h2 h3 h4 h5 h6 header hgroup hr html li main nav ol p pre section summary table tbody td tfoot"
        " th thead tr ul",
    )
)
"""Elements that start a new line of text; everything else is inline."""
VOID_TAGS = frozenset(re.findall(r"\w+", "area base br col embed hr img input link meta param source track wbr"))
HIDDEN_TAGS = frozenset(re.findall(r"\w+", "head script style title noscript template svg object iframe"))
"""Elements whose text is never shown."""
IMPLICIT_CLOSE = {"p": (), "a": (), "li": ("ul", "ol"), "dt": ("dl",), "dd": ("dl",), "tr": ("table",)}
IMPLICIT_CLOSE |= {"td": ("tr", "table"), "th": ("tr", "table")}
"""A start tag that closes an open element of the same name (unless a container lies between)."""
MAX_DEPTH = 512
"""Deeper elements are not tracked (their text still counts): hostile nesting stays linear."""

_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden|max-height\s*:\s*0(?![.\d])", re.IGNORECASE)
_BOLD_STYLE = re.compile(r"font-weight\s*:\s*(?:bold|bolder|[6-9]00)", re.IGNORECASE)
_ANY_TAG = re.compile(r"<[^<>]{0,2000}>")


@dataclass
class Run:
    """The text between two block boundaries."""

    segments: list[Segment | None]
    """Inline runs in order; None marks a <br>."""
    heading: int
    """Heading level (1-6) of where the run starts, 0 outside headings."""
    list_item: bool
    boundaries: int
    """Block-element starts and ends between the previous run and this one."""


@dataclass
class HtmlWalk:
    runs: list[Run] = field(default_factory=list)
    title: str | None = None
    """The document's <title>, squashed."""


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
    """Streams an HTML document into runs without building a tree (a 1 MB email in well under a second).

    Keeps a stack of open elements with what they imply for their text (bold, link, heading level,
    list item, hidden); every block element's start and end closes the current run of text.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[_Open] = [_Open("#root", False, None, 0, False, False, True)]
        self.open_names: Counter[str] = Counter()
        self.segments: list[Segment | None] = []
        self.shape: tuple[int, bool] = (0, False)  # heading level and list-item flag of the current run
        self.boundaries = 0  # block boundaries since the current run started
        self.run_boundaries = 0  # those before it
        self.runs: list[Run] = []
        self.title: list[str] = []

    def flush(self) -> None:
        if self.segments:
            self.runs.append(Run(self.segments, *self.shape, self.run_boundaries))
            self.segments = []

    def _pop_to(self, name: str) -> None:
        closed_blocks = 0
        while len(self.stack) > 1:
            top = self.stack.pop()
            self.open_names[top.name] -= 1
            closed_blocks += top.block
            if top.name == name:
                break
        if closed_blocks:
            self.flush()
            self.boundaries += closed_blocks

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self._start_run()
            self.segments.append(None)
            return
        block = tag in BLOCK_TAGS
        if block:
            self.flush()
            self.boundaries += 1
        if tag in VOID_TAGS:
            self.boundaries += block  # <hr> starts and ends a block
            return
        if tag in IMPLICIT_CLOSE and self.open_names[tag]:
            for top in reversed(self.stack[-50:]):
                if top.name == tag:
                    self._pop_to(tag)
                    break
                if top.name in IMPLICIT_CLOSE[tag]:
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
                parent.hidden or tag in HIDDEN_TAGS or "hidden" in attr or bool(_HIDDEN_STYLE.search(style)),
                block,
            )
        )
        self.open_names[tag] += 1

    def handle_endtag(self, tag: str) -> None:
        if self.open_names[tag]:
            self._pop_to(tag)
        elif tag in BLOCK_TAGS:
            self.flush()
            self.boundaries += 1

    def handle_data(self, data: str) -> None:
        top = self.stack[-1]
        if top.name == "title":
            self.title.append(data)
        if top.hidden:
            return
        if not self.segments:
            self.shape = (top.heading, top.list_item)
        self._start_run()
        self.segments.append((data, top.bold, top.href))

    def _start_run(self) -> None:
        if not self.segments:
            self.run_boundaries, self.boundaries = self.boundaries, 0


def walk_html(markup: str) -> HtmlWalk | None:
    """The runs of an HTML document in reading order, and its <title>; None when html.parser gives up."""
    for attempt in (markup, markup.replace("<![", "&lt;![")):
        walker = _HtmlWalker()
        try:
            walker.feed(attempt)
            walker.close()
        except AssertionError:  # html.parser gives up on some malformed declarations ("<![ junk")
            continue
        walker.flush()
        return HtmlWalk(walker.runs, squash(strip_junk("".join(walker.title))) or None)
    return None


def strip_tags(markup: str) -> str:
    """Markup html.parser cannot read, with anything tag-shaped replaced by a space."""
    return _ANY_TAG.sub(" ", markup)


# ---------------------------------------------------------------------------------------------
# The two readings


def html_to_text(markup: str) -> str:
    """The visible text of an HTML fragment or document: a line break per <br>, a blank line between
    blocks (one line break where a single block boundary separates text); hidden elements dropped.
    Whitespace is left as it came (see `ingest.sanitize.normalize_whitespace`)."""
    walk = walk_html(markup)
    if walk is None:
        return strip_tags(markup)
    out: list[str] = []
    boundaries = 0
    for run in walk.runs:
        boundaries += run.boundaries
        text = "".join("\n" if seg is None else seg[0] for seg in run.segments)
        if not text.strip():
            continue
        if out:
            out.append("\n" * min(2, max(1, boundaries)))
        out.append(text)
        boundaries = 0
    return "".join(out)


def html_blocks(markup: str) -> tuple[list[Block], str | None]:
    """The blocks of an HTML document in reading order, and its <title> (markup html.parser cannot
    read is split as plain text without its tags)."""
    walk = walk_html(markup)
    if walk is None:
        return text_blocks(strip_tags(markup)), None
    blocks: list[Block] = []
    for run in walk.runs:
        blocks.extend(_blocks_from_lines(run.segments, run.heading, run.list_item))
    return blocks, walk.title


def _blocks_from_lines(segments: list[Segment | None], heading: int, list_item: bool) -> list[Block]:
    """Split a run at its <br>s: a title and its text are often one <div> with <br><br> between."""
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
    out: list[Block] = []
    for n, (line, breaks) in enumerate(lines):
        new = blocks_from_segments(line, heading, list_item)
        if new and n and breaks == 1:
            new[0].soft = True
        out.extend(new)
    return out
