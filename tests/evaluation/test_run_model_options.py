"""`eval run` takes every model option `serve` takes, and runs a model in its own chat turns.

A tiny random Llama GGUF (written by the exporter, with a Llama 3 chat template) stands in for the
Llama 3 models the Tinker backend trains: nothing names its chat format, so it must be read from the
model; naming the wrong one is refused before any generation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation import cli
from export.merged_gguf import write_model_gguf
from inference.models import embedded_base_model
from inference.options import MODEL_OPTIONS
from tests.export.conftest import tiny_llama

REFS = Path(__file__).parents[1] / "fixtures" / "eval_references.jsonl"


@pytest.fixture(scope="module")
def llama3_gguf(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("llama3") / "tiny-llama3.gguf"
    write_model_gguf(tiny_llama(), path, "f32", tokenizer_gguf=embedded_base_model(), chat_format="llama3")
    return path


def run(out: Path, *options: str) -> int:
    base = ["run", "--data", str(REFS), "--out", str(out), "--limit", "1", "--no-bertscore", "--no-progress"]
    return cli.main([*base, "--threads", "1", "--max-tokens", "8", *options])


def test_eval_run_has_every_model_option_of_serve():
    run_parser = cli.build_parser()._subparsers._group_actions[0].choices["run"]
    flags = {flag for action in run_parser._actions for flag in action.option_strings}
    assert {opt.flag for opt in MODEL_OPTIONS} | {"--no-default-lora"} <= flags


def test_a_llama3_model_is_evaluated_in_llama3_turns(llama3_gguf, tmp_path):
    out = tmp_path / "eval"
    assert run(out, "--model", str(llama3_gguf)) == 0
    recorded = json.loads((out / "run.json").read_text())
    assert recorded["engine"]["chat_format"] == "llama3"
    assert recorded["config"]["chat_format"] == "llama3"
    assert json.loads((out / "metrics.json").read_text())["run"]["chat_format"] == "llama3"


def test_a_chat_format_that_contradicts_the_model_is_refused(llama3_gguf, tmp_path, capsys):
    out = tmp_path / "eval"
    assert run(out, "--model", str(llama3_gguf), "--chat-format", "gemma") == 2
    err = capsys.readouterr().err
    assert "--chat-format gemma contradicts the model" in err and "'llama3'" in err
    assert not (out / "predictions.jsonl").exists()  # refused before any generation
