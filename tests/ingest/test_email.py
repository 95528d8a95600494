"""Decoding the email fixtures: body choice, transfer encodings, charsets, headers; the same parser
for raw bytes and for an email pasted as text."""

from pathlib import Path

import pytest

from ingest.email import (
    NoBodyError,
    decode_bytes,
    fix_c1_controls,
    looks_like_email,
    parse_email,
    read_email,
    sender_name,
)

EMAILS = Path(__file__).parents[1] / "fixtures" / "emails"


def load(name: str):
    return parse_email((EMAILS / name).read_bytes(), name)


def test_multipart_alternative_prefers_html_and_decodes_quoted_printable_utf8():
    email = load("tldr-multipart-alternative.eml")
    assert email.body_format == "html"
    assert email.body.startswith("<!DOCTYPE html>")
    # soft line breaks joined, =E2=80=99 decoded, =3D decoded
    assert "Acme’s Widget-7B is an open-weights model tuned for reviewing pull requests." in email.body
    assert '<a href="https://example.com/acme-widget-7b">' in email.body
    assert "🚀 Headlines &amp; Launches" in email.body
    assert "HEADLINES & LAUNCHES" not in email.body  # the text/plain copy was not chosen


def test_headers_are_decoded():
    email = load("tldr-multipart-alternative.eml")
    assert email.subject == "Acme’s Widget-7B 🚀, tiny reasoners"  # RFC 2047 base64 encoded-word
    assert email.sender == "TLDR AI <dan@tldrnewsletter.example>"
    assert sender_name(email.sender) == "TLDR AI"
    assert email.date == "2025-02-03T10:00:00+00:00"


def test_plain_text_base64_falls_back_to_text():
    email = load("plain-text-base64.eml")
    assert email.body_format == "text"
    assert "2. Zürich lab shrinks speech models" in email.body
    assert email.subject == "The Weekly Model — issue 42"
    assert email.date == "2025-02-04T07:30:00-05:00"  # the sender's offset is kept


def test_iso_8859_1_label_is_read_as_windows_1252():
    email = load("windows-1252-quoted-printable.eml")
    assert "“Mistral lève 600 M€ pour ses modèles”" in email.body  # 0x93, 0xE8, 0x80, 0x94
    assert "l’entraînement" in email.body  # 0x92
    assert "Café IA – la lettre" in email.body  # 0x96
    assert not any("\x80" <= ch <= "\x9f" for ch in email.body)
    assert email.subject == "Café IA – la lettre du lundi"  # the same fix in an encoded-word header
    assert email.sender == "Café IA <lettre@cafe-ia.example>"


def test_nested_related_and_mixed_finds_the_html_and_skips_attachments():
    email = load("mixed-related-alternative.eml")
    assert email.body_format == "html"
    assert "Acme ships a linter" in email.body
    assert "PDF" not in email.body


def test_attachment_only_message_is_a_clear_error():
    with pytest.raises(NoBodyError, match="no text or HTML body"):
        load("attachment-only.eml")


def test_missing_date_falls_back_to_the_arrival_time():
    raw = b"From: a@example.com\r\nSubject: hi\r\nContent-Type: text/plain\r\n\r\nHello there\r\n"
    email = parse_email(raw, "m1", arrived_ms=1738576800000)
    assert email.date == "2025-02-03T10:00:00+00:00"
    assert parse_email(raw, "m1").date is None


@pytest.mark.parametrize(
    ("data", "charset", "expected"),
    [
        ("naïve".encode(), "utf-8", "naïve"),
        ("naïve".encode(), None, "naïve"),  # no label: UTF-8 when it decodes
        ("naïve".encode("cp1252"), None, "naïve"),  # no label, not UTF-8: windows-1252
        ("naïve".encode(), "us-ascii", "naïve"),  # a wrong "us-ascii" label on UTF-8 bytes
        ("“q”".encode("cp1252"), "x-no-such-charset", "“q”"),  # unknown label: guessed
        ("Grüße".encode("iso-8859-15"), "ISO-8859-15", "Grüße"),
        ("日本語".encode("shift_jis"), "shift_jis", "日本語"),
        (b"ok \xff", "utf-8", "ok \ufffd"),  # broken bytes never raise
    ],
)
def test_decode_bytes(data, charset, expected):
    assert decode_bytes(data, charset) == expected


def test_fix_c1_controls_leaves_other_text_alone():
    assert fix_c1_controls("a\x93b\x94 é 🚀") == "a“b” é 🚀"


@pytest.mark.parametrize("name", ["tldr-multipart-alternative.eml", "windows-1252-quoted-printable.eml"])
def test_an_email_pasted_as_text_decodes_like_its_bytes(name):
    raw = (EMAILS / name).read_bytes()
    pasted = read_email(raw.decode("utf-8").replace("\r\n", "\n"))
    decoded = parse_email(raw, name)
    assert pasted is not None
    assert (pasted.subject, pasted.sender, pasted.date, pasted.body_format) == (
        decoded.subject,
        decoded.sender,
        decoded.date,
        decoded.body_format,
    )
    assert pasted.body.replace("\r\n", "\n") == decoded.body.replace("\r\n", "\n")


def test_what_the_splitter_reads_from_an_email():
    email = load("windows-1252-quoted-printable.eml")
    assert (email.content_type, email.source) == ("text/html", "Café IA")
    assert email.date_header == "Mon, 03 Feb 2025 08:15:00 +0100"  # the header's form; `date` is ISO 8601
    assert load("plain-text-base64.eml").content_type == "text/plain"


def test_pasted_email_can_prefer_the_text_part_and_never_raises_without_a_body():
    text = (EMAILS / "tldr-multipart-alternative.eml").read_text(encoding="utf-8")
    assert read_email(text).body_format == "html"
    assert read_email(text, prefer_html=False).body_format == "text"
    bare = read_email((EMAILS / "attachment-only.eml").read_text(encoding="utf-8"))
    assert bare is not None and bare.body == "" and bare.subject


@pytest.mark.parametrize(
    ("text", "is_email"),
    [
        ("From: a@example.com\nSubject: hi\n\nbody", True),
        ("From someone@example.com Mon Mar 17 2025\nDate: Mon, 17 Mar 2025 14:09:03 +0000\n\nbody", True),  # mbox
        ("Subject: hi\n continued\nX-Mailer: y\n\nbody", True),  # folded header line
        ("X-Mailer: y\nContent-Type: text/plain\n\nbody", False),  # no Subject, From or Date
        ("TLDR AI 2025-03-14\n\nHeadlines", False),
        ("Subject: hi\nnot a header line\n\nbody", False),
        ("", False),
    ],
)
def test_looks_like_email(text, is_email):
    assert looks_like_email(text) is is_email
    assert (read_email(text) is not None) is is_email
