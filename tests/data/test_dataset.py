"""Loading and validating a dataset: line-numbered errors, duplicates, leakage."""

import json

import pytest

from data.dataset import DatasetError, find_duplicates, find_leakage, load_dataset, read_records

from .helpers import FIXTURE, fixture_rows, make_row, write_rows


def test_the_fixture_loads_with_parsed_answers():
    records = load_dataset(FIXTURE)
    assert len(records) == 3
    assert [r.line for r in records] == [1, 2, 3]
    assert records[0].item_id == "aaaa0000bbbb1111_001"
    assert records[0].email_id == "aaaa0000bbbb1111"
    assert records[0].analysis["relevance_score"] == 10
    assert records[0].title.startswith("**Acme releases Widget-7B")
    assert records[0].content == "Acme's Widget-7B is an open-weights model tuned for reviewing pull requests."


def test_every_bad_line_is_reported_with_its_line_number(tmp_path):
    good = fixture_rows()[0]
    bad_score = json.loads(json.dumps(good))
    answer = json.loads(bad_score["messages"][1]["content"])
    answer["relevance_score"] = 11
    bad_score["messages"][1]["content"] = json.dumps(answer)
    missing_key = json.loads(json.dumps(good))
    missing_key["messages"][1]["content"] = json.dumps({"relevance_score": 5, "summary": "", "key_insights": []})
    not_json_answer = json.loads(json.dumps(good))
    not_json_answer["messages"][1]["content"] = "relevance: 5"
    wrong_roles = {"messages": [{"role": "assistant", "content": "{}"}]}
    path = write_rows(
        tmp_path / "bad.jsonl",
        [good, '{"messages": [', "", bad_score, missing_key, not_json_answer, wrong_roles, "[1, 2]"],
    )

    records, problems = read_records(path)
    assert [r.line for r in records] == [1]
    text = "\n".join(problems)
    assert "line 2: not valid JSON" in text
    assert "line 4: answer relevance_score: 11 is greater than the maximum of 10" in text
    assert "line 5: answer <root>: 'company_names' is a required property" in text
    assert "line 6: assistant answer is not valid JSON" in text
    assert "line 7: 'messages' must be [user, assistant]" in text
    assert "line 8: expected a JSON object" in text
    assert not any(p.startswith("line 3") for p in problems)  # blank lines are ignored

    with pytest.raises(DatasetError) as caught:
        load_dataset(path)
    assert len(caught.value.problems) == len(problems)
    assert "line 4" in str(caught.value)


def test_repeated_item_ids_are_an_error(tmp_path):
    row = fixture_rows()[0]
    path = write_rows(tmp_path / "d.jsonl", [row, row])
    _, problems = read_records(path)
    assert problems == ["line 2: item_id 'aaaa0000bbbb1111_001' already used on line 1"]


def test_empty_file_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="no examples"):
        load_dataset(write_rows(tmp_path / "e.jsonl", []))


def test_duplicates_are_found_by_normalized_title_and_content(tmp_path):
    rows = [
        make_row("e1_001", "Mon, 3 Feb 2025 10:00:00 +0000", "**Big News Today **", "OpenAI ships a model."),
        make_row("e2_001", "Tue, 4 Feb 2025 10:00:00 +0000", "big news   today", "openai ships a model"),
        make_row("e2_002", "Tue, 4 Feb 2025 10:00:00 +0000", "Big News Today", "OpenAI ships another model."),
    ]
    records = load_dataset(write_rows(tmp_path / "d.jsonl", rows))
    groups = find_duplicates(records)
    assert [[r.item_id for r in g] for g in groups] == [["e1_001", "e2_001"]]


def test_leakage_between_two_files(tmp_path):
    train = load_dataset(
        write_rows(
            tmp_path / "train.jsonl",
            [
                make_row("e1_001", "Mon, 3 Feb 2025 10:00:00 +0000", "**Alpha **", "Alpha launches."),
                make_row("e1_002", "Mon, 3 Feb 2025 10:00:00 +0000", "**Beta **", "Beta launches."),
            ],
        )
    )
    dev = load_dataset(
        write_rows(
            tmp_path / "dev.jsonl",
            [
                make_row("e9_001", "Mon, 3 Mar 2025 10:00:00 +0000", "**ALPHA**", "Alpha launches!"),  # same item
                make_row("e9_002", "Mon, 3 Mar 2025 10:00:00 +0000", "**Gamma **", "Gamma launches."),
                make_row("e1_002", "Mon, 3 Mar 2025 10:00:00 +0000", "**Delta **", "Delta launches."),  # same id
            ],
        )
    )
    pairs = find_leakage(train, dev)
    assert [(a.item_id, b.item_id) for a, b in pairs] == [("e1_001", "e9_001"), ("e1_002", "e1_002")]
    assert find_leakage(train[:1], dev[1:2]) == []
