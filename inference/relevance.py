"""Relevance from the model's score distribution, not its single greedy token.

The adapter writes 10 or 1 for almost everything when decoded greedily, so the greedy score ranks
nothing. At the score position the engine reads P(1) .. P(10) exactly (a `Probe`), and the score
written is read off that distribution by a rule; the result also carries the distribution's mean,
which callers sort by, and the probability of the written score.

Rules are data (`RULES`): "median" (the distribution's median; the default), "mean" (its rounded
mean) and "greedy" (the model's own token: the old behaviour, kept for comparison). The default is
provisional until the cross-validation protocol (docs/crossval.md) has chosen between them.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from inference.grammar import Probe

SCORES = tuple(range(1, 11))
SCORE_POSITION = re.compile(r'"relevance_score"\s*:\s*$')
"""Where the score's first digit is written in the answer."""


def median(probabilities: list[float]) -> int:
    """The smallest score whose cumulative probability reaches one half."""
    total = 0.0
    for score, p in zip(SCORES, probabilities, strict=True):
        total += p
        if total >= 0.5 - 1e-12:
            return score
    return SCORES[-1]


def rounded_mean(probabilities: list[float]) -> int:
    value = expected(probabilities)
    return min(10, max(1, int(value + 0.5)))


def expected(probabilities: list[float]) -> float:
    return sum(s * p for s, p in zip(SCORES, probabilities, strict=True))


RULES: dict[str, Callable[[list[float]], int] | None] = {"median": median, "mean": rounded_mean, "greedy": None}
"""Rule name -> how the written score is read from P(1..10) (None: the greedy token)."""

DEFAULT_RULE = "median"


def as_list(probe: dict[str, float]) -> list[float]:
    return [probe.get(str(s), 0.0) for s in SCORES]


def score_probe(rule: str = DEFAULT_RULE) -> Probe:
    """The engine probe for the score position, writing what `rule` reads from the distribution."""
    if rule not in RULES:
        raise ValueError(f"unknown relevance rule {rule!r}; known: {', '.join(RULES)}")
    read = RULES[rule]
    choose = None if read is None else (lambda probe: str(read(as_list(probe))))
    return Probe(SCORE_POSITION, tuple(str(s) for s in SCORES), choose)


def relevance_result(probe: dict[str, float] | None, written: int, rule: str) -> dict | None:
    """The ArticleResult `relevance` object for the score `written`, or None without a distribution."""
    if probe is None:
        return None
    probabilities = [round(p, 6) for p in as_list(probe)]
    return {
        "expected": round(min(10.0, max(1.0, expected(probabilities))), 4),
        "confidence": round(probabilities[written - 1], 6),
        "probabilities": probabilities,
        "rule": rule,
    }
