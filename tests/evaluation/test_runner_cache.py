"""The prediction cache: torn lines from an interrupted run, and refusing another run's answers."""

import json
from pathlib import Path

import pytest

from evaluation.runner import RUN_FILE, RunnerError, _check_cache, prompt_hash, read_predictions
from evaluation.scoring import load_references

REFERENCES = Path(__file__).parents[1] / "fixtures" / "eval_references.jsonl"


def test_a_torn_last_line_is_dropped(tmp_path):
    path = tmp_path / "predictions.jsonl"
    path.write_text('{"output": "a"}\n{"output": "b"}\n{"output": "c', encoding="utf-8")
    assert [r["output"] for r in read_predictions(path)] == ["a", "b"]


def test_a_broken_line_in_the_middle_is_an_error(tmp_path):
    path = tmp_path / "predictions.jsonl"
    path.write_text('{"output": "a"}\nnot json\n{"output": "c"}\n', encoding="utf-8")
    with pytest.raises(RunnerError, match="line 2"):
        read_predictions(path)


def test_lines_need_an_output_string(tmp_path):
    path = tmp_path / "predictions.jsonl"
    path.write_text('{"text": "a"}\n', encoding="utf-8")
    with pytest.raises(RunnerError, match="output"):
        read_predictions(path)


def test_cached_answers_for_other_prompts_are_refused(tmp_path):
    refs = load_references(REFERENCES, limit=2)
    rows = [
        {"output": "{}", "prompt_sha256": prompt_hash(refs[0].prompt)},
        {"output": "{}", "prompt_sha256": prompt_hash("another prompt")},
    ]
    with pytest.raises(RunnerError, match="line 2 was generated for another prompt"):
        _check_cache(rows, refs, tmp_path, {})


def test_cached_answers_of_another_model_are_refused(tmp_path):
    refs = load_references(REFERENCES, limit=1)
    (tmp_path / RUN_FILE).write_text(json.dumps({"engine": {"model_path": "/a.gguf", "lora_path": None}}))
    rows = [{"output": "{}", "prompt_sha256": prompt_hash(refs[0].prompt)}]
    same = {"model_path": "/a.gguf", "lora_path": None, "relevance_rule": "greedy"}
    with pytest.raises(RunnerError, match="model_path"):
        _check_cache(rows, refs, tmp_path, {**same, "model_path": "/b.gguf"})
    _check_cache(rows, refs, tmp_path, same)  # same setup: fine (a cache from before the rule was greedy)
    with pytest.raises(RunnerError, match="relevance_rule"):  # the written score is another rule's now
        _check_cache(rows, refs, tmp_path, {**same, "relevance_rule": "median"})
