"""`news-enhancer split FILE`: the items as JSON, exactly what split_newsletter finds; no model."""

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from ingest.newsletter import split_newsletter
from news_enhancer.cli import main

ROOT = Path(__file__).parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


def split_command(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "news_enhancer.cli", "split", *args],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        timeout=120,
    )


def test_split_prints_the_newsletter_as_json():
    path = FIXTURES / "newsletters" / "tldr_ai.html"
    done = split_command(str(path))
    assert done.returncode == 0, done.stderr.decode()
    printed = json.loads(done.stdout)
    assert printed == asdict(split_newsletter(path.read_text(encoding="utf-8")))
    assert printed["format"] == "tldr" and len(printed["items"]) == 16
    assert "llama_cpp" not in done.stderr.decode()


def test_split_reads_stdin_and_takes_a_format():
    text = (FIXTURES / "newsletters" / "newsletter.md").read_bytes()
    done = split_command("-", "--format", "text", stdin=text)
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout) == asdict(split_newsletter(text.decode(), "text"))


def test_split_reads_an_email_from_its_bytes(capsys):
    path = FIXTURES / "emails" / "windows-1252-quoted-printable.eml"
    assert main(["split", str(path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["subject"] == "Café IA – la lettre du lundi"
    assert printed["items"][0]["title"] == "“Mistral lève 600 M€ pour ses modèles”"
    assert main(["split", str(FIXTURES / "emails" / "tldr-multipart-alternative.eml"), "--format", "text"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "text"  # the text/plain part


def test_split_errors(capsys):
    assert main(["split", str(FIXTURES / "no-such-file.html")]) == 2
    assert "cannot read" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["split", "x.html", "--format", "pdf"])
    assert exit_.value.code == 2
