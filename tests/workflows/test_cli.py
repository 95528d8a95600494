"""`news-enhancer workflow ...`: arguments, scopes asked for, the summary printed, the status listing.

Google is the fake account from conftest (credentials and clients stand in for the OAuth flow,
which test_auth covers); the analyzer is the scripted one, except in the slow test at the end.
"""

from __future__ import annotations

import pytest

from news_enhancer.cli import main as news_enhancer
from tests.workflows.conftest import EMAILS, MESSAGES, ScriptedAnalyzer, clients
from workflows import auth, cli
from workflows.drive import GOOGLE_DOC_MIME, KEY_PROPERTY
from workflows.state import StateStore

EML_FILES = [str(EMAILS / name) for name in MESSAGES.values()]  # the fake account's three messages


@pytest.fixture
def fake_google(google, monkeypatch):
    """Route the CLI's Google sign-in and clients to the fake account; record the scopes asked for."""
    asked: list[list[str]] = []

    def get_credentials(scopes, **kwargs):
        asked.append(list(scopes))
        return "credentials"

    def build_services(credentials, *, gmail=True, drive=True):
        gmail_client, drive_client = clients(google)
        return (gmail_client if gmail else None, drive_client if drive else None)

    monkeypatch.setattr(auth, "get_credentials", get_credentials)
    monkeypatch.setattr(auth, "build_services", build_services)
    google.asked = asked
    return google


@pytest.fixture
def scripted(monkeypatch):
    analyzer = ScriptedAnalyzer()
    monkeypatch.setattr(cli, "make_analyzer", lambda args: analyzer)
    return analyzer


def args(tmp_path, *extra: str) -> list[str]:
    return [
        "gmail-drive",
        "--state",
        str(tmp_path / "state.db"),
        "--out",
        str(tmp_path / "out"),
        "--no-progress",
        *extra,
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--folder-id", "F"], "exactly one of --query or --eml"),
        (["--query", "q"], "--folder-id ID or --folder-name"),
        (["--query", "q", "--folder-id", "F", "--folder-name", "N"], "not both"),
        (["--eml", "x.eml", "--dry-run", "--label-processed"], "needs --query"),
        (["--query", "q", "--dry-run", "--since", "3 Feb"], "expected a date as YYYY-MM-DD"),
    ],
)
def test_bad_arguments_exit_2_with_a_reason(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as raised:
        cli.main(args(tmp_path, *argv))
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_dry_run_from_gmail_asks_only_for_gmail_read_and_uploads_nothing(tmp_path, fake_google, scripted, capsys):
    code = cli.main(args(tmp_path, "--query", "label:ai", "--since", "2025-02-01", "--dry-run"))
    out = capsys.readouterr().out
    assert code == 0
    assert fake_google.asked == [[auth.SCOPES["gmail_read"]]]
    assert "summary: 3 messages, 7 items, 0 uploaded, 0 skipped, 0 failed" in out
    assert len(list((tmp_path / "out").glob("*.md"))) == 4  # three reports and the digest
    assert fake_google.files() == []
    list_uri = next(uri for route, uri in fake_google._load()["log"] if route == "gmail.list")
    assert "q=label%3Aai+after%3A2025%2F02%2F01" in list_uri


def test_upload_with_labels_asks_for_modify_and_a_rerun_skips(tmp_path, fake_google, scripted, capsys):
    argv = args(tmp_path, "--query", "label:ai", "--folder-id", "folder-1", "--label-processed")
    assert cli.main(argv) == 0
    assert fake_google.asked == [[auth.SCOPES["gmail_read"], auth.SCOPES["gmail_label"], auth.SCOPES["drive_file"]]]
    assert "summary: 3 messages, 7 items, 3 uploaded, 0 skipped, 0 failed" in capsys.readouterr().out
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "summary: 3 messages, 7 items, 0 uploaded, 3 skipped, 0 failed" in out
    assert "digest: https://drive.google.com/file/d/" in out
    assert len(fake_google.files("folder-1")) == 4


def test_google_doc_flag_uploads_every_report_and_the_digest_as_google_docs(tmp_path, fake_google, scripted, capsys):
    assert cli.main(args(tmp_path, "--eml", *EML_FILES, "--folder-id", "folder-1", "--google-doc")) == 0
    assert "summary: 3 messages, 7 items, 3 uploaded, 0 skipped, 0 failed" in capsys.readouterr().out
    docs = fake_google.files("folder-1")
    assert len(docs) == 4
    assert {f["mimeType"] for f in docs} == {GOOGLE_DOC_MIME}
    assert {f["uploadedMimeType"] for f in docs} == {"text/markdown"}
    assert not [f["name"] for f in docs if f["name"].endswith(".md")]
    assert len(list((tmp_path / "out").glob("*.md"))) == 4  # the local copies stay Markdown files


def test_folder_name_creates_the_apps_folder_once(tmp_path, fake_google, scripted, capsys):
    argv = args(tmp_path, "--query", "q", "--folder-name")
    assert cli.main(argv) == 0
    assert "Drive folder 'News Enhancer reports': file-1" in capsys.readouterr().err
    assert cli.main(argv) == 0
    folders = [f for f in fake_google._load()["files"].values() if f["name"] == "News Enhancer reports"]
    assert len(folders) == 1 and len(fake_google.files(folders[0]["id"])) == 4


def test_a_failure_exits_1_and_says_how_to_resume(tmp_path, fake_google, scripted, capsys, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr("workflows.retry.time.sleep", waits.append)
    fake_google.fail_next("drive.upload", *[500] * 6)
    assert cli.main(args(tmp_path, "--query", "q", "--folder-id", "folder-1")) == 1
    assert len(waits) == 5 and all(0.5 * 2**n <= w <= 2**n for n, w in enumerate(waits))  # the default backoff
    out = capsys.readouterr().out
    assert "1 failed" in out and "failed: m1: Drive upload" in out and "Rerun the same command" in out


def test_a_missing_folder_exits_1_before_any_work(tmp_path, fake_google, scripted, capsys):
    assert cli.main(args(tmp_path, "--query", "q", "--folder-id", "someone-elses")) == 1
    assert "--folder-name" in capsys.readouterr().err
    assert scripted.calls == []


def test_eml_files_dry_run_needs_no_google_account(tmp_path, scripted, capsys, monkeypatch):
    monkeypatch.setattr(auth, "get_credentials", lambda *a, **k: pytest.fail("no sign-in for a local dry run"))
    emls = [str(EMAILS / "plain-text-base64.eml"), str(EMAILS / "attachment-only.eml")]
    assert news_enhancer(["workflow", *args(tmp_path, "--eml", *emls, "--dry-run")]) == 1  # through the console script
    out = capsys.readouterr().out
    assert "summary: 2 messages, 2 items, 0 uploaded, 0 skipped, 1 failed" in out
    assert "has no text or HTML body" in out
    assert "The Weekly Model" in "".join(p.name for p in (tmp_path / "out").iterdir())


def test_status_lists_stages_and_errors(tmp_path, fake_google, scripted, capsys):
    fake_google.fail_next("drive.upload", *[403])
    cli.main(args(tmp_path, "--query", "q", "--folder-id", "folder-1"))
    capsys.readouterr()
    assert cli.main(["status", "--state", str(tmp_path / "state.db")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "3 messages"
    m1 = next(line for line in out if line.startswith("m1 "))
    assert "report_written" in m1 and "error: Drive upload" in m1 and "HTTP 403" in m1
    assert sum("uploaded" in line and "https://drive.google.com/" in line for line in out) == 2


@pytest.mark.slow
def test_real_model_end_to_end_with_only_google_faked(tmp_path, monkeypatch, capsys):
    """The real analyzer and the embedded Gemma 3 270M on a one-item email; Gmail and Drive are the fake."""
    from tests.workflows.fake_google import FakeGoogle

    google = FakeGoogle(tmp_path / "google.json", {"m1": (EMAILS / "mixed-related-alternative.eml").read_bytes()})
    monkeypatch.setattr(auth, "get_credentials", lambda scopes, **kwargs: "credentials")
    monkeypatch.setattr(auth, "build_services", lambda credentials, **kwargs: clients(google))
    argv = args(tmp_path, "--query", "from:news@acme.example", "--folder-id", "folder-1", "--threads", "1")

    assert cli.main(argv) == 0
    assert "summary: 1 messages, 1 items, 1 uploaded, 0 skipped, 0 failed" in capsys.readouterr().out
    with StateStore(tmp_path / "state.db") as state:
        report = state.get("m1").report
    assert [item["title"] for item in report["items"]] == ["Acme ships a linter"]
    assert 1 <= report["items"][0]["relevance_score"] <= 10  # a real, schema-valid answer (validated on save)
    uploaded = {f["appProperties"][KEY_PROPERTY]: f for f in google.files("folder-1")}
    assert set(uploaded) == {"message:m1", next(k for k in uploaded if k.startswith("digest:"))}
    content = uploaded["message:m1"]["content"]
    assert "[Acme ships a linter](https://example.com/acme-linter)" in content
    assert f"**{report['items'][0]['relevance_score']}/10**" in content

    assert cli.main(argv) == 0  # the rerun neither analyzes nor uploads again
    assert "0 uploaded, 1 skipped, 0 failed" in capsys.readouterr().out
    assert len(google.files("folder-1")) == 2


def test_a_second_run_on_the_same_state_is_refused(tmp_path, fake_google, scripted, capsys):
    with StateStore(tmp_path / "state.db"):  # a run still going
        assert cli.main(args(tmp_path, "--query", "q", "--folder-id", "folder-1")) == 1
    assert "another run is using" in capsys.readouterr().err
    assert scripted.calls == [] and fake_google.files() == []
