"""`eval run` on the real embedded Gemma 3 270M through the serving analyzer (slow: it generates)."""

import json
from pathlib import Path

import pytest

from evaluation.cli import main
from evaluation.runner import read_predictions
from evaluation.scoring import load_references

REFERENCES = Path(__file__).parents[1] / "fixtures" / "eval_references.jsonl"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_eval_run_generates_through_the_analyzer_and_resumes(tmp_path):
    out = tmp_path / "run"
    common = [
        "run",
        "--data",
        str(REFERENCES),
        "--out",
        str(out),
        "--n-threads",
        "1",
        "--no-bertscore",
        "--no-progress",
    ]
    assert main([*common, "--limit", "2"]) == 0
    first = read_predictions(out / "predictions.jsonl")
    assert len(first) == 2

    # A longer run in the same directory reuses the cached answers and generates only the new one.
    assert main([*common, "--limit", "3"]) == 0
    rows = read_predictions(out / "predictions.jsonl")
    assert [r["output"] for r in rows[:2]] == [r["output"] for r in first]
    summary = json.loads((out / "metrics.json").read_text())
    assert (summary["run"]["cached"], summary["run"]["generated"]) == (2, 1)
    assert summary["study"]["n"] == 3
    # Grammar-constrained decoding: every answer parses.
    assert summary["study"]["json_validity"] == 1.0
    for name in ("report.md", "report.html", "per_example.jsonl", "plots/forest_plot.png"):
        assert (out / name).is_file()

    # The cached text is exactly what the serving analyzer answers for the reference prompt, with the
    # server's default model (the embedded base plus the shipped news adapter).
    from inference.analyzer import Analyzer
    from inference.engine import EngineConfig
    from inference.models import default_adapter

    assert summary["system"]["lora"] == str(default_adapter())
    ref = load_references(REFERENCES, limit=1)[0]
    # (the head reads the item's whole text, as the runner passes it: ref.head_input)
    served = Analyzer(EngineConfig(lora_path=str(default_adapter()), n_threads=1)).complete(ref.prompt, ref.head_input)
    assert served.raw == rows[0]["output"]
