"""The SQLite state store: stages move forward only, survive a reopen, and keep errors."""

import sqlite3

import pytest

from workflows.state import StateLockedError, StateStore

FETCHED = dict(subject="Café ☕", sender="TLDR <a@b.example>", date="2025-02-03T10:00:00+00:00",
               link="https://mail.google.com/mail/u/0/#all/m1", body="<p>hi</p>", body_format="html")  # fmt: skip
REPORT = {"source": "TLDR", "items": [{"title": "Ünïcode", "relevance_score": 9}], "markdown": "# x"}


def test_an_unseen_message_is_new(tmp_path):
    with StateStore(tmp_path / "s.db") as state:
        st = state.get("m1")
    assert st.stage == "new" and not st.reached("fetched") and st.report is None


def test_stages_advance_and_survive_reopening(tmp_path):
    path = tmp_path / "nested" / "s.db"
    with StateStore(path) as state:
        state.record_fetched("m1", **FETCHED)
        state.record_analyzed("m1", REPORT)
        state.record_report_written("m1", tmp_path / "r.md")
        state.record_uploaded("m1", "F1", "https://drive.google.com/file/d/F1/view")
        state.record_labelled("m1")
    with StateStore(path) as state:
        st = state.get("m1")
    assert st.stage == "uploaded" and st.reached("analyzed")
    assert (st.subject, st.body, st.body_format) == ("Café ☕", "<p>hi</p>", "html")
    assert st.report == REPORT
    assert st.report_path == str(tmp_path / "r.md")
    assert (st.drive_file_id, st.drive_link, st.labelled) == ("F1", "https://drive.google.com/file/d/F1/view", True)


def test_a_stage_never_moves_back(tmp_path):
    with StateStore(tmp_path / "s.db") as state:
        state.record_fetched("m1", **FETCHED)
        state.record_analyzed("m1", REPORT)
        state.record_uploaded("m1", "F1", None)
        state.record_fetched("m1", **{**FETCHED, "subject": "refetched"})
        st = state.get("m1")
    assert st.stage == "uploaded" and st.drive_file_id == "F1" and st.subject == "refetched"


def test_failures_keep_the_stage_count_up_and_clear_on_success(tmp_path):
    with StateStore(tmp_path / "s.db") as state:
        state.record_failure("m0", "HTTP 404: gone")  # never fetched
        state.record_fetched("m1", **FETCHED)
        state.record_failure("m1", "analysis failed")
        state.record_failure("m1", "analysis failed again")
        st = state.get("m1")
        assert (st.stage, st.failures, st.error) == ("fetched", 2, "analysis failed again")
        assert state.get("m0").stage == "new" and state.get("m0").error == "HTTP 404: gone"
        state.record_analyzed("m1", REPORT)
        st = state.get("m1")
        assert (st.stage, st.failures, st.error) == ("analyzed", 2, None)
        assert [s.message_id for s in state.all()] == ["m0", "m1"]


def test_digests_are_upserted(tmp_path):
    with StateStore(tmp_path / "s.db") as state:
        assert state.digest("digest:abc") is None
        state.record_digest("digest:abc", report_path="/tmp/d.md")
        state.record_digest("digest:abc", file_id="F9", link="https://x")
        row = state.digest("digest:abc")
    assert (row["report_path"], row["drive_file_id"], row["drive_link"]) == ("/tmp/d.md", "F9", "https://x")


def test_a_failed_write_is_rolled_back_whole(tmp_path):
    with StateStore(tmp_path / "s.db") as state:
        with pytest.raises(sqlite3.Error):
            state.record_fetched("m2", **{**FETCHED, "body": object()})  # the row is inserted, then the update fails
        assert state.get("m2").stage == "new"
        assert state.all() == []  # the insert went too
        state.record_fetched("m2", **FETCHED)  # no transaction was left open
        assert state.get("m2").stage == "fetched"


def test_a_database_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "s.db"
    StateStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(RuntimeError, match="newer news-enhancer"):
        StateStore(path)


def test_two_runs_cannot_share_a_state_database(tmp_path):
    path = tmp_path / "s.db"
    with StateStore(path):
        with pytest.raises(StateLockedError, match="another run is using"):
            StateStore(path)
        with StateStore(path, exclusive=False) as reader:  # `workflow status` may look meanwhile
            assert reader.all() == []
    with StateStore(path) as state:  # closing released the lock
        state.record_fetched("m1", **FETCHED)
