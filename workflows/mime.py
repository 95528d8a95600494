"""Decode one email (RFC 822 bytes) into what the analyzer needs: subject, sender, date and the body.

Newsletters arrive as multipart/alternative (HTML and a text copy), sometimes wrapped in
multipart/related or multipart/mixed, in quoted-printable or base64, in any charset. The HTML part
is preferred: its links and headings are what the splitter uses to find items.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parseaddr, parsedate_to_datetime

BODY_PREFERENCE = ("html", "plain")
"""Which body to analyze when a message has several: HTML first, then plain text."""

BODY_FORMATS = {"text/html": "html", "text/plain": "text"}

CHARSET_ALIASES = {
    # Labels mail clients use for a charset other than the one they name (the WHATWG Encoding
    # standard maps them the same way): "iso-8859-1" mail is nearly always windows-1252 (curly
    # quotes, euro sign at 0x80-0x9f), and gb2312 text often uses GBK/GB18030 characters.
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "iso_8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "cp819": "cp1252",
    "windows-1252": "cp1252",
    "iso-8859-9": "cp1254",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "ks_c_5601-1987": "cp949",
    "utf8": "utf-8",
}
GUESS_CHARSETS = {"", "us-ascii", "ascii", "unknown-8bit", "x-unknown", "unknown", "default", "8bit"}
"""Labels that say nothing useful: try UTF-8, then windows-1252 (the two charsets such mail really uses)."""


_C1 = re.compile("[\x80-\x9f]")


class NoBodyError(ValueError):
    """The message has no text or HTML part to analyze (e.g. only attachments)."""


@dataclass
class DecodedEmail:
    """One email, decoded. `body_format` is "html" or "text"."""

    message_id: str
    subject: str
    sender: str
    date: str | None
    """ISO 8601 with the sender's offset, from the Date header (or the mailbox's arrival time)."""
    body: str
    body_format: str
    link: str | None = None
    """Where a person can open the original (Gmail web link or file path)."""


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Text from `data` in the declared `charset`, tolerating wrong, unknown or missing labels."""
    label = (charset or "").strip().strip('"').lower()
    if label in GUESS_CHARSETS:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("cp1252", errors="replace")
    codec = CHARSET_ALIASES.get(label, label)
    try:
        codecs.lookup(codec)
    except LookupError:
        return decode_bytes(data, None)
    return data.decode(codec, errors="replace")


def part_text(part: EmailMessage) -> str:
    """A text part's content with its transfer encoding (quoted-printable, base64, 8bit) and charset undone."""
    payload = part.get_payload(decode=True)
    if payload is None:  # a multipart container or a broken part
        return ""
    return decode_bytes(payload, part.get_content_charset())


def _body_part(message: EmailMessage) -> EmailMessage | None:
    part = message.get_body(preferencelist=BODY_PREFERENCE)
    if part is not None:
        return part
    # get_body skips parts it considers attachments; take any inline-looking text part instead.
    for part in message.walk():
        if part.get_content_type() in BODY_FORMATS and part.get_content_disposition() != "attachment":
            return part
    return None


def fix_c1_controls(text: str) -> str:
    """Characters U+0080-U+009F are windows-1252 bytes decoded as latin-1 (e.g. in an encoded-word
    header labelled iso-8859-1): turn them back into the quotes, dashes and euro signs they were."""
    return _C1.sub(lambda m: m.group().encode("latin-1").decode("cp1252", errors="replace"), text)


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = str(message.get(name) or "")
    except Exception:  # a malformed encoded word or address: keep the raw text rather than fail the message
        value = next((str(v) for k, v in message.raw_items() if k.lower() == name), "")
    return " ".join(fix_c1_controls(value).split())


def _iso_date(header: str, fallback_ms: int | None) -> str | None:
    if header:
        try:
            return parsedate_to_datetime(header).isoformat()
        except (TypeError, ValueError, IndexError):
            pass
    if fallback_ms is not None:
        return datetime.fromtimestamp(fallback_ms / 1000, tz=timezone.utc).isoformat()
    return None


def parse_email(raw: bytes, message_id: str, *, link: str | None = None, arrived_ms: int | None = None) -> DecodedEmail:
    """Decode RFC 822 bytes. Raises `NoBodyError` when there is nothing to analyze.

    `arrived_ms` (Gmail's internalDate) dates a message whose Date header is missing or broken.
    """
    message = BytesParser(policy=policy.default).parsebytes(raw)
    part = _body_part(message)
    if part is None:
        raise NoBodyError(f"message {message_id} has no text or HTML body")
    body = part_text(part)
    if not body.strip():
        raise NoBodyError(f"message {message_id} has an empty body")
    return DecodedEmail(
        message_id=message_id,
        subject=_header(message, "subject"),
        sender=_header(message, "from"),
        date=_iso_date(_header(message, "date"), arrived_ms),
        body=body,
        body_format=BODY_FORMATS[part.get_content_type()],
        link=link,
    )


def sender_name(sender: str) -> str:
    """'TLDR AI <dan@tldrnewsletter.com>' -> 'TLDR AI' (the address when there is no display name)."""
    name, address = parseaddr(sender)
    return name or address or sender
