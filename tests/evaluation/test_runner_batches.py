"""`eval run` predicts a batch of `n_parallel` references per engine call, and one bad item stays one."""

from dataclasses import replace
from pathlib import Path

from evaluation.runner import generate, read_predictions
from evaluation.scoring import load_references
from inference.analyzer import Analyzer
from inference.engine import EngineConfig
from tests.fakes import FakeEngine

REFERENCES = Path(__file__).parents[1] / "fixtures" / "eval_references.jsonl"


def analyzer(n_parallel: int) -> Analyzer:
    return Analyzer(
        engine=FakeEngine(EngineConfig(chat_format="gemma", n_parallel=n_parallel, relevance_rule="greedy"))
    )


def test_references_go_to_the_engine_in_batches_of_n_parallel_in_order(tmp_path):
    refs = load_references(REFERENCES, limit=5)
    batched = analyzer(2)
    outputs, stats = generate(refs, tmp_path / "batched", analyzer=batched, progress=False)
    assert [len(call) for call in batched.engine.calls] == [2, 2, 1]
    alone = analyzer(1)
    assert outputs == generate(refs, tmp_path / "alone", analyzer=alone, progress=False)[0]
    assert [len(call) for call in alone.engine.calls] == [1] * 5
    rows = read_predictions(tmp_path / "batched" / "predictions.jsonl")
    assert [r["index"] for r in rows] == list(range(5)) and stats.generated == 5 and stats.failed == 0


def test_a_failing_item_is_recorded_and_the_rest_of_its_batch_is_kept(tmp_path):
    refs = load_references(REFERENCES, limit=3)
    refs[1] = replace(refs[1], prompt=refs[1].prompt.replace("Title:", "Title: FAKE_FAIL"))
    outputs, stats = generate(refs, tmp_path / "run", analyzer=analyzer(3), progress=False)
    rows = read_predictions(tmp_path / "run" / "predictions.jsonl")
    assert stats.failed == 1 and "error" in rows[1] and outputs[1] == ""
    assert outputs[0] and outputs[2] and "error" not in rows[0] and "error" not in rows[2]
