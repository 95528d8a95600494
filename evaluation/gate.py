"""The publish gate: may a candidate model replace the current one?

Both evaluation directories must hold the same references (fingerprints match). The candidate fails when
its JSON validity is below 100%, or when it is significantly worse than the current model on F1 overall or
on the relevance absolute error: the 95% paired bootstrap CI of the per-example difference (candidate -
current) lies entirely on the worse side. "Not significantly worse" passes, so a gate on a small dev set is a
guard against regressions, not a proof of improvement. The verdict is written as JSON for the publish step
(which reads the file or the exit status: 0 pass, 1 fail, 2 not comparable).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evaluation.scoring import clean_json, load_eval_dir
from evaluation.stats import N_RESAMPLES, SEED, paired_stats

GATED_METRICS = ("f1_overall", "abs_relevance_error")
"""Per-example metrics on which a significant regression fails the gate."""

REQUIRED_VALIDITY = 1.0

PASS, FAIL, NOT_COMPARABLE = 0, 1, 2


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class Verdict:
    passed: bool
    exit_code: int
    candidate: str
    current: str
    checks: list[Check]
    statistics: list[dict[str, Any]] = field(default_factory=list)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def reasons(self) -> list[str]:
        return [c.detail for c in self.checks if not c.passed]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reasons": self.reasons}


def evaluate(
    candidate_dir: str | Path, current_dir: str | Path, n_resamples: int = N_RESAMPLES, seed: int = SEED
) -> Verdict:
    """Compare two evaluation directories and decide."""
    candidate, cand_summary = load_eval_dir(candidate_dir)
    current, cur_summary = load_eval_dir(current_dir)
    cand_refs = cand_summary.get("references", {}).get("sha256")
    cur_refs = cur_summary.get("references", {}).get("sha256")
    same = cand_refs is not None and cand_refs == cur_refs and len(candidate.refs) == len(current.refs)
    checks = [
        Check(
            "same_references",
            same,
            f"same references ({len(candidate.refs)} items)"
            if same
            else f"the directories were scored on different references ({len(candidate.refs)} vs "
            f"{len(current.refs)} items, fingerprints {str(cand_refs)[:12]} vs {str(cur_refs)[:12]})",
        )
    ]
    if not same:
        return Verdict(False, NOT_COMPARABLE, str(candidate_dir), str(current_dir), checks)

    validity = candidate.study["json_validity"]
    checks.append(
        Check(
            "json_validity",
            validity >= REQUIRED_VALIDITY,
            f"candidate JSON validity {100 * validity:.1f}% "
            f"({candidate.study['valid_count']}/{candidate.study['n']}; required 100%)",
        )
    )
    statistics = []
    for metric in GATED_METRICS:
        st = paired_stats(candidate.per_example[metric], current.per_example[metric], metric, n_resamples, seed)
        statistics.append(st.as_dict())
        side = "higher" if st.lower_is_better else "lower"
        checks.append(
            Check(
                f"not_worse_{metric}",
                not st.a_worse,
                f"{metric}: candidate {st.mean_a:.4f} vs current {st.mean_b:.4f}, difference {st.mean_diff:+.4f}, "
                f"95% CI [{st.ci_low:+.4f}, {st.ci_high:+.4f}]"
                + (f" lies entirely {side} (significantly worse)" if st.a_worse else ""),
            )
        )
    passed = all(c.passed for c in checks)
    return Verdict(passed, PASS if passed else FAIL, str(candidate_dir), str(current_dir), checks, statistics)


def write_verdict(verdict: Verdict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean_json(verdict.as_dict()), indent=2) + "\n", encoding="utf-8")
    return path


RECORDED_METRICS = (
    "json_validity",
    "f1_overall",
    "f1_key_insights",
    "f1_company_names",
    "relevance_mae",
    "rougeL",
)


def record_in_manifest(manifest_path: str | Path, verdict: Verdict) -> Path:
    """Write the candidate's evaluation and the verdict under `metrics["evaluation"]` of its GGUF manifest.

    This is the publish record: one JSON beside the GGUF says how it was made, that it answers like
    the trained adapter (parity) and how it scored against the model it replaces.
    """
    from inference.manifest import Manifest

    manifest_path = Path(manifest_path)
    manifest = Manifest.read(manifest_path)
    summary = json.loads((Path(verdict.candidate) / "metrics.json").read_text(encoding="utf-8"))
    manifest.metrics["evaluation"] = clean_json(
        {
            "references": summary.get("references", {}),
            "study": {k: summary["study"].get(k) for k in RECORDED_METRICS},
            "f1_overall_nonempty_ref": summary.get("better", {}).get("f1_overall_nonempty_ref"),
            "gate": {"passed": verdict.passed, "reasons": verdict.reasons, "created": verdict.created},
        }
    )
    manifest_path.write_text(json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest_path


def describe(verdict: Verdict) -> str:
    lines = [f"gate: {'PASS' if verdict.passed else 'FAIL'}  candidate={verdict.candidate}  current={verdict.current}"]
    lines += [f"  [{'ok' if c.passed else 'FAIL'}] {c.detail}" for c in verdict.checks]
    return "\n".join(lines)
