"""Relevance from the score distribution: the rules (fast) and the engine's exact probe (real model)."""

from __future__ import annotations

import numpy as np
import pytest

import schemas
from inference.analyzer import Analyzer
from inference.engine import Engine, EngineConfig
from inference.grammar import json_constraint
from inference.relevance import (
    RULES,
    as_list,
    expected,
    from_top_logprobs,
    median,
    relevance_result,
    rounded_mean,
    score_probe,
)
from tests.conftest import TEST_CONFIG, TRAIN_ROWS

PROMPTS = [row["messages"][0]["content"] for row in TRAIN_ROWS]


def test_rules_read_the_distribution():
    p = [0.0] * 10
    p[0], p[6], p[9] = 0.3, 0.3, 0.4  # P(1)=.3, P(7)=.3, P(10)=.4
    assert median(p) == 7 and rounded_mean(p) == 6 and expected(p) == pytest.approx(6.4)
    assert median([0.0] * 9 + [1.0]) == 10 and median([1.0] + [0.0] * 9) == 1
    result = relevance_result({str(s): v for s, v in zip(range(1, 11), p, strict=True)}, 7, "median")
    assert result["confidence"] == pytest.approx(0.3) and result["expected"] == pytest.approx(6.4)
    assert relevance_result(None, 7, "median") is None
    with pytest.raises(ValueError, match="unknown relevance rule 'max'"):
        score_probe("max")
    assert set(RULES) == {"median", "mean", "greedy"}


def _softmax(row: np.ndarray) -> np.ndarray:
    z = np.exp(row.astype(np.float64) - row.max())
    return z / z.sum()


@pytest.mark.slow
def test_the_probe_is_the_exact_distribution_at_the_score_position():
    """P(d) from the model's logits where the score starts; P(10) = P("1") * P("0" | "1") via teacher forcing."""
    engine = Engine(  # one token per step, as forced_logits feeds them (jump-forward decodes keys in chunks)
        EngineConfig(**TEST_CONFIG, relevance_rule="greedy", jump_forward=False),
        json_constraint(schemas.load_schema("article_analysis"), score_probe("greedy")),
    )
    try:
        gen = engine.generate(PROMPTS[:1])[0]
        assert gen.probe is not None and sum(gen.probe.values()) == pytest.approx(1.0)
        text_tokens = gen.tokens
        pieces = [engine.detokenize([t]) for t in text_tokens]
        at = next(i for i, piece in enumerate(pieces) if piece[:1].isdigit())  # the score's first digit
        one, zero = engine._tokenize("1", False, False)[0], engine._tokenize("0", False, False)[0]
        digits = {str(d): engine._tokenize(str(d), False, False)[0] for d in range(1, 10)}
        rows = engine.forced_logits(PROMPTS[0], [*text_tokens[:at], one, zero])
        first, after_one = _softmax(rows[at]), _softmax(rows[at + 1])
        raw = {d: first[t] for d, t in digits.items() if d != "1"}
        raw["10"] = first[one] * after_one[zero]
        raw["1"] = first[one] * (1 - after_one[zero])
        total = sum(raw.values())
        for choice, p in raw.items():
            assert gen.probe[choice] == pytest.approx(p / total, rel=1e-3, abs=1e-6), choice
    finally:
        engine.close()


@pytest.fixture(scope="module")
def median_analyzer():
    """The adapter's own distribution read by the median rule (the default is the relevance head)."""
    from inference.analyzer import Analyzer

    a = Analyzer(EngineConfig(**TEST_CONFIG, relevance_rule="median"))
    yield a
    a.engine.close()


@pytest.mark.slow
def test_the_written_score_is_the_rules_and_answers_do_not_depend_on_the_batch(median_analyzer):
    analyzer = median_analyzer
    together = analyzer.complete_many(PROMPTS[:3])
    alone = [analyzer.complete(p) for p in PROMPTS[:3]]
    for a, b in zip(together, alone, strict=True):
        assert a.raw == b.raw and a.relevance == b.relevance
        probabilities = a.relevance["probabilities"]
        assert a.analysis["relevance_score"] == median(probabilities)
        assert a.relevance["rule"] == "median"
        assert a.relevance["confidence"] == pytest.approx(probabilities[a.analysis["relevance_score"] - 1])


@pytest.mark.slow
def test_the_greedy_rule_writes_what_the_engine_wrote_without_a_probe():
    schema = schemas.load_schema("article_analysis")
    config = EngineConfig(**TEST_CONFIG, relevance_rule="greedy")
    plain, probed = (
        Engine(config, json_constraint(schema)),
        Engine(config, json_constraint(schema, score_probe("greedy"))),
    )
    try:
        for prompt in PROMPTS[:3]:
            a, b = plain.generate([prompt])[0], probed.generate([prompt])[0]
            assert a.text == b.text and a.probe is None and b.probe is not None
    finally:
        plain.close()
        probed.close()


@pytest.mark.slow
def test_the_article_result_carries_a_schema_valid_distribution(median_analyzer):
    result = median_analyzer.analyze_item(
        "Nvidia and Foxconn build a robotics hub", "The two firms will spend $1.2B on it."
    )
    schemas.validate("article_result", result)
    relevance = result["relevance"]
    assert relevance["rule"] == "median" and 1 <= relevance["expected"] <= 10
    assert as_list({str(i + 1): p for i, p in enumerate(relevance["probabilities"])}) == relevance["probabilities"]


def test_the_fake_engine_gives_no_distribution_and_says_so():
    from tests.fakes import FakeEngine

    result = Analyzer(engine=FakeEngine()).analyze_item("A title", "Some content.")
    assert result["relevance"] is None and result["complete"] is True


def test_a_servers_top_logprobs_give_the_probes_distribution():
    """As the local probe: P(10) = P("1") P("0" | "1"), P(1) the rest of P("1"); " 7" and "7" are one digit;
    tokens that are not digits drop out; a single "10" token (other tokenizers) counts as 10."""
    log = np.log
    first = {"1": log(0.4), "7": log(0.2), " 7": log(0.1), '"': log(0.2), "10": log(0.1)}
    p = from_top_logprobs(first, {"0": log(0.75), ",": log(0.2)})
    total = 0.4 + 0.3 + 0.1
    assert p["1"] == pytest.approx(0.4 * 0.25 / total) and p["10"] == pytest.approx((0.1 + 0.4 * 0.75) / total)
    assert p["7"] == pytest.approx(0.3 / total) and sum(p.values()) == pytest.approx(1.0)
    assert from_top_logprobs({"1": log(0.5)}, None) == {**{str(s): 0.0 for s in range(1, 11)}, "1": 1.0}
    assert from_top_logprobs({'"': log(0.9), "a": float("-inf")}, None) is None
