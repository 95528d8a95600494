"""The renderer must reproduce the training data's prompts and answers byte for byte."""

import json
from pathlib import Path

import pytest

from data.prompts import (
    format_title,
    prepare_content,
    render_answer,
    render_chat_completion,
    render_chat_prompt,
    render_prompt,
)

FIXTURE = Path(__file__).parents[1] / "fixtures" / "train_sample.jsonl"
ROWS = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r["metadata"]["item_id"])
def test_prompt_is_byte_identical_to_training_prompt(row):
    meta = row["metadata"]
    assert render_prompt(meta["article_title"], meta["truncated_content"]) == row["messages"][0]["content"]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r["metadata"]["item_id"])
def test_content_is_cut_the_way_the_training_data_cut_it(row):
    meta = row["metadata"]
    content, cut = prepare_content(meta["original_content"], meta["is_sponsored"])
    assert content == meta["truncated_content"]
    assert cut == meta["was_truncated"]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r["metadata"]["item_id"])
def test_answer_rendering_round_trips(row):
    answer = row["messages"][1]["content"]
    assert render_answer(json.loads(answer)) == answer


def test_prompt_keeps_the_odd_action_items_line():
    assert render_prompt("t", "c").endswith("- action_items: Recommended next steps")


def test_long_single_sentence_is_capped():
    content, cut = prepare_content("word " * 400)
    assert cut and len(content) <= 500


def test_gemma_turns():
    assert render_chat_prompt("P") == "<start_of_turn>user\nP<end_of_turn>\n<start_of_turn>model\n"
    assert render_chat_completion("{}") == "{}<end_of_turn>"


def test_llama3_headers_and_unknown_format():
    assert render_chat_prompt("P", "llama3").endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert render_chat_completion("{}", "llama3") == "{}<|eot_id|>"
    with pytest.raises(ValueError, match="unknown chat format"):
        render_chat_prompt("P", "chatml")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("DeepMind's Genie 2 can generate worlds (4 minute read)", "**DeepMind's Genie 2 can generate worlds **"),
        ("Ghostty (GitHub Repo)", "**Ghostty (GitHub Repo)**"),
        ("Ship faster with Foobar CI (Sponsor)", "**Ship faster with Foobar CI (Sponsor)**"),
        ("**Paligemma 2 **", "**Paligemma 2 **"),
    ],
)
def test_titles_look_like_training_titles(raw, expected):
    assert format_title(raw) == expected
    assert format_title(expected) == expected


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r["metadata"]["item_id"])
def test_fixture_titles_are_fixed_points(row):
    title = row["metadata"]["article_title"]
    assert format_title(title) == title
