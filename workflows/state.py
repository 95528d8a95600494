"""The workflow's memory: one SQLite row per message, advanced stage by stage, each step committed.

A message goes fetched -> analyzed -> report_written -> uploaded. Each stage stores what the next
one needs (the decoded email, the analysis, the report path, the Drive file id), so a run killed
at any point resumes where it stopped: nothing done is lost and nothing is redone twice on Drive
(the upload step also asks Drive, see `workflows.drive`). SQLite commits are atomic and durable,
so a kill mid-write leaves the previous committed stage.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

STAGES = ("new", "fetched", "analyzed", "report_written", "uploaded")
"""In order; a message's stage only moves forward."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    message_id    TEXT PRIMARY KEY,
    stage         TEXT NOT NULL,
    subject       TEXT,
    sender        TEXT,
    date          TEXT,
    link          TEXT,
    body          TEXT,
    body_format   TEXT,
    report_json   TEXT,
    report_path   TEXT,
    drive_file_id TEXT,
    drive_link    TEXT,
    labelled      INTEGER NOT NULL DEFAULT 0,
    failures      INTEGER NOT NULL DEFAULT 0,
    error         TEXT,
    updated_at    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS digests (
    digest_key    TEXT PRIMARY KEY,
    report_path   TEXT,
    drive_file_id TEXT,
    drive_link    TEXT,
    updated_at    TEXT NOT NULL
);
"""
SCHEMA_VERSION = 1


def stage_index(stage: str) -> int:
    return STAGES.index(stage)


@dataclass
class MessageState:
    """Everything known about one message."""

    message_id: str
    stage: str = "new"
    subject: str | None = None
    sender: str | None = None
    date: str | None = None
    link: str | None = None
    body: str | None = None
    body_format: str | None = None
    report: dict[str, Any] | None = None
    report_path: str | None = None
    drive_file_id: str | None = None
    drive_link: str | None = None
    labelled: bool = False
    failures: int = 0
    error: str | None = None

    def reached(self, stage: str) -> bool:
        return stage_index(self.stage) >= stage_index(stage)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class StateLockedError(RuntimeError):
    """Another run is using this state database."""


def _lock(path: Path) -> Any:
    """An exclusive lock on `path` held until the returned handle is closed (the OS frees it on a kill).

    Two overlapping runs (a slow cron job and the next one) could otherwise both find a report missing
    on Drive and both upload it.
    """
    try:
        import fcntl
    except ImportError:  # not on Unix: no locking
        return None
    handle = open(path, "a+")  # noqa: SIM115 - held open for the store's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StateLockedError(f"another run is using {path.with_suffix('')}; wait for it to finish") from None
    return handle


class StateStore:
    """The SQLite file at `path` (created with its folder on first use).

    `exclusive` (the default, for runs) holds a lock file beside it so that two runs never share it;
    reading the state (`workflow status`) doesn't need the lock.
    """

    def __init__(self, path: str | Path, exclusive: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = _lock(self.path.with_name(self.path.name + ".lock")) if exclusive else None
        self._db = sqlite3.connect(self.path, isolation_level=None)  # explicit transactions below
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a commit survives a power cut, not only a kill
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path} was written by a newer news-enhancer (schema {version})")
        self._db.executescript(SCHEMA)  # idempotent; executescript commits on its own
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def close(self) -> None:
        self._db.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------------
    def get(self, message_id: str) -> MessageState:
        """The message's state; stage "new" when it was never seen."""
        row = self._db.execute("SELECT * FROM messages WHERE message_id = ?", (message_id,)).fetchone()
        if row is None:
            return MessageState(message_id)
        fields = dict(row)
        report_json = fields.pop("report_json")
        fields.pop("updated_at")
        fields["labelled"] = bool(fields["labelled"])
        return MessageState(**fields, report=json.loads(report_json) if report_json else None)

    def all(self) -> list[MessageState]:
        ids = [r[0] for r in self._db.execute("SELECT message_id FROM messages ORDER BY date, message_id")]
        return [self.get(i) for i in ids]

    def digest(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM digests WHERE digest_key = ?", (key,)).fetchone()
        return dict(row) if row else None

    # -- writing: each call is one committed transaction ----------------------------------------
    def _advance(self, message_id: str, stage: str, **fields: Any) -> None:
        """Set `fields`, move the stage forward to `stage` (never back) and clear the last error."""
        with self._transaction():
            current = self.get(message_id)
            if stage_index(stage) < stage_index(current.stage):
                stage = current.stage
            if current.stage == "new":
                self._db.execute(
                    "INSERT INTO messages (message_id, stage, updated_at) VALUES (?, ?, ?)",
                    (message_id, "new", _now()),
                )
            assignments = {**fields, "stage": stage, "error": None, "updated_at": _now()}
            columns = ", ".join(f"{name} = ?" for name in assignments)
            self._db.execute(f"UPDATE messages SET {columns} WHERE message_id = ?", (*assignments.values(), message_id))

    def record_fetched(
        self,
        message_id: str,
        *,
        subject: str,
        sender: str,
        date: str | None,
        link: str | None,
        body: str,
        body_format: str,
    ) -> None:
        self._advance(
            message_id,
            "fetched",
            subject=subject,
            sender=sender,
            date=date,
            link=link,
            body=body,
            body_format=body_format,
        )

    def record_analyzed(self, message_id: str, report: dict[str, Any]) -> None:
        self._advance(message_id, "analyzed", report_json=json.dumps(report, ensure_ascii=False))

    def record_report_written(self, message_id: str, path: str | Path) -> None:
        self._advance(message_id, "report_written", report_path=str(path))

    def record_uploaded(self, message_id: str, file_id: str, link: str | None) -> None:
        self._advance(message_id, "uploaded", drive_file_id=file_id, drive_link=link)

    def record_labelled(self, message_id: str) -> None:
        with self._transaction():
            self._db.execute(
                "UPDATE messages SET labelled = 1, updated_at = ? WHERE message_id = ?", (_now(), message_id)
            )

    def record_failure(self, message_id: str, error: str) -> None:
        """Keep the stage reached; note the error and count it (a rerun retries the message)."""
        with self._transaction():
            if self.get(message_id).stage == "new":
                self._db.execute(
                    "INSERT INTO messages (message_id, stage, updated_at) VALUES (?, 'new', ?)", (message_id, _now())
                )
            self._db.execute(
                "UPDATE messages SET failures = failures + 1, error = ?, updated_at = ? WHERE message_id = ?",
                (error, _now(), message_id),
            )

    def record_digest(
        self, key: str, *, report_path: str | None = None, file_id: str | None = None, link: str | None = None
    ) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT INTO digests (digest_key, report_path, drive_file_id, drive_link, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(digest_key) DO UPDATE SET "
                "report_path = COALESCE(excluded.report_path, report_path), "
                "drive_file_id = COALESCE(excluded.drive_file_id, drive_file_id), "
                "drive_link = COALESCE(excluded.drive_link, drive_link), updated_at = excluded.updated_at",
                (key, report_path, file_id, link, _now()),
            )


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (including KeyboardInterrupt)."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self) -> sqlite3.Connection:
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
