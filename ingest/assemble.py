"""Blocks -> items: one set of rules for every carrier.

- a title followed by paragraphs is an item; a title followed straight by another title is a
  section header ("🚀 Headlines & Launches"): it ends the item before it and never becomes content;
- the title level most items use wins: a bigger heading holding content is the masthead, a smaller
  one inside an item is a sub-heading and stays in the content;
- boilerplate (unsubscribe, advertise with us, referral blurbs, view online, sign-up) ends an item
  and is skipped with the paragraphs after it; "Read more" links lend their url and vanish;
- a line that is only a url is never text: right after an item's title or text it is the item's
  url (when it has none); a title followed by nothing but such lines has no text of its own and is
  a section header ("Miscellaneous" + a link);
- the newsletter's own header lines at the top (its name, the email's subject repeated) are not
  items: a header line followed by the subject line would otherwise read as a title and its text;
- sponsor labels ("Sponsored", "Together with Acme") mark the next item, or as a section header
  every item of their section, as sponsored.

Items leave here clean (`ingest.sanitize.clean_text`): nothing downstream cleans them again.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from ingest.blocks import ALNUM, BOLD_LINE, CTA, LINK_LINE, LONE_URL, MARKER, PARAGRAPH, Block, any_of, is_wordy
from ingest.sanitize import clean_text

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

MASTHEADS = (r"(?P<source>TLDR(?:\s+[A-Za-z]+)?)\s+(?P<date>\d{4}-\d{2}-\d{2})",)
"""Lines naming the newsletter and its date ("TLDR AI 2025-03-14"); read into the metadata, not items."""

_SPONSORED_TITLE = any_of(SPONSORED_TITLE)
_SPONSOR_LABEL = any_of(SPONSOR_LABELS, whole=True)
_BOILERPLATE = tuple((word, re.compile(pattern, re.IGNORECASE)) for word, pattern in BOILERPLATE)
_MASTHEAD = any_of(MASTHEADS, whole=True)
_NOT_ALNUM = re.compile(r"[\W_]+")


@dataclass
class NewsItem:
    title: str
    content: str
    url: str | None = None
    is_sponsored: bool = False


@dataclass
class Masthead:
    """What a masthead line said about the newsletter."""

    source: str | None = None
    date: str | None = None


# ---------------------------------------------------------------------------------------------
# Which blocks take part


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


def keep_blocks(
    blocks: list[Block], *, source: str | None = None, subject: str | None = None
) -> tuple[list[Block], Masthead]:
    """The blocks that can be part of an item, and the masthead's metadata: decoration (emoji section
    icons, stray "**", rules), binary junk and masthead lines are dropped; when junk is most of the
    text, everything is (what survived the junk filter is fragments of it, not titles). So are the
    newsletter's header lines (see `_drop_header`), given its `source` and `subject`."""
    kept: list[Block] = []
    masthead = Masthead()
    junk = total = 0
    for block in blocks:
        total += len(block.text)
        if not ALNUM.search(block.text) and not block.url:
            continue
        if _is_junk(block.text):
            junk += len(block.text)
            continue
        m = _MASTHEAD.match(block.text) if len(block.text) <= 60 else None
        if m:
            masthead.source = masthead.source or m.group("source")
            masthead.date = masthead.date or m.group("date")
            continue
        kept.append(block)
    if junk > total / 2:
        kept = []
    return _drop_header(kept, source or masthead.source, subject), masthead


def _letters(text: str | None) -> str:
    return "".join(ALNUM.findall((text or "").casefold()))


def _drop_header(blocks: list[Block], source: str | None, subject: str | None) -> list[Block]:
    """Before the first paragraph of real text, a line that is the newsletter's name (`source`) or a
    paragraph that repeats the `subject` is the newsletter's header, not news. A title equal to the
    subject stays: the lead story often gives the email its subject."""
    name, topic = _letters(source), _letters(subject)
    if not (name or topic):
        return blocks
    header: set[int] = set()
    for i, block in enumerate(blocks):
        letters = _letters(block.text)
        if letters and (letters == name or (block.rank == PARAGRAPH and letters == topic)):
            header.add(i)
        elif block.rank == PARAGRAPH and not _is_lone_url(block):
            break
    return [block for i, block in enumerate(blocks) if i not in header] if header else blocks


# ---------------------------------------------------------------------------------------------
# Grouping blocks into items


@dataclass
class _Draft:
    title: Block
    sponsored: bool
    paragraphs: list[Block] = field(default_factory=list)
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
        url = (clean_text(url) or None) if url else None
        return NewsItem(clean_text(self.title.text), clean_text(content), url, self.sponsored)


def _is_boilerplate(text: str) -> bool:
    low = text.lower()
    return any(word in low and pattern.search(text) for word, pattern in _BOILERPLATE)


def _is_lone_url(block: Block) -> bool:
    return block.rank == PARAGRAPH and bool(block.url) and (not block.text or bool(LONE_URL.fullmatch(block.text)))


def _kind(block: Block) -> str:
    text = block.text
    if len(text) <= BOILERPLATE_MAX and _is_boilerplate(text):
        return "boilerplate"
    if len(text) <= 80 and _SPONSOR_LABEL.match(text):
        return "label"
    if _is_lone_url(block):
        return "url"
    if block.rank == LINK_LINE and not MARKER.search(text):
        if CTA.match(text):
            return "cta"
        if not is_wordy(text):
            return "decoration"  # "Twitter", "Website": footer and social links
    if block.rank == PARAGRAPH and block.url and len(text) <= 60 and CTA.match(text):
        return "cta"
    return "title" if block.rank else "paragraph"


def assemble(blocks: list[Block]) -> list[NewsItem]:
    """The items of a stream of blocks (see the module's docstring for the rules)."""
    kinds = [_kind(b) for b in blocks]
    n = len(blocks)

    def item_like(i: int) -> bool:
        block = blocks[i]
        if MARKER.search(block.text):
            return True
        j = i + 1
        while j < n and kinds[j] == "url":  # a url line is not text of its own
            j += 1
        if j < n and kinds[j] in ("paragraph", "cta"):
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
        elif kind in ("cta", "url"):
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
            elif block.rank > item_rank and current is not None and not (block.url or MARKER.search(block.text)):
                current.paragraphs.append(Block(block.text, soft=False))  # a sub-heading inside an item
            else:
                sponsored = bool(_SPONSORED_TITLE.search(block.text)) or sponsored_section or sponsor_next
                current = _Draft(block, sponsored)
                drafts.append(current)
                sponsor_next = False
    items = [d.item() for d in drafts]
    # A contents list repeats the titles that come later with their text: keep the full ones.
    full_urls = {it.url for it in items if it.content and it.url}
    return [it for it in items if it.content or it.url not in full_urls]
