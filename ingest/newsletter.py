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

The pieces, in the order a newsletter goes through them:

- `ingest.email`: an RFC 822 email (bytes, or text pasted whole) -> headers and the body;
- this module: which carrier the body is, and whether it is a TLDR newsletter;
- `ingest.html`, `ingest.markdown`, `ingest.text`: a carrier -> blocks;
- `ingest.blocks`: the block model and the title rules every carrier shares;
- `ingest.assemble`: blocks -> clean items.

Pure functions, no model. Titles keep their raw text ("Genie 2 can generate worlds (4 minute read)");
the analyzer formats them for the prompt with `data.prompts.format_title`. Items come out clean
(`ingest.sanitize.clean_text` changes none of their fields). See docs/newsletter-formats.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from ingest.assemble import NewsItem, assemble, keep_blocks
from ingest.blocks import READING_TIME
from ingest.email import DecodedEmail, read_email
from ingest.html import html_blocks
from ingest.markdown import markdown_blocks
from ingest.sanitize import strip_junk
from ingest.text import text_blocks

__all__ = ["FORMATS", "Format", "NewsItem", "Newsletter", "split_bytes", "split_email", "split_newsletter"]

Format = Literal["tldr", "html", "markdown", "text"]
FORMATS = ("auto", "tldr", "html", "markdown", "text")
"""What `fmt` accepts: "auto" detects; "tldr" detects the carrier but reports "tldr"; the others force the carrier."""


@dataclass
class Newsletter:
    format: Format
    source: str | None = None
    subject: str | None = None
    date: str | None = None
    items: list[NewsItem] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Which carrier

_HTML_SNIFF = re.compile(
    r"<(?:html|body|table|div|p|br|h[1-6]|a\s[^<>]*href|span|td|li|strong|b|img|center|font)\b[^<>]{0,2000}>",
    re.IGNORECASE,
)
_MD_SNIFF = re.compile(
    r"^#{1,6}[ \t]+\S|\[[^\]\n]{1,300}\]\(<?https?://|^[ \t]*(?:[-*+][ \t]+)?\*\*[^*\n]+\*\*[ \t]*$",
    re.MULTILINE,
)
SNIFF_CHARS = 200_000
"""Carrier and TLDR detection read this much of the body."""
_TLDR_NAME = re.compile(r"\bTLDR\b|tldrnewsletter\.com|tldr\.tech")


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
    reading_times = len(READING_TIME.findall(body[:SNIFF_CHARS]))
    named = "tldr" in (source or "").lower() or bool(_TLDR_NAME.search(body[:20_000]))
    return reading_times >= 2 or (named and reading_times >= 1)


# ---------------------------------------------------------------------------------------------
# The entry points


def _prefers_html(fmt: str) -> bool:
    """Which part of a multipart email to split: the HTML one, unless Markdown or text is asked for."""
    return fmt not in ("markdown", "text")


def split_bytes(data: bytes, fmt: str = "auto") -> Newsletter:
    """`split_newsletter` for a file's bytes: an RFC 822 email is parsed from its bytes (so its body
    decodes in the charset its headers name); anything else is read as UTF-8."""
    mail = read_email(data, prefer_html=_prefers_html(fmt))
    if mail is not None:
        return split_email(mail, fmt)
    return split_newsletter(data.decode("utf-8", errors="replace"), fmt)


def split_email(
    mail: DecodedEmail,
    fmt: str = "auto",
    *,
    source: str | None = None,
    subject: str | None = None,
    date: str | None = None,
) -> Newsletter:
    """`split_newsletter` for an email already decoded (`ingest.email.read_email`): its body, with its
    content type, From display name, Subject and Date header, unless `source`, `subject`, `date` are given."""
    return split_newsletter(
        mail.body,
        fmt,
        content_type=mail.content_type,
        source=source or mail.source or None,
        subject=subject or mail.subject or None,
        date=date or mail.date_header or None,
    )


def split_newsletter(
    text: str,
    fmt: str = "auto",
    *,
    content_type: str | None = None,
    source: str | None = None,
    subject: str | None = None,
    date: str | None = None,
) -> Newsletter:
    """Split a newsletter into items.

    `fmt`: "auto" (detect), "tldr", "html", "markdown" or "text" (see FORMATS).

    Without `content_type`, `text` may be a whole RFC 822 email (see `ingest.email.read_email`);
    its From display name, Subject and Date fill `source`, `subject` and `date`. A caller that has
    already decoded the email passes its body as `text` with its `content_type` ("text/html" or
    "text/plain"): the body is then not read as an email again. `source`, `subject` and `date`, when
    given, win over what the text says (headers, a "TLDR AI 2025-03-14" masthead, the HTML <title>).

    Never raises on bad input: empty, binary or itemless text gives no items. Raises TypeError when
    `text` is not a str and ValueError for an unknown `fmt`.
    """
    if not isinstance(text, str):
        raise TypeError(f"newsletter text must be str, got {type(text).__name__}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown newsletter format {fmt!r}; expected one of {', '.join(FORMATS)}")
    text = strip_junk(text)
    if content_type is None:
        mail = read_email(text, prefer_html=_prefers_html(fmt))
        if mail is not None:
            return split_email(mail, fmt, source=source, subject=subject, date=date)

    carrier = fmt if fmt in ("html", "markdown", "text") else _carrier(text, content_type)
    page_title = None
    if carrier == "html":
        blocks, page_title = html_blocks(text)
    elif carrier == "markdown":
        blocks = markdown_blocks(text)
    else:
        blocks = text_blocks(text)

    kept, masthead = keep_blocks(blocks, source=source, subject=subject or page_title)
    source = source or masthead.source
    date = date or masthead.date
    if fmt == "auto":
        fmt = "tldr" if _looks_tldr(text, source) else carrier
    return Newsletter(fmt, source, subject or page_title or None, date, assemble(kept))  # type: ignore[arg-type]
