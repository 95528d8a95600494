"""Gmail calls against googleapiclient's HttpMockSequence and the bundled discovery document."""

import base64
import json
from datetime import date
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from googleapiclient.discovery import build
from googleapiclient.http import HttpMockSequence

from workflows import gmail
from workflows.retry import GaveUpError, RetryPolicy

EMAILS = Path(__file__).parents[1] / "fixtures" / "emails"
NO_WAIT = RetryPolicy(attempts=3, sleep=lambda s: None)


def ok(payload) -> tuple[dict, str]:
    return {"status": "200"}, json.dumps(payload)


def service(responses):
    http = HttpMockSequence(responses)
    return build("gmail", "v1", http=http, static_discovery=True), http


def params(uri: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(uri).query).items()}


def test_search_query_adds_after_for_since():
    assert gmail.search_query("from:tldr", date(2025, 2, 3)) == "from:tldr after:2025/02/03"
    assert gmail.search_query(" label:ai ") == "label:ai"


def test_list_follows_pages_and_returns_oldest_first():
    svc, http = service(
        [
            ok({"messages": [{"id": "m4"}, {"id": "m3"}], "nextPageToken": "p2"}),
            ok({"messages": [{"id": "m2"}, {"id": "m1"}], "nextPageToken": "p3"}),
            ok({"messages": [{"id": "m1"}], "resultSizeEstimate": 1}),  # repeated across pages: kept once
        ]
    )
    assert gmail.list_message_ids(svc, "label:newsletters", NO_WAIT) == ["m1", "m2", "m3", "m4"]
    sent = [params(uri) for uri, *_ in http.request_sequence]
    assert [p.get("pageToken") for p in sent] == [None, "p2", "p3"]
    assert all(p["q"] == "label:newsletters" and p["maxResults"] == "100" for p in sent)


def test_list_of_nothing_is_empty():
    svc, _ = service([ok({"resultSizeEstimate": 0})])
    assert gmail.list_message_ids(svc, "from:nobody", NO_WAIT) == []


def test_list_limit_keeps_the_newest():
    svc, http = service([ok({"messages": [{"id": "m9"}, {"id": "m8"}, {"id": "m7"}], "nextPageToken": "p2"})])
    assert gmail.list_message_ids(svc, "q", NO_WAIT, limit=2) == ["m8", "m9"]
    assert len(http.request_sequence) == 1  # no second page fetched


def test_list_retries_a_rate_limit():
    svc, http = service([({"status": "429"}, "{}"), ok({"messages": [{"id": "m1"}]})])
    assert gmail.list_message_ids(svc, "q", NO_WAIT) == ["m1"]
    assert len(http.request_sequence) == 2


def test_fetch_decodes_raw_base64url_without_padding():
    raw = (EMAILS / "windows-1252-quoted-printable.eml").read_bytes()
    encoded = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    svc, http = service([ok({"id": "18c0ffee", "raw": encoded, "internalDate": "1738566900000"})])
    email = gmail.fetch_email(svc, "18c0ffee", NO_WAIT)
    assert email.message_id == "18c0ffee"
    assert email.subject == "Café IA – la lettre du lundi"
    assert "600 M€" in email.body
    assert email.link == "https://mail.google.com/mail/u/0/#all/18c0ffee"
    uri = http.request_sequence[0][0]
    assert "/users/me/messages/18c0ffee" in uri and params(uri)["format"] == "raw"


def test_fetch_of_a_missing_message_fails_without_retrying():
    svc, http = service([({"status": "404"}, json.dumps({"error": {"code": 404, "message": "Not Found"}}))])
    with pytest.raises(GaveUpError, match="HTTP 404"):
        gmail.fetch_email(svc, "gone", NO_WAIT)
    assert len(http.request_sequence) == 1


def test_ensure_label_reuses_an_existing_label():
    svc, http = service(
        [ok({"labels": [{"id": "INBOX", "name": "INBOX"}, {"id": "L7", "name": "news-enhancer/processed"}]})]
    )
    assert gmail.ensure_label(svc, "news-enhancer/processed", NO_WAIT) == "L7"
    assert len(http.request_sequence) == 1


def test_ensure_label_creates_a_missing_label_and_add_label_modifies_the_message():
    svc, http = service(
        [ok({"labels": [{"id": "INBOX", "name": "INBOX"}]}), ok({"id": "L9", "name": "done"}), ok({"id": "m1"})]
    )
    label = gmail.ensure_label(svc, "done", NO_WAIT)
    gmail.add_label(svc, "m1", label, NO_WAIT)
    (_, _, _, _), (create_uri, create_method, create_body, _), (mod_uri, mod_method, mod_body, _) = (
        http.request_sequence
    )
    assert label == "L9"
    assert create_method == "POST" and json.loads(create_body)["name"] == "done"
    assert mod_method == "POST" and mod_uri.split("?")[0].endswith("/users/me/messages/m1/modify")
    assert json.loads(mod_body) == {"addLabelIds": ["L9"]}
