"""The Gmail -> analyze -> Drive run: every matching newsletter analyzed, reported and uploaded once.

For each message, oldest first, the run advances its stage in the state store (see
`workflows.state`): fetch and decode it (`ingest.email`), split its body into items with what the
email already told (body format, sender, subject, date: nothing is parsed or sniffed twice) and
analyze them with the MCP tools' analyzer, write its Markdown report, upload the report, optionally
label the message. Each stage is committed before the next starts, so a rerun of the same command
picks up exactly where a crash or Ctrl-C left off. A message that fails is recorded with its error
and the run goes on with the next one.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

import schemas
from ingest.email import CONTENT_TYPES, DecodedEmail, parse_email, sender_name
from ingest.newsletter import Newsletter, split_newsletter
from workflows import drive, gmail
from workflows.files import write_atomic
from workflows.reports import DigestEntry, clean_title, newsletter_markdown, render_digest, report_name
from workflows.retry import RetryPolicy, describe_error
from workflows.state import MessageState, StateStore

ProgressFn = Callable[[int, int, dict[str, Any], float], None]
"""on_item(done, total, result, seconds), as `inference.analyzer.Analyzer` calls it."""


class NewsletterAnalyzer(Protocol):
    """What the run needs from `inference.analyzer.Analyzer` (tests may pass another implementation)."""

    def analyze_split(
        self, newsletter: Newsletter, source: str | None = None, on_item: ProgressFn | None = None
    ) -> dict[str, Any]: ...


class MessageSource(Protocol):
    """Where the newsletters come from: Gmail, or .eml files for a run without a Google account."""

    def message_ids(self) -> list[str]: ...

    def fetch(self, message_id: str) -> DecodedEmail: ...


@dataclass
class GmailSource:
    service: Any
    query: str
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    limit: int | None = None

    def message_ids(self) -> list[str]:
        return gmail.list_message_ids(self.service, self.query, self.policy, limit=self.limit)

    def fetch(self, message_id: str) -> DecodedEmail:
        return gmail.fetch_email(self.service, message_id, self.policy)


@dataclass
class EmlFiles:
    """Local RFC 822 files; a message's id is a hash of its bytes, so renaming a file changes nothing."""

    paths: list[Path]

    def __post_init__(self) -> None:
        self._by_id = {"eml-" + hashlib.sha256(Path(p).read_bytes()).hexdigest()[:16]: Path(p) for p in self.paths}

    def message_ids(self) -> list[str]:
        return list(self._by_id)

    def fetch(self, message_id: str) -> DecodedEmail:
        path = self._by_id[message_id]
        return parse_email(path.read_bytes(), message_id, link=str(path))


@dataclass
class WorkflowConfig:
    out_dir: Path
    """Where the Markdown reports and the digest are written (always, dry run or not)."""
    folder_id: str | None = None
    """The Drive folder to upload into; None only for a dry run."""
    dry_run: bool = False
    """Fetch, analyze and write reports; upload and label nothing."""
    as_google_doc: bool = False
    label: str | None = None
    """Gmail label added to each uploaded message; None to leave Gmail untouched."""
    query: str | None = None
    """Shown in the digest."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    progress: bool = True


@dataclass
class RunSummary:
    messages: int = 0
    items: int = 0
    uploaded: int = 0
    """Reports this run put on Drive."""
    skipped: int = 0
    """Messages whose report was already on Drive (an earlier run, or one that was interrupted)."""
    failed: int = 0
    written: int = 0
    """Reports written to the output folder."""
    failures: list[tuple[str, str]] = field(default_factory=list)
    digest_path: Path | None = None
    digest_link: str | None = None

    def line(self) -> str:
        return (
            f"{self.messages} messages, {self.items} items, {self.uploaded} uploaded, "
            f"{self.skipped} skipped, {self.failed} failed"
        )


def split_body(st: MessageState) -> Newsletter:
    """The items of a fetched message's body, split with what its email said: the body's format
    decides the carrier (a text/plain body is still sniffed for HTML or Markdown), the sender names
    the newsletter, the subject and date are the email's."""
    return split_newsletter(
        st.body or "",
        content_type=CONTENT_TYPES.get(st.body_format or "", "text/plain"),
        source=sender_name(st.sender or "") or None,
        subject=st.subject or None,
        date=st.date,
    )


def _say(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


class _Run:
    """One run's moving parts, so the per-stage steps below stay small."""

    def __init__(
        self,
        source: MessageSource,
        analyzer: NewsletterAnalyzer,
        state: StateStore,
        config: WorkflowConfig,
        drive_service: Any,
        gmail_service: Any,
    ):
        self.source = source
        self.analyzer = analyzer
        self.state = state
        self.config = config
        self.drive = drive_service
        self.gmail = gmail_service
        self.summary = RunSummary()
        self._label_id: str | None = None

    def fetch(self, message_id: str) -> MessageState:
        email = self.source.fetch(message_id)
        self.state.record_fetched(
            message_id,
            subject=email.subject,
            sender=email.sender,
            date=email.date,
            link=email.link,
            body=email.body,
            body_format=email.body_format,
        )
        return self.state.get(message_id)

    def analyze(self, st: MessageState) -> MessageState:
        started = time.perf_counter()
        report = self.analyzer.analyze_split(split_body(st), sender_name(st.sender or "") or None, self._item_done)
        schemas.validate("newsletter_report", report)  # never store or upload a malformed report
        self.state.record_analyzed(st.message_id, report)
        seconds = time.perf_counter() - started
        _say(f"  analyzed {len(report['items'])} items ({report['format']}) in {seconds:.1f}s")
        return self.state.get(st.message_id)

    @staticmethod
    def _item_done(done: int, total: int, result: dict[str, Any], seconds: float) -> None:
        _say(f"    item {done}/{total}: {result['relevance_score']:>2}/10  {clean_title(result['title'])[:70]}")

    def markdown(self, st: MessageState) -> str:
        assert st.report is not None
        return newsletter_markdown(st.report, subject=st.subject, sender=st.sender, date=st.date, link_to=st.link)

    def write_report(self, st: MessageState) -> MessageState:
        path = self.config.out_dir / report_name(st.subject, st.date, st.message_id)
        write_atomic(path, self.markdown(st))
        self.summary.written += 1
        if not st.reached("report_written") or st.report_path != str(path):
            self.state.record_report_written(st.message_id, path)
        return self.state.get(st.message_id)

    def upload(self, st: MessageState) -> MessageState:
        report = drive.Report(
            name=report_name(st.subject, st.date, st.message_id),
            markdown=self.markdown(st),
            key=f"message:{st.message_id}",
            description=f"news-enhancer report for {st.subject or st.message_id}",
        )
        assert self.config.folder_id is not None
        result = drive.upload_once(
            self.drive, self.config.folder_id, report, as_google_doc=self.config.as_google_doc, policy=self.config.retry
        )
        self.state.record_uploaded(st.message_id, result.file_id, result.link)
        if result.created:
            self.summary.uploaded += 1
            _say(f"  uploaded {report.name}")
        else:
            self.summary.skipped += 1
            _say(f"  already on Drive (an interrupted run uploaded it): {result.file_id}")
        return self.state.get(st.message_id)

    def label(self, st: MessageState) -> None:
        assert self.config.label is not None
        if self._label_id is None:
            self._label_id = gmail.ensure_label(self.gmail, self.config.label, self.config.retry)
        gmail.add_label(self.gmail, st.message_id, self._label_id, self.config.retry)
        self.state.record_labelled(st.message_id)

    def process(self, message_id: str) -> None:
        st = self.state.get(message_id)
        already_uploaded = st.reached("uploaded")
        resumed = f" (done before: {st.stage})" if st.reached("fetched") else ""
        if not st.reached("fetched"):
            st = self.fetch(message_id)
        _say(f"{message_id}: {st.subject or '(no subject)'}{resumed}")
        if not st.reached("analyzed"):
            st = self.analyze(st)
        self.summary.items += len(st.report["items"]) if st.report else 0
        st = self.write_report(st)
        if self.config.dry_run:
            return
        if already_uploaded:
            self.summary.skipped += 1
        else:
            st = self.upload(st)
        if self.config.label and self.gmail is not None and not st.labelled:
            self.label(st)

    def digest(self, message_ids: list[str]) -> None:
        uploaded = not self.config.dry_run
        # A digest covers the newsletters whose reports it can link: on Drive, or written in a dry run.
        done = "uploaded" if uploaded else "report_written"
        states = [s for s in map(self.state.get, message_ids) if s.reached(done) and s.report is not None]
        if not states:
            return
        entries = [
            DigestEntry(
                subject=s.subject,
                sender=sender_name(s.sender or ""),
                date=s.date,
                report=s.report or {},
                report_link=(s.drive_link if uploaded else None) or report_name(s.subject, s.date, s.message_id),
            )
            for s in states
        ]
        key = "digest:" + hashlib.sha256("\n".join(sorted(s.message_id for s in states)).encode()).hexdigest()[:16]
        dates = sorted(s.date[:10] for s in states if s.date)
        span = (dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}") if dates else "undated"
        title = f"Newsletter digest {span}"
        markdown = render_digest(entries, title=title, query=self.config.query, failed=self.summary.failures)
        name = f"{title} ({key.split(':')[1]}).md"
        path = write_atomic(self.config.out_dir / name, markdown)
        self.summary.digest_path = path
        self.state.record_digest(key, report_path=str(path))
        if uploaded:
            assert self.config.folder_id is not None
            result = drive.upload_once(
                self.drive,
                self.config.folder_id,
                drive.Report(name=name, markdown=markdown, key=key, description="news-enhancer run digest"),
                as_google_doc=self.config.as_google_doc,
                policy=self.config.retry,
            )
            self.state.record_digest(key, file_id=result.file_id, link=result.link)
            self.summary.digest_link = result.link
            _say(f"digest {'uploaded' if result.created else 'already on Drive'}: {name}")


def run(
    source: MessageSource,
    analyzer: NewsletterAnalyzer,
    state: StateStore,
    config: WorkflowConfig,
    *,
    drive_service: Any = None,
    gmail_service: Any = None,
) -> RunSummary:
    """Process every message `source` lists; return the counts. Never raises for one bad message."""
    if not config.dry_run:
        if drive_service is None or not config.folder_id:
            raise ValueError("an upload run needs a Drive client and a folder id (or use a dry run)")
        drive.check_folder(drive_service, config.folder_id, config.retry)
    run = _Run(source, analyzer, state, config, drive_service, gmail_service)
    message_ids = source.message_ids()
    run.summary.messages = len(message_ids)
    _say(f"{len(message_ids)} messages to process" + (" (dry run: nothing is uploaded)" if config.dry_run else ""))
    for message_id in tqdm(message_ids, desc="newsletters", unit="msg", file=sys.stderr, disable=not config.progress):
        try:
            run.process(message_id)
        except Exception as error:  # one bad message must not stop the others; its error is kept
            text = describe_error(error)
            state.record_failure(message_id, text)
            run.summary.failed += 1
            run.summary.failures.append((message_id, text))
            _say(f"  FAILED {message_id}: {text}")
    try:
        run.digest(message_ids)
    except Exception as error:
        run.summary.failed += 1
        run.summary.failures.append(("digest", describe_error(error)))
        _say(f"  FAILED digest: {describe_error(error)}")
    return run.summary
