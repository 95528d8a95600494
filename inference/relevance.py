"""Relevance from the model's score distribution, not its single greedy token.

The adapter writes 10 or 1 for almost everything when decoded greedily, so the greedy score ranks
nothing. At the score position the engine reads P(1) .. P(10) exactly (a `Probe`), and the score
written is read off that distribution by a rule; the result also carries the distribution's mean,
which callers sort by, and the probability of the written score.

Rules are data (`RULES`): "median" (the distribution's median), "mean" (its rounded mean) and
"greedy" (the model's own token: the old behaviour, kept for comparison). "head" replaces the
adapter's distribution by the relevance head's (inference.relevance_head), which cross-validation
chose over all three (docs/relevance.md); "auto", the default, is "head" wherever the head fits the
served model and "median" elsewhere (another base model, a merged GGUF, a head-less install).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from data.dataset import file_sha256
from inference.grammar import Probe

log = logging.getLogger(__name__)

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
"""The rule where no head applies."""

HEAD_RULES = ("auto", "head")
"""Rules served by the relevance head (the engine's probe then writes the head's choice)."""


def as_list(probe: dict[str, float]) -> list[float]:
    return [probe.get(str(s), 0.0) for s in SCORES]


def score_probe(rule: str = DEFAULT_RULE) -> Probe:
    """The engine probe for the score position, writing what `rule` reads from the distribution."""
    if rule not in RULES:
        raise ValueError(f"unknown relevance rule {rule!r}; known: {', '.join(RULES)}")
    read = RULES[rule]
    choose = None if read is None else (lambda probe: str(read(as_list(probe))))
    return Probe(SCORE_POSITION, tuple(str(s) for s in SCORES), choose)


def from_top_logprobs(first: Mapping[str, float], after_one: Mapping[str, float] | None) -> dict[str, float] | None:
    """P(1..10) from a server's top log-probabilities, computed as the local probe does.

    `first`: token text -> log-probability at the score position; `after_one`: the same for the token
    after a written "1" (None: not asked, so P(10) = 0 unless "10" is one token). Gemma writes 10 as
    "1","0": P(10) = P("1") * P("0" | "1"), P(1) = P("1") * (1 - P("0" | "1")); then the ten are
    normalized. Token texts are compared without surrounding whitespace. None: no digit in `first`."""
    digits = _by_text(first)
    p_one = digits.get("1", 0.0)
    p_zero = _by_text(after_one).get("0", 0.0) if after_one else 0.0
    probabilities = {str(s): digits.get(str(s), 0.0) for s in SCORES[1:9]}
    probabilities["1"] = p_one * (1.0 - p_zero)
    probabilities["10"] = digits.get("10", 0.0) + p_one * p_zero
    total = sum(probabilities.values())
    if total <= 0.0:
        return None
    return {str(s): probabilities[str(s)] / total for s in SCORES}


def _by_text(top: Mapping[str, float]) -> dict[str, float]:
    """Probabilities summed by stripped token text (" 7" and "7" are the same digit)."""
    summed: dict[str, float] = {}
    for token, logprob in top.items():
        if isinstance(logprob, (int, float)) and math.isfinite(logprob):
            key = token.strip()
            summed[key] = summed.get(key, 0.0) + math.exp(logprob)
    return summed


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


def _head_for(config: Any):
    """(head file, head, base GGUF) the config asks for, or None when no head applies (reason logged)."""
    from inference.models import EMBEDDED_BASE_SIZE, embedded_base_model
    from inference.relevance_head import HeadError, default_head_path, load_head, matches_model

    explicit = config.relevance_rule == "head"
    path = config.relevance_head or default_head_path()
    if path is None:
        if explicit:
            raise HeadError("--relevance-rule head: no relevance head file (models/relevance-head.json is not here)")
        log.warning("no relevance head in this install: relevance is read by the %s rule", DEFAULT_RULE)
        return None
    head = load_head(path)
    if config.model_path is None:  # the embedded base: trusted by size, as inference.models does
        fits = head.base_model.get("size") == EMBEDDED_BASE_SIZE
        base = embedded_base_model() if fits else None
    else:
        base = config.model_path
        if not Path(base).is_file():
            return None  # the engine names the missing model file when it loads
        fits = matches_model(head, base)
    if not fits:
        message = f"the relevance head {path} was fitted on {head.base_model.get('name')}, not on this model"
        if explicit:
            raise HeadError(message + " (use --relevance-rule median, or fit a head for it: eval cv head)")
        log.info("%s: relevance is read by the %s rule", message, DEFAULT_RULE)
        return None
    return path, head, base


def serving_rule(config: Any) -> tuple[str, Any]:
    """(the rule actually served, a HeadScorer or None) for an EngineConfig."""
    if config.relevance_rule not in HEAD_RULES:
        return config.relevance_rule, None
    found = _head_for(config)
    if found is None:
        return DEFAULT_RULE, None
    from inference.relevance_head import Embedder, HeadScorer

    _, head, base = found
    return "head", HeadScorer(head, Embedder(base, config.threads(), config.n_gpu_layers))


def rule_identity(config: Any) -> dict[str, Any]:
    """What decides the written score, for caches: the rule served and the head file's sha256."""
    if config.relevance_rule not in HEAD_RULES:
        return {"relevance_rule": config.relevance_rule, "relevance_head": None}
    found = _head_for(config)
    if found is None:
        return {"relevance_rule": DEFAULT_RULE, "relevance_head": None}
    path = str(Path(found[0]).resolve())
    return {"relevance_rule": "head", "relevance_head": file_sha256(path), "relevance_head_path": path}


def head_path(identity: dict[str, Any]) -> str | None:
    """The head file an identity (`rule_identity`) names."""
    return identity.get("relevance_head_path")
