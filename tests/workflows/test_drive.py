"""Drive uploads and the retry policy, against googleapiclient's HttpMockSequence (no network)."""

import json
from email import policy as email_policy
from email.parser import BytesParser
from urllib.parse import parse_qs, urlsplit

import pytest
from googleapiclient.discovery import build
from googleapiclient.http import HttpMockSequence

from workflows import drive
from workflows.retry import GaveUpError, RetryPolicy, call_with_retries

REPORT = drive.Report(name="2025-02-03 TLDR AI (m1).md", markdown="# TLDR AI\n\nCafé ☕\n", key="message:m1")
EMPTY = ({"status": "200"}, json.dumps({"files": []}))


def ok(payload) -> tuple[dict, str]:
    return {"status": "200"}, json.dumps(payload)


def error(status: int, reason: str, message: str = "") -> tuple[dict, str]:
    body = {"error": {"code": status, "message": message or reason, "errors": [{"reason": reason}]}}
    return {"status": str(status)}, json.dumps(body)


class Waits:
    """A RetryPolicy's sleep that records instead of sleeping."""

    def __init__(self):
        self.seconds: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


def policy(attempts: int = 4) -> tuple[RetryPolicy, Waits]:
    waits = Waits()
    return RetryPolicy(attempts=attempts, base_delay=1.0, max_delay=8.0, jitter=False, sleep=waits), waits


def service(responses):
    http = HttpMockSequence(responses)
    return build("drive", "v3", http=http, static_discovery=True), http


def multipart(body: bytes, headers: dict) -> tuple[dict, str, bytes]:
    """(metadata, media content type, media bytes) of a multipart upload request."""
    envelope = f"Content-Type: {headers['content-type']}\r\n\r\n".encode() + body
    meta, media = BytesParser(policy=email_policy.compat32).parsebytes(envelope).get_payload()
    return json.loads(meta.get_payload()), media.get_content_type(), media.get_payload(decode=True)


def routes(http) -> list[str]:
    names = []
    for uri, method, *_ in http.request_sequence:
        path = urlsplit(uri).path
        names.append("upload" if path.startswith("/upload/") else "list" if method == "GET" else f"{method} {path}")
    return names


def test_upload_creates_the_file_in_the_folder_with_its_key():
    svc, http = service([EMPTY, ok({"id": "F1", "webViewLink": "https://drive.google.com/file/d/F1/view"})])
    result = drive.upload_once(svc, "folder-9", REPORT, policy=policy()[0])
    assert result == drive.Uploaded("F1", "https://drive.google.com/file/d/F1/view", created=True)
    (list_uri, _, _, _), (upload_uri, method, body, headers) = http.request_sequence
    q = parse_qs(urlsplit(list_uri).query)["q"][0]
    assert "appProperties has { key='newsEnhancerKey' and value='message:m1' }" in q
    assert "'folder-9' in parents" in q and "trashed = false" in q
    assert method == "POST" and parse_qs(urlsplit(upload_uri).query)["uploadType"] == ["multipart"]
    metadata, media_type, media = multipart(body, headers)
    assert metadata["name"] == REPORT.name
    assert metadata["parents"] == ["folder-9"]
    assert metadata["appProperties"] == {"newsEnhancerKey": "message:m1"}
    assert "mimeType" not in metadata  # kept as a Markdown file
    assert media_type == "text/markdown"
    assert media.decode("utf-8") == REPORT.markdown


def test_upload_as_google_doc_asks_drive_to_convert():
    svc, http = service([EMPTY, ok({"id": "D1"})])
    drive.upload_once(svc, "folder-9", REPORT, as_google_doc=True, policy=policy()[0])
    metadata, media_type, _ = multipart(*[http.request_sequence[1][i] for i in (2, 3)])
    assert metadata["mimeType"] == "application/vnd.google-apps.document"
    assert metadata["name"] == "2025-02-03 TLDR AI (m1)"  # no .md on a Google Doc
    assert media_type == "text/markdown"


def test_a_file_already_on_drive_is_not_uploaded_again():
    svc, http = service([ok({"files": [{"id": "F0", "name": REPORT.name}]})])
    result = drive.upload_once(svc, "folder-9", REPORT, policy=policy()[0])
    assert result.file_id == "F0" and result.created is False
    assert routes(http) == ["list"]


def test_429_then_success_waits_and_retries():
    p, waits = policy()
    svc, http = service([EMPTY, error(429, "rateLimitExceeded"), EMPTY, ok({"id": "F2"})])
    assert drive.upload_once(svc, "folder-9", REPORT, policy=p).file_id == "F2"
    assert routes(http) == ["list", "upload", "list", "upload"]  # each attempt looks before it creates
    assert waits.seconds == [1.0]


def test_403_rate_limit_is_retried_but_other_403s_are_not():
    p, waits = policy()
    svc, http = service([EMPTY, error(403, "userRateLimitExceeded"), EMPTY, ok({"id": "F3"})])
    assert drive.upload_once(svc, "folder-9", REPORT, policy=p).file_id == "F3"
    svc, http = service([EMPTY, error(403, "insufficientPermissions", "Insufficient Permission")])
    with pytest.raises(GaveUpError, match=r"after 1 attempt: HTTP 403 \(insufficientPermissions\)"):
        drive.upload_once(svc, "folder-9", REPORT, policy=p)
    assert routes(http) == ["list", "upload"]


def test_500s_until_the_attempts_run_out_give_up_with_a_clear_message():
    p, waits = policy(attempts=3)
    svc, http = service([EMPTY, error(500, "backendError", "Backend Error")] * 3)
    with pytest.raises(GaveUpError) as raised:
        drive.upload_once(svc, "folder-9", REPORT, policy=p)
    assert str(raised.value) == (
        "Drive upload '2025-02-03 TLDR AI (m1).md' failed after 3 attempts: HTTP 500 (backendError): Backend Error"
    )
    assert waits.seconds == [1.0, 2.0]  # exponential
    assert routes(http) == ["list", "upload"] * 3


def test_a_5xx_after_drive_stored_the_file_does_not_duplicate_it():
    p, _ = policy()
    svc, http = service([EMPTY, error(503, "backendError"), ok({"files": [{"id": "F4"}]})])
    result = drive.upload_once(svc, "folder-9", REPORT, policy=p)
    assert result.file_id == "F4"
    assert result.created is True  # our own create stored it
    assert routes(http) == ["list", "upload", "list"]  # found on the retry's look; no second create


def test_check_folder_explains_a_folder_the_app_cannot_see():
    svc, _ = service([error(404, "notFound", "File not found: abc.")])
    with pytest.raises(drive.FolderError, match="--folder-name"):
        drive.check_folder(svc, "abc", policy()[0])
    svc, _ = service([ok({"id": "abc", "name": "notes.md", "mimeType": "text/markdown"})])
    with pytest.raises(drive.FolderError, match="not a folder"):
        drive.check_folder(svc, "abc", policy()[0])
    svc, _ = service([ok({"id": "abc", "name": "Reports", "mimeType": drive.FOLDER_MIME, "trashed": False})])
    assert drive.check_folder(svc, "abc", policy()[0])["name"] == "Reports"


def test_find_or_create_folder_creates_once_then_reuses():
    svc, http = service([EMPTY, ok({"id": "NEW"})])
    assert drive.find_or_create_folder(svc, "News Enhancer reports", policy()[0]) == "NEW"
    body = json.loads(http.request_sequence[1][2])
    assert body == {
        "name": "News Enhancer reports",
        "mimeType": drive.FOLDER_MIME,
        "appProperties": {"newsEnhancerKey": "folder:News Enhancer reports"},
    }
    svc, http = service([ok({"files": [{"id": "OLD", "name": "News Enhancer reports"}]})])
    assert drive.find_or_create_folder(svc, "News Enhancer reports", policy()[0]) == "OLD"
    assert len(http.request_sequence) == 1


def test_query_literals_are_escaped():
    svc, http = service([EMPTY, ok({"id": "F5"})])
    drive.upload_once(svc, "folder-9", drive.Report("x.md", "x", key="message:o'brien"), policy=policy()[0])
    q = parse_qs(urlsplit(http.request_sequence[0][0]).query)["q"][0]
    assert "value='message:o\\'brien'" in q


def test_backoff_is_exponential_capped_and_jittered():
    p = RetryPolicy(base_delay=1.0, max_delay=8.0, jitter=False)
    assert [p.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    jittered = RetryPolicy(base_delay=2.0, max_delay=8.0)
    assert all(1.0 <= jittered.delay(1) <= 2.0 for _ in range(50))


def test_network_timeouts_are_retried():
    p, waits = policy()
    calls = iter([TimeoutError("timed out"), ConnectionResetError("reset"), "done"])

    def flaky():
        outcome = next(calls)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert call_with_retries("flaky call", flaky, p) == "done"
    assert waits.seconds == [1.0, 2.0]


def test_programming_errors_are_not_retried():
    p, waits = policy()
    with pytest.raises(GaveUpError, match="KeyError"):
        call_with_retries("broken call", lambda: {}["missing"], p)
    assert waits.seconds == []
