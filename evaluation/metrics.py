"""Every metric of docs/metrics.md as plain functions over position-aligned lists of records.

The "study-compatible" functions reproduce the original study's definitions exactly (including its odd
conventions, kept on purpose so our numbers sit beside its table). The "better" functions beside them fix
what the study's metrics hide: empty answers rewarded, invalid output imputed as 0, case-sensitive tags.
Records are the dicts of `evaluation.parse` (relevance_score, summary, key_insights, company_names).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

from evaluation.parse import LIST_FIELDS, Record

SPONSORED_SUMMARY = "Sponsored Ad"
"""The study's sponsored-ad label: an item is an ad when its summary is exactly this."""


# ---------------------------------------------------------------- list fields (§2)


@dataclass(frozen=True)
class SetScores:
    precision: float
    recall: float
    f1: float
    jaccard: float


def set_scores(pred: Sequence[str], ref: Sequence[str]) -> SetScores:
    """P/R/F1/Jaccard of two lists compared as sets of exact strings; both empty = 1, one empty = 0."""
    p, r = set(pred), set(ref)
    if not p and not r:
        return SetScores(1.0, 1.0, 1.0, 1.0)
    if not p or not r:
        return SetScores(0.0, 0.0, 0.0, 0.0)
    tp = len(p & r)
    precision, recall = tp / len(p), tp / len(r)
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return SetScores(precision, recall, f1, tp / len(p | r))


def field_scores(preds: Sequence[Record], refs: Sequence[Record], field: str) -> list[SetScores]:
    _check_aligned(preds, refs)
    return [set_scores(p[field], r[field]) for p, r in zip(preds, refs, strict=True)]


def per_example(preds: Sequence[Record], refs: Sequence[Record]) -> dict[str, list[float]]:
    """Per-example arrays: the inputs of the aggregates and of the paired statistics (§7)."""
    ki = field_scores(preds, refs, "key_insights")
    cn = field_scores(preds, refs, "company_names")
    return {
        "f1_key_insights": [s.f1 for s in ki],
        "f1_company_names": [s.f1 for s in cn],
        "f1_overall": [(a.f1 + b.f1) / 2 for a, b in zip(ki, cn, strict=True)],
        "jaccard_key_insights": [s.jaccard for s in ki],
        "jaccard_company_names": [s.jaccard for s in cn],
        "jaccard_overall": [(a.jaccard + b.jaccard) / 2 for a, b in zip(ki, cn, strict=True)],
        "abs_relevance_error": _abs_errors(preds, refs),
    }


def pooled_precision_recall(preds: Sequence[Record], refs: Sequence[Record]) -> tuple[float, float, int]:
    """The study's precision_overall / recall_overall and the number of cells they average.

    Every (example, list field) cell is pooled; cells where prediction and reference are both empty are
    DROPPED (unlike the F1, which counts them as 1); one-sided empty cells count as 0.
    """
    _check_aligned(preds, refs)
    precisions, recalls = [], []
    for p, r in zip(preds, refs, strict=True):
        for field in LIST_FIELDS:
            if not set(p[field]) and not set(r[field]):
                continue
            scores = set_scores(p[field], r[field])
            precisions.append(scores.precision)
            recalls.append(scores.recall)
    if not precisions:
        return 0.0, 0.0, 0
    return _mean(precisions), _mean(recalls), len(precisions)


# ---------------------------------------------------------------- relevance (§3)


def relevance_mae(preds: Sequence[Record], refs: Sequence[Record]) -> float:
    _check_aligned(preds, refs)
    return _mean(_abs_errors(preds, refs))


def r2_score(y_true: Sequence[float], y_pred: Sequence[float]) -> float | None:
    """1 - SS_res / SS_tot; None when the references are constant (SS_tot = 0)."""
    mean = _mean(y_true)
    ss_tot = sum((y - mean) ** 2 for y in y_true)
    if ss_tot == 0:
        return None
    ss_res = sum((y - yh) ** 2 for y, yh in zip(y_true, y_pred, strict=True))
    return 1 - ss_res / ss_tot


def adjusted_r2(r2: float | None, n: int, k: int = 1) -> float | None:
    """1 - (1 - R²)(n - 1)/(n - k - 1); the study reported this with k = 1. None when n <= k + 1."""
    if r2 is None or n - k - 1 <= 0:
        return None
    return 1 - (1 - r2) * (n - 1) / (n - k - 1)


def relevance_r2(preds: Sequence[Record], refs: Sequence[Record]) -> float | None:
    _check_aligned(preds, refs)
    return r2_score([float(r["relevance_score"]) for r in refs], [float(p["relevance_score"]) for p in preds])


# ---------------------------------------------------------------- ROUGE (§4)


def joined_text(record: Record) -> str:
    """The text ROUGE and BERTScore see: insights then companies, space-joined (the summary is not used)."""
    return " ".join(list(record["key_insights"]) + list(record["company_names"]))


def kept_pairs(preds: Sequence[Record], refs: Sequence[Record]) -> list[tuple[int, str, str]]:
    """(index, prediction text, reference text) for the pairs where neither text is empty."""
    _check_aligned(preds, refs)
    pairs = []
    for i, (p, r) in enumerate(zip(preds, refs, strict=True)):
        pt, rt = joined_text(p), joined_text(r)
        if pt and rt:
            pairs.append((i, pt, rt))
    return pairs


@cache
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def rouge_pair_scores(pairs: Sequence[tuple[int, str, str]]) -> list[dict[str, float]]:
    """ROUGE-1/2/L F-measure of each kept pair (reference is the target)."""
    scorer = _rouge_scorer()
    out = []
    for _, pred_text, ref_text in pairs:
        scores = scorer.score(ref_text, pred_text)
        out.append({name: scores[name].fmeasure for name in ("rouge1", "rouge2", "rougeL")})
    return out


def rouge(preds: Sequence[Record], refs: Sequence[Record]) -> dict[str, float | int]:
    """Mean ROUGE-1/2/L F-measure over the kept pairs, and how many pairs were kept (0 pairs -> 0.0)."""
    per_pair = rouge_pair_scores(kept_pairs(preds, refs))
    result: dict[str, float | int] = {
        name: _mean([s[name] for s in per_pair]) if per_pair else 0.0 for name in ("rouge1", "rouge2", "rougeL")
    }
    result["rouge_pairs"] = len(per_pair)
    return result


# ---------------------------------------------------------------- other figures (§6)


def exact_match(preds: Sequence[Record], refs: Sequence[Record]) -> float:
    """Share of examples whose four fields all equal the reference's (lists compared in order)."""
    _check_aligned(preds, refs)
    keys = ("relevance_score", "summary", *LIST_FIELDS)
    return _mean([all(p[k] == r[k] for k in keys) for p, r in zip(preds, refs, strict=True)]) if refs else 0.0


def response_length(record: Record) -> int:
    """Characters of the answer's text: summary plus every insight and company name."""
    return len(record["summary"]) + sum(map(len, record["key_insights"])) + sum(map(len, record["company_names"]))


def response_words(record: Record) -> int:
    """Whitespace-separated words of the same texts as `response_length`."""
    texts = [record["summary"], *record["key_insights"], *record["company_names"]]
    return sum(len(t.split()) for t in texts)


def describe(values: Sequence[float]) -> dict[str, float | None]:
    """mean, population std, min, max, median (all None for no values)."""
    if not values:
        return {"mean": None, "std": None, "min": None, "max": None, "median": None}
    return {
        "mean": _mean(values),
        "std": statistics.pstdev(values),
        "min": float(min(values)),
        "max": float(max(values)),
        "median": float(statistics.median(values)),
    }


def coefficient_of_variation(values: Sequence[float]) -> float | None:
    """Output consistency: population std / mean of the response lengths (None when the mean is 0)."""
    if not values:
        return None
    mean = _mean(values)
    return statistics.pstdev(values) / mean if mean else None


def sponsored_detection(preds: Sequence[Record], refs: Sequence[Record]) -> dict[str, float | int]:
    """Ad detection where positive means summary == "Sponsored Ad"; undefined ratios are 0 (as the study)."""
    _check_aligned(preds, refs)
    tp = fp = tn = fn = 0
    for p, r in zip(preds, refs, strict=True):
        predicted, actual = p["summary"] == SPONSORED_SUMMARY, r["summary"] == SPONSORED_SUMMARY
        tp += predicted and actual
        fp += predicted and not actual
        tn += not predicted and not actual
        fn += not predicted and actual
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n = tp + fp + tn + fn
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": (tp + tn) / n if n else 0.0,
        "true_positives": tp,
        "false_positives": fp,
        "true_negatives": tn,
        "false_negatives": fn,
    }


# ---------------------------------------------------------------- the study's profile


def study_metrics(preds: Sequence[Record], refs: Sequence[Record], valid: Sequence[bool]) -> dict[str, Any]:
    """The study-compatible profile (docs/metrics.md §1-§4, §6). BERTScore is added by the caller when computed."""
    _check_aligned(preds, refs)
    if len(valid) != len(refs):
        raise ValueError(f"{len(valid)} validity flags for {len(refs)} references")
    n = len(refs)
    rows = per_example(preds, refs)
    precision, recall, cells = pooled_precision_recall(preds, refs)
    r2 = relevance_r2(preds, refs)
    lengths = [response_length(p) for p in preds]
    words = [response_words(p) for p in preds]
    length_stats, word_stats = describe(lengths), describe(words)
    sponsored = sponsored_detection(preds, refs)
    return {
        "n": n,
        "valid_count": sum(bool(v) for v in valid),
        "json_validity": _mean([bool(v) for v in valid]) if n else 0.0,
        "f1_overall": _mean(rows["f1_overall"]),
        "f1_key_insights": _mean(rows["f1_key_insights"]),
        "f1_company_names": _mean(rows["f1_company_names"]),
        "jaccard_overall": _mean(rows["jaccard_overall"]),
        "jaccard_key_insights": _mean(rows["jaccard_key_insights"]),
        "jaccard_company_names": _mean(rows["jaccard_company_names"]),
        "precision_overall": precision,
        "recall_overall": recall,
        "precision_recall_cells": cells,
        "relevance_mae": relevance_mae(preds, refs),
        "relevance_r2": r2,
        "relevance_adjusted_r2": adjusted_r2(r2, n, k=1),
        **rouge(preds, refs),
        "exact_match": exact_match(preds, refs),
        "avg_length": length_stats["mean"],
        **{f"{k}_length": v for k, v in length_stats.items() if k != "mean"},
        "avg_words": word_stats["mean"],
        **{f"{k}_words": v for k, v in word_stats.items() if k != "mean"},
        "output_consistency_cv": coefficient_of_variation(lengths),
        **{f"sponsored_ad_{k}": v for k, v in sponsored.items()},
    }


# ---------------------------------------------------------------- better metrics (§9)


def normalize_tag(text: str) -> str:
    """Case- and whitespace-insensitive form of a tag ("  GitHub  repo" == "github Repo")."""
    return " ".join(text.casefold().split())


def normalized(records: Sequence[Record], normalize: Callable[[str], str] = normalize_tag) -> list[Record]:
    """Copies of the records with every list item normalized (the summary and score unchanged)."""
    return [{**r, **{f: [normalize(t) for t in r[f]] for f in LIST_FIELDS}} for r in records]


def f1_nonempty_references(preds: Sequence[Record], refs: Sequence[Record]) -> dict[str, float | int | None]:
    """F1 only where the reference list is non-empty, so that predicting [] earns nothing."""
    _check_aligned(preds, refs)
    out: dict[str, float | int | None] = {}
    cells: list[float] = []
    for field in LIST_FIELDS:
        f1s = [set_scores(p[field], r[field]).f1 for p, r in zip(preds, refs, strict=True) if set(r[field])]
        out[f"f1_{field}_nonempty_ref"] = _mean(f1s) if f1s else None
        out[f"n_{field}_nonempty_ref"] = len(f1s)
        cells += f1s
    out["f1_overall_nonempty_ref"] = _mean(cells) if cells else None
    out["n_cells_nonempty_ref"] = len(cells)
    return out


def micro_prf(preds: Sequence[Record], refs: Sequence[Record], fields: Sequence[str] = LIST_FIELDS) -> SetScores:
    """Micro-averaged P/R/F1 (and pooled Jaccard): true positives, predicted and reference tags summed first."""
    _check_aligned(preds, refs)
    tp = n_pred = n_ref = n_union = 0
    for p, r in zip(preds, refs, strict=True):
        for field in fields:
            ps, rs = set(p[field]), set(r[field])
            tp += len(ps & rs)
            n_pred += len(ps)
            n_ref += len(rs)
            n_union += len(ps | rs)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_ref if n_ref else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return SetScores(precision, recall, f1, tp / n_union if n_union else 0.0)


def micro_metrics(preds: Sequence[Record], refs: Sequence[Record]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, fields in (("overall", LIST_FIELDS), *((f, (f,)) for f in LIST_FIELDS)):
        scores = micro_prf(preds, refs, fields)
        out.update({f"micro_{k}_{name}": v for k, v in asdict(scores).items()})
    return out


def better_metrics(preds: Sequence[Record], refs: Sequence[Record], valid: Sequence[bool]) -> dict[str, Any]:
    """Metrics that do not reward empty answers, do not impute invalid output, and ignore tag case/spacing."""
    _check_aligned(preds, refs)
    valid_pairs = [(p, r) for p, r, v in zip(preds, refs, valid, strict=True) if v]
    norm_preds, norm_refs = normalized(preds), normalized(refs)
    norm_rows = per_example(norm_preds, norm_refs)
    within_one = [error <= 1 for error in _abs_errors(preds, refs)]
    return {
        **f1_nonempty_references(preds, refs),
        **micro_metrics(preds, refs),
        "normalized": {
            "f1_overall": _mean(norm_rows["f1_overall"]),
            "f1_key_insights": _mean(norm_rows["f1_key_insights"]),
            "f1_company_names": _mean(norm_rows["f1_company_names"]),
            "jaccard_overall": _mean(norm_rows["jaccard_overall"]),
            **f1_nonempty_references(norm_preds, norm_refs),
            **micro_metrics(norm_preds, norm_refs),
        },
        "relevance_mae_valid_only": relevance_mae(*zip(*valid_pairs, strict=True)) if valid_pairs else None,
        "relevance_within_1": _mean(within_one) if within_one else 0.0,
        "summary_exact": _mean([p["summary"] == r["summary"] for p, r in zip(preds, refs, strict=True)]),
    }


# ---------------------------------------------------------------- trivial baselines (§9)


def median_relevance(refs: Sequence[Record]) -> float:
    return float(statistics.median(float(r["relevance_score"]) for r in refs))


def constant_records(n: int, relevance: float) -> list[Record]:
    """The all-empty answer with a constant relevance score, n times."""
    return [{"relevance_score": relevance, "summary": "", "key_insights": [], "company_names": []} for _ in range(n)]


def baselines(refs: Sequence[Record], relevance: float | None = None) -> dict[str, Any]:
    """Trivial systems scored on the same references: every list empty, relevance constant.

    `relevance` should be the training set's median score; by default it is the references' median (say so
    when reporting, since that peeks at the answers).
    """
    source = "given" if relevance is not None else "median of the references"
    constant = median_relevance(refs) if relevance is None else float(relevance)
    preds = constant_records(len(refs), constant)
    valid = [True] * len(refs)
    return {
        "relevance_constant": constant,
        "relevance_constant_source": source,
        "all_empty": {"study": study_metrics(preds, refs, valid), "better": better_metrics(preds, refs, valid)},
    }


# ---------------------------------------------------------------- helpers


def _mean(values: Sequence[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def _abs_errors(preds: Sequence[Record], refs: Sequence[Record]) -> list[float]:
    return [abs(float(p["relevance_score"]) - float(r["relevance_score"])) for p, r in zip(preds, refs, strict=True)]


def _check_aligned(preds: Sequence[Any], refs: Sequence[Any]) -> None:
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions for {len(refs)} references: they must align by position")
