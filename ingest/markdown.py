"""Markdown: headings (ATX and setext), lists, quotes, fences, and inline bold and links, into blocks."""

from __future__ import annotations

import re

from ingest.blocks import HR, LONE_URL, SETEXT, Block, Segment, blocks_from_segments

_ATX = re.compile(r"^(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
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


def markdown_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    para: list[str] = []
    in_list = False
    in_fence = False

    def flush() -> None:
        nonlocal in_list
        urls = 0  # url lines ending the paragraph ("Text.\nhttps://..."): the item's url, not its text
        while urls + 1 < len(para) and LONE_URL.fullmatch(para[-1 - urls]):
            urls += 1
        for lines in (para[: len(para) - urls], *([line] for line in para[len(para) - urls :])):
            if lines:
                blocks.extend(blocks_from_segments(_md_segments(" ".join(lines)), list_item=in_list))
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
            blocks.extend(blocks_from_segments(_md_segments(m.group(2)), heading=len(m.group(1))))
        elif SETEXT.match(line) and len(para) == 1 and not in_list:
            heading_text = para.pop()
            blocks.extend(blocks_from_segments(_md_segments(heading_text), heading=1 if line[0] == "=" else 2))
        elif HR.match(line):
            flush()
        elif m := _LIST.match(line):
            flush()
            para.append(line[m.end() :])
            in_list = True
        else:
            para.append(line)
    flush()
    return blocks
