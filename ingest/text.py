"""Plain text: paragraphs split at blank lines, a short first line as the title, "[n]" link
references and bare urls turned into the blocks' links."""

from __future__ import annotations

import re

from ingest.blocks import (
    BOLD_LINE,
    HR,
    LETTER,
    LONE_URL,
    MARKER,
    PARAGRAPH,
    SETEXT,
    URL_IN_TEXT,
    Block,
    clean_url,
    is_title_sized,
    is_wordy,
    squash,
)

_REF_LINE = re.compile(r"^\s*\[(\d{1,4})\]\s*(https?://\S+)\s*$", re.IGNORECASE)
_REF = re.compile(r"\s*\[(\d{1,4})\]")
_NUMBERED = re.compile(r"^\d{1,2}[.)]\s+\S")


def _is_caps(line: str) -> bool:
    return line.isupper() and len(LETTER.findall(line)) >= 4


def _title_rank(first: str, rest: list[str]) -> int:
    """Is the first line of a plain-text paragraph a title? Returns its rank (0: no)."""
    if not is_title_sized(first):
        return PARAGRAPH
    if MARKER.search(first):
        return BOLD_LINE
    if _is_caps(first):
        return 2  # caps without a marker: a section header, or an item title when items look like that
    if first[-1] in ".,;:!" or not (first[0].isupper() or first[0].isdigit() or not first[0].isascii()):
        return PARAGRAPH
    if not is_wordy(first):
        return PARAGRAPH
    if _NUMBERED.match(first) or not rest:
        return BOLD_LINE if len(first) <= 150 else PARAGRAPH
    if LONE_URL.fullmatch(rest[0]) or len(first) <= min(100, 0.6 * len(rest[0])):
        return BOLD_LINE
    return PARAGRAPH


def _links(text: str, refs: dict[str, str]) -> tuple[str, str | None]:
    """Strip "[n]" references and bare urls out of a line; return the text and its first url."""
    urls: list[str] = []

    def ref(m: re.Match[str]) -> str:
        if m.group(1) in refs:
            urls.append(refs[m.group(1)])
            return ""
        return m.group(0)

    text = _REF.sub(ref, text)
    for m in URL_IN_TEXT.finditer(text):
        urls.append(m.group(0))
    return text, next((u for u in map(clean_url, urls) if u), None)


def text_blocks(text: str) -> list[Block]:
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

    blocks: list[Block] = []
    for para in paragraphs:
        if len(para) >= 2 and SETEXT.match(para[1]) and len(para[1]) >= 3:
            title, url = _links(para[0], refs)
            blocks.append(Block(squash(title), url, 1 if para[1][0] == "=" else 2))
            para = para[2:]
        para = [line for line in para if not HR.match(line)]
        if not para:
            continue
        rank = _title_rank(para[0], para[1:])
        if rank:
            title, url = _links(para[0], refs)
            title = URL_IN_TEXT.sub("", title).replace("()", "").replace("<>", "")
            title = re.sub(r"[\s\-–—:|]+$", "", title) or para[0]
            blocks.append(Block(squash(title), url, rank))
            para = para[1:]
        if para:
            bare = [clean_url(line.strip("<>")) for line in para if LONE_URL.fullmatch(line)]
            body, url = _links(" ".join(line for line in para if not LONE_URL.fullmatch(line)), refs)
            url = next((u for u in bare if u), url)
            if squash(body) or url:
                blocks.append(Block(squash(body), url))
    return blocks
