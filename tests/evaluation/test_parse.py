"""The validity rule of docs/metrics.md §1: what counts as a parsed answer, and what invalid answers become."""

import json

import pytest

from evaluation.parse import empty_record, parse_prediction, parse_reference

ANSWER = {"relevance_score": 9, "summary": "", "key_insights": ["AI Model"], "company_names": ["Acme"]}


def test_clean_json_answer_is_valid_and_kept_as_is():
    parsed = parse_prediction(json.dumps(ANSWER, indent=2))
    assert parsed.valid
    assert parsed.record == ANSWER


def test_json_embedded_in_prose_is_found():
    text = "Sure! Here is the analysis:\n```json\n" + json.dumps(ANSWER) + "\n```\nHope this helps {not json}."
    parsed = parse_prediction(text)
    assert parsed.valid
    assert parsed.record == ANSWER


def test_an_object_without_task_keys_is_skipped_for_a_later_one():
    text = '{"note": "draft"} then ' + json.dumps(ANSWER)
    assert parse_prediction(text).record == ANSWER


@pytest.mark.parametrize(
    "text",
    [
        "",
        "The model echoed the prompt and wrote no JSON.",
        '{"relevance_score": 9, "summary": "',  # cut off mid-object
        '["AI Model", "Acme"]',  # JSON, but not an object
        '{"title": "x", "url": "y"}',  # an object without any task key
        None,
    ],
)
def test_invalid_predictions_become_the_empty_record(text):
    parsed = parse_prediction(text)
    assert not parsed.valid
    assert parsed.record == {"relevance_score": 0, "summary": "", "key_insights": [], "company_names": []}
    assert parsed.record == empty_record()


def test_missing_keys_of_a_valid_object_count_as_empty():
    parsed = parse_prediction('{"relevance_score": 7}')
    assert parsed.valid
    assert parsed.record == {"relevance_score": 7, "summary": "", "key_insights": [], "company_names": []}


def test_mistyped_fields_are_coerced_not_fatal():
    parsed = parse_prediction(
        '{"relevance_score": "8", "summary": null, "key_insights": "GitHub Repo", "company_names": ["Acme", 3, null]}'
    )
    assert parsed.valid
    assert parsed.record == {
        "relevance_score": 8.0,
        "summary": "",
        "key_insights": ["GitHub Repo"],
        "company_names": ["Acme", "3"],
    }


def test_duplicates_and_float_scores_are_kept_for_the_metrics_to_handle():
    parsed = parse_prediction('{"relevance_score": 9.0, "key_insights": ["A", "A"]}')
    assert parsed.record["relevance_score"] == 9.0
    assert parsed.record["key_insights"] == ["A", "A"]


def test_reference_must_be_a_json_object():
    assert parse_reference(json.dumps(ANSWER)) == ANSWER
    with pytest.raises(ValueError, match="not JSON"):
        parse_reference("{oops")
    with pytest.raises(ValueError, match="not an object"):
        parse_reference("[1, 2]")
