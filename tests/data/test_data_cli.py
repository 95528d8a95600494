"""`news-enhancer data validate|stats|split|convert` on small files."""

import json

from data.cli import main
from data.dataset import file_sha256

from .helpers import FIXTURE, fixture_rows, make_row, write_rows


def test_validate_passes_a_good_file_and_fails_a_bad_one(tmp_path, capsys):
    assert main(["validate", str(FIXTURE)]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] == 3

    bad = write_rows(tmp_path / "bad.jsonl", [fixture_rows()[0], "{oops"])
    assert main(["validate", str(bad)]) == 1
    captured = capsys.readouterr()
    assert "line 2: not valid JSON" in captured.err


def test_validate_against_reports_leaks(tmp_path, capsys):
    dev = write_rows(tmp_path / "dev.jsonl", [make_row("zz_001", "Mon, 3 Mar 2025 10:00:00 +0000")])  # = fixture row 0
    assert main(["validate", str(FIXTURE), "--against", str(dev)]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["leaks"] == 1
    assert "leak:" in captured.err and "line 1" in captured.err


def test_stats(capsys):
    assert main(["stats", str(FIXTURE), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["items"] == 3
    assert sum(stats["relevance_score"].values()) == 3
    assert set(stats["empty_rate"]) == {"summary", "key_insights", "company_names"}


def test_split_writes_train_dev_and_the_definition(tmp_path, capsys):
    rows = [
        make_row(f"e{i}_{n:03d}", f"Mon, {i} Mar 2025 10:00:00 +0000", f"**T{i}{n} **", f"C {i} {n}.")
        for i in range(1, 6)
        for n in (1, 2)
    ]
    data = write_rows(tmp_path / "all.jsonl", rows)
    assert main(["split", str(data), "-o", str(tmp_path / "split"), "--dev-fraction", "0.2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dev_items"] == 2 and summary["train_items"] == 8 and summary["leaks"] == 0
    dev = [json.loads(line) for line in (tmp_path / "split" / "dev.jsonl").read_text().splitlines()]
    assert [r["metadata"]["item_id"] for r in dev] == ["e5_001", "e5_002"]
    definition = json.loads((tmp_path / "split" / "split.json").read_text())
    assert definition["dev_item_ids"] == ["e5_001", "e5_002"]
    assert definition["source_sha256"] == file_sha256(data)
    assert definition["command"].startswith("news-enhancer data split ")


def test_convert(tmp_path, capsys):
    out = tmp_path / "pc.jsonl"
    assert main(["convert", str(FIXTURE), "--to", "prompt_completion", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and rows[0]["completion"].endswith("<end_of_turn>")
