"""The whole Gmail -> analyze -> Drive run against a fake Google account: dry runs, uploads exactly
once across crashes, kills and reruns, retries, failures, labels and the digest."""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from pathlib import Path

import pytest

import schemas
from ingest.report import excerpt
from tests.workflows.conftest import CARRIES_CONTENT, EMAILS, ScriptedAnalyzer, clients
from tests.workflows.fake_google import FakeGoogle
from workflows import drive, gmail_drive
from workflows.gmail_drive import GmailSource, WorkflowConfig, run
from workflows.retry import RetryPolicy
from workflows.state import StateStore, _Transaction

FOLDER = "folder-1"
LABEL = "news-enhancer/processed"


def no_wait() -> RetryPolicy:
    return RetryPolicy(attempts=3, jitter=False, sleep=lambda s: None)


def run_once(tmp_path: Path, google: FakeGoogle, analyzer=None, **options):
    """One run of the workflow as the CLI does it, with a fresh state connection each time."""
    gmail, drive_service = clients(google)
    config = WorkflowConfig(
        out_dir=tmp_path / "out",
        folder_id=None if options.get("dry_run") else FOLDER,
        query="label:newsletters",
        progress=False,
        retry=options.pop("retry", None) or no_wait(),
        **options,
    )
    with StateStore(tmp_path / "state.db") as state:
        return run(
            GmailSource(gmail, "label:newsletters", no_wait()),
            analyzer or ScriptedAnalyzer(),
            state,
            config,
            drive_service=drive_service,
            gmail_service=gmail,
        )


def keys(google: FakeGoogle) -> Counter:
    return Counter(f["appProperties"][drive.KEY_PROPERTY] for f in google.files(FOLDER))


def assert_everything_uploaded_once(google: FakeGoogle, tmp_path: Path, labelled: bool = False) -> None:
    found = keys(google)
    assert all(n == 1 for n in found.values()), f"duplicates on Drive: {found}"
    assert {k for k in found if k.startswith("message:")} == {"message:m1", "message:m2", "message:m3"}
    assert sum(k.startswith("digest:") for k in found) == 1
    with StateStore(tmp_path / "state.db") as state:
        for message_id in ("m1", "m2", "m3"):
            st = state.get(message_id)
            assert st.stage == "uploaded" and st.error is None
            assert found[f"message:{message_id}"] == 1
            assert Path(st.report_path).is_file()
            assert st.labelled is labelled
            by_id = {f["id"]: f for f in google.files(FOLDER)}
            assert by_id[st.drive_file_id]["appProperties"][drive.KEY_PROPERTY] == f"message:{message_id}"


def test_dry_run_writes_reports_and_a_digest_and_uploads_nothing(tmp_path, google):
    summary = run_once(tmp_path, google, dry_run=True)
    assert (summary.messages, summary.items, summary.written) == (3, 7, 3)
    assert (summary.uploaded, summary.skipped, summary.failed) == (0, 0, 0)
    assert not [route for route in google.log() if route.startswith("drive.") or route == "gmail.modify"]
    assert google.files() == []
    reports = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert reports == [
        "2025-02-03 Acme’s Widget-7B 🚀, tiny reasoners (m1).md",
        "2025-02-03 Café IA – la lettre du lundi (m3).md",
        "2025-02-04 The Weekly Model — issue 42 (m2).md",
        summary.digest_path.name,
    ]
    tldr = (tmp_path / "out" / reports[0]).read_text()
    assert tldr.startswith("# Acme’s Widget-7B 🚀, tiny reasoners\n")
    assert (
        "[Acme releases Widget-7B, an open model for code review (4 minute read)](https://example.com/acme-widget-7b)"
        in tldr
    )
    assert "*Sponsored*" in tldr  # the Foobar CI item
    assert "- **Companies:** Acme" in tldr
    assert "[original email](https://mail.google.com/mail/u/0/#all/m1)" in tldr
    digest = summary.digest_path.read_text()
    assert "3 newsletters, 7 items (1 sponsored)" in digest
    assert "(`2025-02-04 The Weekly Model — issue 42 (m2).md`)" in digest  # dry run: local file names


def test_reports_list_items_by_relevance_with_their_text_and_an_index(tmp_path, google):
    summary = run_once(tmp_path, google, dry_run=True)
    with StateStore(tmp_path / "state.db") as state:
        report = state.get("m1").report
    schemas.validate("newsletter_report", report)
    text = next(p for p in (tmp_path / "out").iterdir() if "(m1)" in p.name).read_text()
    editorial = [item for item in report["items"] if not item["is_sponsored"]]
    ranked = sorted(editorial, key=lambda i: -i["relevance_score"])
    positions = [text.index(f"**{item['relevance_score']}/10**") for item in ranked]
    assert positions == sorted(positions)
    assert text.index("## Items by relevance") < text.index("## Sponsored") < text.index("## Index")
    assert "- **By relevance:** " in text and f"; {len(report['items']) - len(editorial)} sponsored" in text
    index = text.split("## Index")[1]
    acme = sum("Acme" in item["company_names"] for item in editorial)
    assert acme == 1 and "- **Once each:** Acme #" in index
    if CARRIES_CONTENT:  # the item's own text, once ArticleResult carries it
        for item in report["items"]:
            assert excerpt(item["content"]) in text.replace("\\", "")
    assert summary.failed == 0
    digest = summary.digest_path.read_text()
    trending = digest.split("## What is trending")[1]
    assert "- **Acme** (" in trending and "- **AI Model** (" in trending


def test_upload_run_uploads_each_report_once_and_a_rerun_uploads_nothing(tmp_path, google):
    first = run_once(tmp_path, google)
    assert (first.messages, first.uploaded, first.skipped, first.failed) == (3, 3, 0, 0)
    assert_everything_uploaded_once(google, tmp_path)
    uploads = google.log().count("drive.upload")
    assert uploads == 4  # three reports and the digest

    analyzer = ScriptedAnalyzer()
    second = run_once(tmp_path, google, analyzer)
    assert (second.messages, second.uploaded, second.skipped, second.failed) == (3, 0, 3, 0)
    assert analyzer.calls == []  # nothing analyzed twice
    assert google.log().count("drive.upload") == uploads
    assert_everything_uploaded_once(google, tmp_path)

    uploaded = {f["name"]: f for f in google.files(FOLDER)}
    report = uploaded["2025-02-03 Acme’s Widget-7B 🚀, tiny reasoners (m1).md"]
    assert report["uploadedMimeType"] == "text/markdown"
    assert "Acme releases Widget" in report["content"]
    digest = next(f for f in uploaded.values() if f["appProperties"][drive.KEY_PROPERTY].startswith("digest:"))
    assert f"(https://drive.google.com/file/d/{report['id']}/view)" in digest["content"]


def test_dry_run_then_real_run_reuses_the_analysis(tmp_path, google):
    run_once(tmp_path, google, dry_run=True)
    analyzer = ScriptedAnalyzer()
    summary = run_once(tmp_path, google, analyzer)
    assert analyzer.calls == [] and summary.uploaded == 3
    assert_everything_uploaded_once(google, tmp_path)


def test_google_doc_conversion(tmp_path, google):
    summary = run_once(tmp_path, google, as_google_doc=True)
    assert (summary.uploaded, summary.failed) == (3, 0)
    docs = google.files(FOLDER)
    assert len(docs) == 4  # three reports and the digest
    assert {f["mimeType"] for f in docs} == {drive.GOOGLE_DOC_MIME}  # Drive converts on upload
    assert {f["uploadedMimeType"] for f in docs} == {"text/markdown"}  # from the Markdown report
    assert all(not f["name"].endswith(".md") for f in docs)
    by_key = {f["appProperties"][drive.KEY_PROPERTY]: f for f in docs}
    m1 = by_key["message:m1"]
    assert m1["name"] == "2025-02-03 Acme’s Widget-7B 🚀, tiny reasoners (m1)"
    assert "## Items by relevance" in m1["content"] and "## Index" in m1["content"]
    digest = next(f for key, f in by_key.items() if key.startswith("digest:"))
    assert f"(https://drive.google.com/file/d/{m1['id']}/view)" in digest["content"]  # links to the Doc
    assert "## What is trending" in digest["content"]
    rerun = run_once(tmp_path, google, as_google_doc=True)
    assert (rerun.uploaded, rerun.skipped) == (0, 3) and len(google.files(FOLDER)) == 4


class Crash(BaseException):
    """Stands in for a kill: not an Exception, so the per-message error handling can't catch it."""


def _after(method, message_id="m2"):
    """Wrap a StateStore method: run it, then crash once it has committed for `message_id`."""

    def wrapper(self, mid, *args, **kwargs):
        method(self, mid, *args, **kwargs)
        if mid == message_id:
            raise Crash(method.__name__)

    return wrapper


def _instead(message_id="m2"):
    def wrapper(self, mid, *args, **kwargs):
        if mid == message_id:
            raise Crash("before the state write")
        return ORIGINAL[wrapper.name](self, mid, *args, **kwargs)

    return wrapper


ORIGINAL = {name: getattr(StateStore, name) for name in ("record_uploaded", "record_labelled")}


def _crash_before_upload(service, folder_id, report, **kwargs):
    if report.key == "message:m2":
        raise Crash("before the upload")
    return ORIGINAL_UPLOAD(service, folder_id, report, **kwargs)


def _crash_after_digest_upload(self, key, **kwargs):
    if kwargs.get("file_id"):
        raise Crash("digest uploaded, state not written")
    return ORIGINAL_DIGEST(self, key, **kwargs)


ORIGINAL_UPLOAD = drive.upload_once
ORIGINAL_DIGEST = StateStore.record_digest

CRASH_POINTS = {
    # name: (what to patch, replacement, analyzer calls the rerun makes)
    "after the fetch was saved": ("record_fetched", _after(StateStore.record_fetched), 2),
    "after the analysis was saved": ("record_analyzed", _after(StateStore.record_analyzed), 1),
    "after the report was written": ("record_report_written", _after(StateStore.record_report_written), 1),
    "after the state write, before the upload": ("upload_once", _crash_before_upload, 1),
    "after the upload, before the state write": ("record_uploaded", None, 1),
    "after the upload was saved, before the label": ("record_uploaded", _after(StateStore.record_uploaded), 1),
    "after the label, before its state write": ("record_labelled", None, 1),
    "after the digest upload, before its state write": ("record_digest", _crash_after_digest_upload, 0),
}


@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_a_crash_at_any_point_loses_nothing_and_the_rerun_uploads_no_duplicate(tmp_path, google, monkeypatch, point):
    name, replacement, rerun_analyses = CRASH_POINTS[point]
    if replacement is None:
        replacement = _instead()
        replacement.name = name
    target = gmail_drive.drive if name == "upload_once" else StateStore
    monkeypatch.setattr(target, name, replacement)
    with pytest.raises(Crash):
        run_once(tmp_path, google, label=LABEL)
    monkeypatch.undo()

    analyzer = ScriptedAnalyzer()
    summary = run_once(tmp_path, google, analyzer, label=LABEL)
    assert summary.failed == 0
    assert len(analyzer.calls) == rerun_analyses  # finished analyses are never redone
    assert_everything_uploaded_once(google, tmp_path, labelled=True)
    labels = google._load()["labels"]
    assert [label["name"] for label in labels] == [LABEL]  # created once, even across the crash
    label_id = labels[0]["id"]
    assert all(google.labels_of(m).count(label_id) == 1 for m in ("m1", "m2", "m3"))


def _killed_run(tmp_path: Path, google_path: Path, point: str) -> None:
    """In a forked child: run until `point`, then die at once (os._exit: no cleanup, no commit, no flush)."""
    if point == "after the upload, before the state write":

        def die(self, message_id, *args, **kwargs):
            if message_id == "m2":
                os._exit(137)
            return ORIGINAL["record_uploaded"](self, message_id, *args, **kwargs)

        StateStore.record_uploaded = die
    else:  # inside the transaction that records m2's upload, before it commits
        original_exit = _Transaction.__exit__

        def die_before_commit(self, exc_type, *rest):
            row = self._db.execute("SELECT stage FROM messages WHERE message_id = 'm2'").fetchone()
            if exc_type is None and row and row[0] == "uploaded":
                os._exit(137)
            return original_exit(self, exc_type, *rest)

        _Transaction.__exit__ = die_before_commit
    run_once(tmp_path, FakeGoogle(google_path))
    os._exit(0)


@pytest.mark.parametrize("point", ["after the upload, before the state write", "with the state transaction open"])
def test_a_killed_process_loses_nothing_and_the_rerun_uploads_no_duplicate(tmp_path, google, point):
    child = multiprocessing.get_context("fork").Process(target=_killed_run, args=(tmp_path, google.path, point))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 137
    assert keys(google)["message:m2"] == 1  # the upload reached Drive before the kill
    with StateStore(tmp_path / "state.db") as state:
        assert state.get("m1").stage == "uploaded"  # finished before the kill: kept
        assert state.get("m2").stage == "report_written"  # the uncommitted step is gone, nothing else

    analyzer = ScriptedAnalyzer()
    summary = run_once(tmp_path, google, analyzer)
    assert (summary.uploaded, summary.skipped, summary.failed) == (1, 2, 0)  # m3 new; m1 done, m2 found on Drive
    assert analyzer.calls == ["Café IA"]  # only m3 still needed its analysis
    assert_everything_uploaded_once(google, tmp_path)


def test_429_then_success_uploads_once(tmp_path, google):
    waits: list[float] = []
    google.fail_next("drive.upload", 429)
    summary = run_once(tmp_path, google, retry=RetryPolicy(attempts=3, jitter=False, sleep=waits.append))
    assert (summary.uploaded, summary.failed) == (3, 0)
    assert waits == [1.0]
    assert_everything_uploaded_once(google, tmp_path)


def test_a_5xx_after_drive_stored_the_upload_does_not_duplicate_it(tmp_path, google):
    google.fail_next("drive.upload", 503, commit=True)
    summary = run_once(tmp_path, google)
    assert (summary.uploaded, summary.failed) == (3, 0)
    assert_everything_uploaded_once(google, tmp_path)


def test_500s_give_up_record_the_failure_and_the_rerun_finishes(tmp_path, google):
    google.fail_next("drive.upload", 500, 500, 500)  # the first upload (m1) fails on all 3 attempts
    summary = run_once(tmp_path, google)
    assert (summary.uploaded, summary.failed) == (2, 1)
    message = "Drive upload '2025-02-03 Acme’s Widget-7B 🚀, tiny reasoners (m1).md' failed after 3 attempts: HTTP 500"
    assert summary.failures[0][0] == "m1" and summary.failures[0][1].startswith(message)
    with StateStore(tmp_path / "state.db") as state:
        st = state.get("m1")
    assert (st.stage, st.failures) == ("report_written", 1) and st.error.startswith(message)
    assert "## Not processed" in summary.digest_path.read_text()

    analyzer = ScriptedAnalyzer()
    rerun = run_once(tmp_path, google, analyzer)
    assert (rerun.uploaded, rerun.skipped, rerun.failed) == (1, 2, 0)
    assert analyzer.calls == []
    found = keys(google)
    assert all(n == 1 for n in found.values())
    assert sum(k.startswith("digest:") for k in found) == 2  # the first run's digest covered two newsletters


def test_a_message_that_fails_is_recorded_and_the_others_go_on(tmp_path, google):
    summary = run_once(tmp_path, google, ScriptedAnalyzer(fail_on="Zürich"))
    assert (summary.uploaded, summary.failed) == (2, 1)
    assert summary.failures == [("m2", "RuntimeError: the model ran out of memory")]
    with StateStore(tmp_path / "state.db") as state:
        assert state.get("m2").stage == "fetched" and "out of memory" in state.get("m2").error


def test_a_message_without_a_body_fails_clearly(tmp_path):
    raw = {"m1": (EMAILS / "attachment-only.eml").read_bytes(), "m2": (EMAILS / "plain-text-base64.eml").read_bytes()}
    google = FakeGoogle(tmp_path / "google.json", raw)
    summary = run_once(tmp_path, google)
    assert summary.failures == [("m1", "NoBodyError: message m1 has no text or HTML body")]
    assert summary.uploaded == 1


def test_label_processed_labels_each_message_once(tmp_path, google):
    run_once(tmp_path, google, label=LABEL)
    run_once(tmp_path, google, label=LABEL)
    labels = google._load()["labels"]
    assert [lab["name"] for lab in labels] == [LABEL]
    assert all(google.labels_of(m) == ["INBOX", labels[0]["id"]] for m in ("m1", "m2", "m3"))
    assert google.log().count("gmail.modify") == 3
    assert google.log().count("gmail.labels.create") == 1


def test_a_folder_the_app_cannot_see_stops_the_run_before_any_work(tmp_path, google):
    gmail, drive_service = clients(google)
    config = WorkflowConfig(out_dir=tmp_path / "out", folder_id="not-ours", progress=False, retry=no_wait())
    analyzer = ScriptedAnalyzer()
    with StateStore(tmp_path / "state.db") as state, pytest.raises(drive.FolderError, match="--folder-name"):
        run(GmailSource(gmail, "q"), analyzer, state, config, drive_service=drive_service)
    assert analyzer.calls == [] and "gmail.list" not in google.log()


def test_the_body_is_split_with_what_the_email_told_and_never_parsed_again(tmp_path, google, monkeypatch):
    def parse_again(*args, **kwargs):
        raise AssertionError("the decoded body was read as an email again")

    monkeypatch.setattr("ingest.newsletter.read_email", parse_again)
    analyzer = ScriptedAnalyzer()
    monkeypatch.setattr(analyzer, "analyze_newsletter", parse_again)  # the run hands over a split newsletter
    summary = run_once(tmp_path, google, analyzer, dry_run=True)
    assert summary.failed == 0 and analyzer.calls == ["TLDR AI", "The Weekly Model", "Café IA"]
    with StateStore(tmp_path / "state.db") as state:
        tldr, weekly = state.get("m1"), state.get("m2")
    assert (tldr.body_format, weekly.body_format) == ("html", "text")
    for st, fmt in ((tldr, "tldr"), (weekly, "text")):
        report = st.report
        assert (report["subject"], report["date"], report["format"]) == (st.subject, st.date, fmt)
    assert tldr.report["source"] == "TLDR AI"
