"""Write what `eval run`, `eval score` and `eval compare` produce: metrics.json, per_example.jsonl, plots, reports.

A single system is always shown beside the all-empty, constant-relevance baseline on the same references,
with paired statistics against it: a model that cannot beat predicting nothing should be visible at once.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evaluation import metrics, plots, report
from evaluation.scoring import (
    SystemScores,
    baseline_scores,
    load_eval_dir,
    write_json,
    write_per_example,
)
from evaluation.stats import compare

STUDY_PROFILE_NOTE = (
    "study-compatible profile of docs/metrics.md (§1-§6); better metrics under 'better' and 'baselines'"
)


def _log(message: str) -> None:
    print(f"eval: {message}", file=sys.stderr, flush=True)


def write_eval_dir(
    out_dir: Path,
    scores: SystemScores,
    references: dict[str, Any],
    baseline_relevance: float | None = None,
    baseline_source: str | None = None,
    bertscore: bool = False,
    bertscore_model: str | None = None,
    extra: dict[str, Any] | None = None,
    draw_plots: bool = True,
) -> dict[str, Any]:
    """Score outputs are written into out_dir; returns the metrics.json content.

    `draw_plots=False` leaves the plots out (an incomplete cross-validation: figures of a part would
    be read as the whole)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    base = metrics.baselines(scores.refs, baseline_relevance)
    if baseline_source:
        base["relevance_constant_source"] = baseline_source
    _log(f"baseline: all lists empty, relevance {base['relevance_constant']:g} ({base['relevance_constant_source']})")
    baseline = baseline_scores(scores.refs, base["relevance_constant"], bertscore, bertscore_model)
    _log("paired statistics against the baseline (10,000 bootstrap resamples per metric)")
    vs_baseline = compare(scores.per_example, baseline.per_example)
    summary = {
        "system": {"name": scores.name, **(extra or {}).get("system", {})},
        "references": references,
        "profile": STUDY_PROFILE_NOTE,
        "study": scores.study,
        "better": scores.better,
        "baselines": base,
        "bertscore": None
        if scores.bertscore is None
        else {k: v for k, v in scores.bertscore.items() if k != "per_pair_f1"},
        "vs_baseline": [s.as_dict() for s in vs_baseline],
        **{k: v for k, v in (extra or {}).items() if k != "system"},
    }
    write_json(out_dir / "metrics.json", summary)
    write_per_example(out_dir / "per_example.jsonl", scores)
    systems = [scores, baseline]
    comparisons = [(scores.name, baseline.name, vs_baseline)]
    written = []
    if draw_plots:
        _log("plots")
        written = plots.make_all(systems, comparisons, out_dir / "plots")
    context = [
        f"References: {references.get('path', '?')} — {references.get('n')} items, "
        f"fingerprint {str(references.get('sha256'))[:16]}.",
        *_run_lines(extra or {}),
    ]
    note = (
        f"The baseline column answers every item with empty lists and relevance "
        f"{base['relevance_constant']:g} ({base['relevance_constant_source']})."
    )
    blocks = report.build_blocks(f"Evaluation: {scores.name}", systems, comparisons, written, context, note)
    report.write_reports(blocks, out_dir)
    return summary


def _run_lines(extra: dict[str, Any]) -> list[str]:
    lines = []
    system = extra.get("system", {})
    if system:
        lines.append("System: " + ", ".join(f"{k}={v}" for k, v in system.items() if v is not None))
    run = extra.get("run")
    if run:
        lines.append("Generation: " + ", ".join(f"{k}={_short(v)}" for k, v in run.items() if v is not None))
    return lines


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def write_comparison(dirs: Sequence[Path], out_dir: Path, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Statistics between every pair of evaluation directories, with comparison plots and reports."""
    loaded = [load_eval_dir(d) for d in dirs]
    systems = [scores for scores, _ in loaded]
    if names:
        for system, name in zip(systems, names, strict=True):
            system.name = name
    if len({s.name for s in systems}) < len(systems):
        for system, directory in zip(systems, dirs, strict=True):
            system.name = f"{system.name} ({Path(directory).name})"
    fingerprints = {summary.get("references", {}).get("sha256") for _, summary in loaded}
    if len(fingerprints) != 1 or None in fingerprints:
        raise ValueError("the evaluation directories were scored on different references; they cannot be compared")
    out_dir.mkdir(parents=True, exist_ok=True)
    comparisons = []
    for a, b in itertools.combinations(systems, 2):
        _log(f"paired statistics: {a.name} vs {b.name}")
        comparisons.append((a.name, b.name, compare(a.per_example, b.per_example)))
    result = {
        "systems": [
            {"name": s.name, "dir": str(d), "study": s.study, "better": s.better}
            for s, d in zip(systems, dirs, strict=True)
        ],
        "references": loaded[0][1].get("references"),
        "comparisons": [{"a": a, "b": b, "statistics": [s.as_dict() for s in stats]} for a, b, stats in comparisons],
    }
    write_json(out_dir / "comparison.json", result)
    written = plots.make_all(systems, comparisons, out_dir / "plots")
    refs = loaded[0][1].get("references", {})
    context = [
        f"References: {refs.get('path', '?')} — {refs.get('n')} items, fingerprint {str(refs.get('sha256'))[:16]}.",
        *(f"{s.name}: {d}" for s, d in zip(systems, dirs, strict=True)),
    ]
    blocks = report.build_blocks(
        "Comparison: " + " vs ".join(s.name for s in systems), systems, comparisons, written, context
    )
    report.write_reports(blocks, out_dir)
    return result
