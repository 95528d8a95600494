"""One system's scorecard, and the evaluation directory that stores it.

An evaluation directory holds `predictions.jsonl` (raw generated text), `metrics.json` (aggregates under
"study", "better", "baselines", ...), `per_example.jsonl` (parsed records and per-example scores, what
`compare` and `gate` need), plots and reports. Two directories are comparable when their references'
fingerprints match.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation import metrics
from evaluation.bertscore import BertScoreResult
from evaluation.parse import Parsed, Record, parse_prediction, parse_reference, to_record

BASELINE_NAME = "all-empty baseline"


@dataclass(frozen=True)
class Reference:
    prompt: str
    """The user message, fed to the analyzer as is."""
    answer: str
    record: Record
    item_id: str
    head_input: Any = None
    """What the relevance head reads of the item (inference.relevance_head.HeadInput: its whole text)."""


def reference(row: Any) -> Reference:
    """The Reference of one data.dataset.Record."""
    from inference.relevance_head import HeadInput

    head_input = HeadInput(row.title, row.full_content, row.is_sponsored)
    return Reference(row.prompt, row.answer, parse_reference(row.answer), row.item_id, head_input)


def load_references(path: str | Path, limit: int | None = None) -> list[Reference]:
    """References in the training-data format; every line must be valid (data.dataset checks them)."""
    from data.dataset import load_dataset

    rows = load_dataset(path)
    if limit is not None:
        rows = rows[: max(limit, 0)]
    return [reference(r) for r in rows]


def fingerprint(refs: Sequence[Reference]) -> str:
    """sha256 over the prompts and answers in order: equal only for the same references."""
    digest = hashlib.sha256()
    for ref in refs:
        digest.update(json.dumps([ref.prompt, ref.answer], ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


@dataclass
class SystemScores:
    """Everything scored for one system on one reference set."""

    name: str
    preds: list[Record]
    valid: list[bool]
    refs: list[Record]
    study: dict[str, Any]
    better: dict[str, Any]
    per_example: dict[str, list[float]]
    """metrics.per_example arrays plus length_chars and length_words."""
    bertscore: dict[str, Any] | None = None
    item_ids: list[str] = field(default_factory=list)


def score_records(
    name: str,
    preds: list[Record],
    valid: list[bool],
    refs: list[Record],
    bertscore: bool = False,
    bertscore_model: str | None = None,
    item_ids: list[str] | None = None,
) -> SystemScores:
    study = metrics.study_metrics(preds, refs, valid)
    rows = metrics.per_example(preds, refs)
    rows["length_chars"] = [float(metrics.response_length(p)) for p in preds]
    rows["length_words"] = [float(metrics.response_words(p)) for p in preds]
    bert = None
    if bertscore:
        bert = run_bertscore(preds, refs, bertscore_model)
        study.update(bert.summary())
    return SystemScores(
        name=name,
        preds=preds,
        valid=valid,
        refs=refs,
        study=study,
        better=metrics.better_metrics(preds, refs, valid),
        per_example=rows,
        bertscore=None if bert is None else {**bert.summary(), "per_pair_f1": bert.per_pair_f1},
        item_ids=item_ids or [str(i) for i in range(len(refs))],
    )


def run_bertscore(preds: list[Record], refs: list[Record], model: str | None = None) -> BertScoreResult:
    from evaluation.bertscore import bertscore

    pairs = metrics.kept_pairs(preds, refs)
    return bertscore([p for _, p, _ in pairs], [r for _, _, r in pairs], model_path=model)


def served_record(row: dict[str, Any]) -> Parsed:
    """What a prediction row is scored as: validity from the raw text (the study's rule), the fields from
    the analysis the server returned when the row has one (repeats dropped, non-organisations removed
    from company_names, the head's score), so the figures measure what users get."""
    parsed = parse_prediction(row.get("output"))
    analysis = row.get("analysis")
    if parsed.valid and isinstance(analysis, dict):
        return Parsed(to_record(analysis), True)
    return parsed


def score_rows(
    name: str, rows: Sequence[dict[str, Any]], refs: Sequence[Reference], bertscore: bool = False, bertscore_model=None
) -> SystemScores:
    """Score prediction rows (`{"output": raw, "analysis": ...}`, as `eval run` writes them) as served."""
    if len(rows) != len(refs):
        raise ValueError(f"{len(rows)} predictions for {len(refs)} references: they must align line by line")
    parsed = [served_record(row) for row in rows]
    return score_records(
        name,
        [p.record for p in parsed],
        [p.valid for p in parsed],
        [r.record for r in refs],
        bertscore=bertscore,
        bertscore_model=bertscore_model,
        item_ids=[r.item_id for r in refs],
    )


def baseline_scores(refs: list[Record], relevance: float, bertscore: bool = False, bertscore_model=None):
    """The all-empty, constant-relevance system as a scorecard (so it can be plotted and tested against)."""
    preds = metrics.constant_records(len(refs), relevance)
    return score_records(BASELINE_NAME, preds, [True] * len(refs), refs, bertscore, bertscore_model)


# ---------------------------------------------------------------- the evaluation directory


def clean_json(value: Any) -> Any:
    """NaN and infinities become null, so metrics.json stays standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(clean_json(obj), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_per_example(path: Path, scores: SystemScores) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for i, (pred, ref, valid) in enumerate(zip(scores.preds, scores.refs, scores.valid, strict=True)):
            row = {
                "index": i,
                "item_id": scores.item_ids[i],
                "valid": valid,
                **{k: v[i] for k, v in scores.per_example.items()},
                "prediction": pred,
                "reference": ref,
            }
            handle.write(json.dumps(clean_json(row), ensure_ascii=False) + "\n")


def read_per_example(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_eval_dir(directory: str | Path) -> tuple[SystemScores, dict[str, Any]]:
    """The scorecard and metrics.json of an evaluation directory written by `eval run` or `eval score`."""
    directory = Path(directory)
    metrics_path, rows_path = directory / "metrics.json", directory / "per_example.jsonl"
    for path in (metrics_path, rows_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: is {directory} an evaluation directory (eval run/score)?")
    summary = json.loads(metrics_path.read_text(encoding="utf-8"))
    rows = read_per_example(rows_path)
    keys = [k for k in rows[0] if k not in ("index", "item_id", "valid", "prediction", "reference")] if rows else []
    scores = SystemScores(
        name=summary.get("system", {}).get("name", directory.name),
        preds=[r["prediction"] for r in rows],
        valid=[bool(r["valid"]) for r in rows],
        refs=[r["reference"] for r in rows],
        study=summary["study"],
        better=summary.get("better", {}),
        per_example={k: [float(r[k]) for r in rows] for k in keys},
        bertscore=summary.get("bertscore"),
        item_ids=[str(r.get("item_id", r["index"])) for r in rows],
    )
    return scores, summary
