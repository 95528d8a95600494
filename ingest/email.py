"""Read one email: subject, sender, date and the body, from RFC 822 bytes (Gmail's raw messages,
.eml files) or from an email pasted as text (the newsletter tools accept a whole message).

Newsletters arrive as multipart/alternative (HTML and a text copy), sometimes wrapped in
multipart/related or multipart/mixed, in quoted-printable or base64, in any charset. The HTML part
is preferred: its links and headings are what the splitter uses to find items. This is the only
email parser: the workflow and `ingest.newsletter.split_newsletter` both use it.
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

from ingest.sanitize import strip_junk

BODY_PREFERENCE = ("html", "plain")
"""Which body to analyze when a message has several: HTML first, then plain text."""

BODY_FORMATS = {"text/html": "html", "text/plain": "text"}
"""A body part's content type -> the `body_format` stored for it."""
CONTENT_TYPES = {fmt: content_type for content_type, fmt in BODY_FORMATS.items()}

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
    date_header: str = ""
    """The Date header in RFC 5322 form ("Mon, 17 Mar 2025 14:09:03 +0000"); "" when there is none."""

    @property
    def content_type(self) -> str:
        """The body's MIME type, "text/html" or "text/plain"."""
        return CONTENT_TYPES.get(self.body_format, "text/plain")

    @property
    def source(self) -> str:
        """Who sent it, as a newsletter's name: the From display name (the address when there is none)."""
        return sender_name(self.sender)


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


def _body_part(message: EmailMessage, prefer_html: bool = True) -> EmailMessage | None:
    part = message.get_body(preferencelist=BODY_PREFERENCE if prefer_html else BODY_PREFERENCE[::-1])
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
    return " ".join(strip_junk(fix_c1_controls(value)).split())


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
    decoded = _decoded(message, part, message_id, link=link, arrived_ms=arrived_ms)
    if not decoded.body.strip():
        raise NoBodyError(f"message {message_id} has an empty body")
    return decoded


def _decoded(
    message: EmailMessage,
    part: EmailMessage | None,
    message_id: str,
    *,
    link: str | None = None,
    arrived_ms: int | None = None,
) -> DecodedEmail:
    date_header = _header(message, "date")
    return DecodedEmail(
        message_id=message_id,
        subject=_header(message, "subject"),
        sender=_header(message, "from"),
        date=_iso_date(date_header, arrived_ms),
        body=part_text(part) if part is not None else "",
        body_format=BODY_FORMATS[part.get_content_type()] if part is not None else "text",
        link=link,
        date_header=date_header,
    )


# ---------------------------------------------------------------------------------------------
# An email pasted as text

_HEADER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*:")
HEAD_MAX = 65_536
"""A longer header block is not an email's head."""


def looks_like_email(text: str) -> bool:
    """Does `text` start with an RFC 822 header block (maybe after an mbox "From " line) naming at
    least a Subject, From or Date? Line breaks must be "\n" (see `ingest.sanitize.strip_junk`)."""
    head = text.lstrip("\n").split("\n\n", 1)[0]
    lines = head.split("\n")
    if lines and lines[0].startswith("From "):  # mbox separator line
        lines = lines[1:]
    if not lines or len(head) > HEAD_MAX or not _HEADER_NAME.match(lines[0]):
        return False
    names = set()
    for line in lines:
        if line[:1] in (" ", "\t"):
            continue
        m = _HEADER_NAME.match(line)
        if not m:
            return False
        names.add(m.group()[:-1].lower())
    return bool(names & {"subject", "from", "date"})


def read_email(data: str | bytes, *, prefer_html: bool = True) -> DecodedEmail | None:
    """The email in `data` (an .eml file's bytes, or an email pasted as text), decoded like
    `parse_email`; None when `data` is not one (see `looks_like_email`).

    Never raises: a message without a text or HTML part gives an empty body. `prefer_html=False`
    takes the text/plain part when there are both.
    """
    head = data[: HEAD_MAX + 4096]
    if not looks_like_email(strip_junk(head if isinstance(head, str) else head.decode("utf-8", errors="replace"))):
        return None
    try:
        if isinstance(data, str):
            # From bytes: the str parser re-encodes an 8bit body with raw-unicode-escape ("\U0001f680").
            data = strip_junk(data).lstrip("\n").encode("utf-8", errors="surrogateescape")
        message = BytesParser(policy=policy.default).parsebytes(data.lstrip(b"\r\n"))
        return _decoded(message, _body_part(message, prefer_html), "")
    except Exception:
        return None


def sender_name(sender: str) -> str:
    """'TLDR AI <dan@tldrnewsletter.com>' -> 'TLDR AI' (the address when there is no display name)."""
    name, address = parseaddr(sender)
    return name or address or sender
