"""The publish gate: may a candidate model replace the current one?

Nothing is taken from disk on trust. For each evaluation directory the gate reloads the references the
directory was scored on (the path and fingerprint in its metrics.json) and re-scores its predictions
(`predictions.jsonl`) with `evaluation.scoring`; a directory whose recomputed figures disagree with its
metrics.json or per_example.jsonl (tampered, or stale after the predictions, references or metric code
changed) is refused, and so are two directories whose items (item ids, in order) or references differ.

The candidate must be a verified export: its GGUF manifest (`--manifest X.manifest.json`, else the
manifest beside the adapter or model its evaluation ran, as recorded in run.json / metrics.json) must
describe the evaluated file (same sha256) and hold a passed parity check. Without one the candidate fails,
unless `allow_unverified` (`--allow-unverified`), which the verdict records; a *failed* parity check is
never allowed.

The candidate then fails when its JSON validity is below 100%, or when it is significantly worse than the
current model on F1 overall or on the relevance absolute error: the 95% paired bootstrap CI of the
per-example difference (candidate - current) lies entirely on the worse side. "Not significantly worse"
passes, so a gate on a small dev set is a guard against regressions, not a proof of improvement. The
verdict is written as JSON for the publish step (which reads the file or the exit status: 0 pass, 1 fail,
2 not comparable).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evaluation.scoring import SystemScores, clean_json, fingerprint, load_references, read_per_example, score_rows
from evaluation.stats import N_RESAMPLES, SEED, paired_stats

GATED_METRICS = ("f1_overall", "abs_relevance_error")
"""Per-example metrics on which a significant regression fails the gate."""

REQUIRED_VALIDITY = 1.0

PASS, FAIL, NOT_COMPARABLE = 0, 1, 2

DECIDING_STUDY_KEYS = ("n", "valid_count", "json_validity", "f1_overall", "relevance_mae")
"""metrics.json figures that must be present (and agree with the recomputation) for a directory to count."""


class NotComparable(ValueError):
    """An evaluation directory cannot be used by the gate (missing, stale or tampered); the message says why."""


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
    parity: dict[str, Any] = field(default_factory=dict)
    """The candidate's export: manifest path, state (verified, unverified, failed), detail."""
    allow_unverified: bool = False
    """True when the gate was told to accept a candidate without a verified export (--allow-unverified)."""

    @property
    def reasons(self) -> list[str]:
        return [c.detail for c in self.checks if not c.passed]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reasons": self.reasons}


# ---------------------------------------------------------------- re-scoring an evaluation directory


@dataclass
class Rescored:
    """An evaluation directory, scored again from its predictions and references."""

    directory: Path
    summary: dict[str, Any]
    """Its metrics.json."""
    scores: SystemScores
    """Recomputed now; what the gate decides on."""
    fingerprint: str
    """Of the references as loaded now (equal to the one recorded)."""
    predictions: Path


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def predictions_path(directory: Path, summary: dict[str, Any]) -> Path | None:
    """DIR/predictions.jsonl (eval run), else the file `eval score` recorded in metrics.json."""
    own = directory / "predictions.jsonl"
    if own.is_file():
        return own
    recorded = (summary.get("system") or {}).get("predictions")
    return Path(recorded) if recorded else None


def rescore(directory: str | Path, references: str | Path | None = None) -> Rescored:
    """Re-score an evaluation directory from its predictions and references; NotComparable unless it agrees.

    `references` replaces the path recorded in metrics.json (its fingerprint must still match)."""
    from evaluation.runner import RunnerError, prompt_hash, read_predictions

    directory = Path(directory)
    metrics_path = directory / "metrics.json"
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{metrics_path} not found: is {directory} an evaluation directory (eval run/score)?")
    summary = json.loads(metrics_path.read_text(encoding="utf-8"))
    recorded = summary.get("references") or {}
    ref_path = references or recorded.get("path")
    if not ref_path or not recorded.get("sha256") or recorded.get("n") is None:
        raise NotComparable(f"{metrics_path} records no references (path, n, sha256): it cannot be re-scored")
    if not Path(ref_path).is_file():
        raise NotComparable(
            f"the references {ref_path} that {directory} was scored on are not found (paths are relative to where "
            "the scoring ran); give them with --references"
        )
    try:
        refs = load_references(ref_path, int(recorded["n"]))
    except ValueError as exc:  # a DatasetError lists the bad lines
        raise NotComparable(f"the references of {directory} cannot be read: {exc}") from None
    actual = fingerprint(refs)
    if len(refs) != recorded["n"] or actual != recorded["sha256"]:
        raise NotComparable(
            f"{directory} is stale: the references now at {ref_path} ({len(refs)} items, fingerprint {actual[:12]}) "
            f"are not the ones it was scored on ({recorded['n']} items, {str(recorded['sha256'])[:12]})"
        )
    pred_path = predictions_path(directory, summary)
    if pred_path is None or not pred_path.is_file():
        raise NotComparable(
            f"{directory} has no predictions ({pred_path or 'predictions.jsonl'} not found): the gate re-scores "
            "the raw answers and does not take metrics.json on trust"
        )
    try:
        rows = read_predictions(pred_path)
    except RunnerError as exc:
        raise NotComparable(str(exc)) from None
    if len(rows) < len(refs):
        raise NotComparable(f"{pred_path} has {len(rows)} predictions for {len(refs)} references")
    rows = rows[: len(refs)]  # a cache may hold answers beyond a later, smaller --limit
    for i, (row, ref) in enumerate(zip(rows, refs, strict=True)):
        expected = prompt_hash(ref.prompt)  # eval run records both; a plain predictions file may have neither
        if row.get("item_id", ref.item_id) != ref.item_id or row.get("prompt_sha256", expected) != expected:
            raise NotComparable(
                f"{pred_path}: line {i + 1} was generated for item {row.get('item_id')!r}, not for the reference "
                f"at that place ({ref.item_id!r})"
            )
    name = (summary.get("system") or {}).get("name", directory.name)
    scores = score_rows(name, rows, refs)
    _agree(directory, summary, scores)
    return Rescored(directory, summary, scores, actual, pred_path)


def _agree(directory: Path, summary: dict[str, Any], scores: SystemScores) -> None:
    """metrics.json and per_example.jsonl must say what the predictions say now."""
    stored = summary.get("study") or {}
    missing = [k for k in DECIDING_STUDY_KEYS if k not in stored]
    if missing:
        raise NotComparable(f"{directory}/metrics.json lacks {', '.join(missing)}")
    recomputed = clean_json(scores.study)
    differ = [k for k in recomputed if k in stored and not _close(recomputed[k], stored[k])]
    if differ:
        shown = ", ".join(f"{k} {stored[k]!r} on disk vs {recomputed[k]!r} recomputed" for k in differ[:4])
        raise NotComparable(
            f"{directory} does not match its predictions ({shown}{', ...' if len(differ) > 4 else ''}): metrics.json "
            "was edited, or the predictions, references or metric code changed since; score it again (eval score)"
        )
    rows_path = directory / "per_example.jsonl"
    if not rows_path.is_file():
        return
    rows = read_per_example(rows_path)
    problem = None
    if len(rows) != len(scores.item_ids):
        problem = f"{len(rows)} rows for {len(scores.item_ids)} items"
    else:
        for i, row in enumerate(rows):
            if str(row.get("item_id", row.get("index"))) != scores.item_ids[i]:
                problem = f"row {i + 1} is item {row.get('item_id')!r}, the references say {scores.item_ids[i]!r}"
            elif bool(row.get("valid")) != scores.valid[i]:
                problem = f"row {i + 1} ({scores.item_ids[i]}): valid {row.get('valid')} on disk"
            else:
                bad = [m for m in GATED_METRICS if not _close(row.get(m), scores.per_example[m][i])]
                if bad:
                    problem = f"row {i + 1} ({scores.item_ids[i]}): {bad[0]} {row.get(bad[0])!r} on disk vs " + (
                        f"{scores.per_example[bad[0]][i]!r} recomputed"
                    )
            if problem:
                break
    if problem:
        raise NotComparable(f"{rows_path} does not match the predictions: {problem}; score it again (eval score)")


# ---------------------------------------------------------------- the candidate's export (parity)


def candidate_files(directory: Path, summary: dict[str, Any]) -> list[Path]:
    """The GGUF files the candidate's answers came from, adapter first: run.json's engine, else metrics.json."""
    engine: dict[str, Any] = {}
    run_file = directory / "run.json"
    if run_file.is_file():
        engine = json.loads(run_file.read_text(encoding="utf-8")).get("engine") or {}
    system = summary.get("system") or {}
    files = []
    for run_key, system_key in (("lora_path", "lora"), ("model_path", "model")):
        for value in (engine.get(run_key), system.get(system_key)):
            if isinstance(value, str) and value.endswith(".gguf") and Path(value) not in files:
                files.append(Path(value))
    return files


def find_manifest(files: list[Path]) -> Path | None:
    """The export manifest beside one of the candidate's files (`X.gguf` -> `X.manifest.json`)."""
    from export.manifest import manifest_path_for

    for path in files:
        manifest = manifest_path_for(path)
        if manifest.is_file():
            return manifest
    return None


def _describes(manifest: dict[str, Any], files: list[Path]) -> tuple[bool | None, str]:
    """Does the manifest describe one of the files the candidate ran? (True, False, None: cannot tell)."""
    from data.dataset import file_sha256

    extra = manifest.get("extra") or {}
    sha = extra.get("sha256")
    present = [p for p in files if p.is_file()]
    if not files:
        return None, "the candidate's evaluation names no GGUF file (eval score records only predictions)"
    if not present:
        return None, f"the candidate's files ({', '.join(map(str, files))}) are not on this machine"
    if not sha:
        return False, "the manifest records no sha256 of its file"
    size = (manifest.get("metrics") or {}).get("size_bytes")
    for path in present:
        if (size is None or path.stat().st_size == size) and file_sha256(path) == sha:
            return True, f"it describes {path} (sha256 {sha[:12]})"
    return False, (
        f"it describes another file ({extra.get('file')}, sha256 {sha[:12]}) than the candidate ran "
        f"({', '.join(map(str, present))})"
    )


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def parity_check(
    candidate: Rescored | None, manifest_path: str | Path | None, allow_unverified: bool
) -> tuple[Check, dict[str, Any]]:
    """Is the candidate a verified export? (the check, and the record kept in the verdict)."""
    from export.manifest import FAILED, UNVERIFIED, VERIFIED, ParityStatus, manifest_path_for, parity_status

    files = candidate_files(candidate.directory, candidate.summary) if candidate else []
    given = manifest_path is not None
    path = Path(manifest_path) if given else find_manifest(files)
    record: dict[str, Any] = {"manifest": str(path) if path else None, "manifest_given": given}
    if path is None:
        where = ", ".join(str(manifest_path_for(p)) for p in files) or "it records no GGUF file"
        status = ParityStatus(
            UNVERIFIED, f"no GGUF manifest: none given with --manifest, none beside the candidate's files ({where})"
        )
    elif not path.is_file() or (raw := _read_json(path)) is None:
        status = ParityStatus(UNVERIFIED, f"the manifest {path} is not found or not JSON")
    else:
        status = parity_status(raw)
        tied, how = _describes(raw, files)
        record["describes_candidate"] = tied
        if tied is False:
            status = ParityStatus(UNVERIFIED, f"{path} cannot vouch for the candidate: {how}")
        elif tied is None and status.state != FAILED:
            status = ParityStatus(UNVERIFIED, f"{path}: {status.detail}, but {how}, so it cannot be tied to it")
        else:
            status = ParityStatus(status.state, f"{path}: {status.detail}" + (f"; {how}" if tied else ""))
    record.update(state=status.state, verified=status.verified, detail=status.detail)
    if status.state == VERIFIED:
        return Check("parity_verified", True, f"verified export: {status.detail}"), record
    if status.state == UNVERIFIED and allow_unverified:
        detail = f"NOT a verified export, accepted with --allow-unverified: {status.detail}"
        return Check("parity_verified", True, detail), record
    hint = "" if status.state == FAILED else " (--allow-unverified accepts it, and the verdict records that)"
    return Check("parity_verified", False, f"the candidate is not a verified export: {status.detail}{hint}"), record


# ---------------------------------------------------------------- the verdict


def evaluate(
    candidate_dir: str | Path,
    current_dir: str | Path,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    manifest: str | Path | None = None,
    allow_unverified: bool = False,
    references: str | Path | None = None,
) -> Verdict:
    """Re-score both evaluation directories, check the candidate's export, compare and decide."""
    loaded: dict[str, Rescored] = {}
    checks: list[Check] = []
    for role, directory in (("candidate", candidate_dir), ("current", current_dir)):
        try:
            loaded[role] = rescore(directory, references)
        except NotComparable as exc:
            checks.append(Check(f"{role}_recomputed", False, str(exc)))
        else:
            n, source = loaded[role].scores.study["n"], loaded[role].predictions
            detail = f"{role} re-scored from {source}: {n} items, the figures on disk agree"
            checks.append(Check(f"{role}_recomputed", True, detail))

    def verdict(exit_code: int, statistics: list | None = None, parity: dict | None = None) -> Verdict:
        return Verdict(
            exit_code == PASS,
            exit_code,
            str(candidate_dir),
            str(current_dir),
            checks,
            statistics or [],
            parity=parity or {},
            allow_unverified=allow_unverified,
        )

    if len(loaded) < 2:
        return verdict(NOT_COMPARABLE)
    candidate, current = loaded["candidate"].scores, loaded["current"].scores
    same_items = candidate.item_ids == current.item_ids
    checks.append(
        Check(
            "same_items",
            same_items,
            f"same items in the same order ({len(candidate.item_ids)})"
            if same_items
            else f"the directories hold different items: {_first_difference(candidate.item_ids, current.item_ids)}",
        )
    )
    cand_refs, cur_refs = loaded["candidate"].fingerprint, loaded["current"].fingerprint
    same = cand_refs == cur_refs
    checks.append(
        Check(
            "same_references",
            same,
            f"same references ({len(candidate.refs)} items, fingerprint {cand_refs[:12]})"
            if same
            else f"the directories were scored on different references ({len(candidate.refs)} vs "
            f"{len(current.refs)} items, fingerprints {cand_refs[:12]} vs {cur_refs[:12]})",
        )
    )
    if not (same and same_items):
        return verdict(NOT_COMPARABLE)

    parity, parity_record = parity_check(loaded["candidate"], manifest, allow_unverified)
    checks.append(parity)
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
    return verdict(PASS if passed else FAIL, statistics, parity_record)


def _first_difference(a: list[str], b: list[str]) -> str:
    if len(a) != len(b):
        return f"{len(a)} vs {len(b)} items"
    i = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
    return f"item {i + 1} is {a[i]!r} in the candidate, {b[i]!r} in the current"


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
    the trained adapter (parity) and how it scored against the model it replaces. The figures are the
    candidate's metrics.json, which the gate has just checked against its predictions.
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
            "gate": {
                "passed": verdict.passed,
                "reasons": verdict.reasons,
                "created": verdict.created,
                "parity_verified": bool(verdict.parity.get("verified")),
                "allow_unverified": verdict.allow_unverified,
            },
        }
    )
    manifest_path.write_text(json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest_path


def describe(verdict: Verdict) -> str:
    lines = [f"gate: {'PASS' if verdict.passed else 'FAIL'}  candidate={verdict.candidate}  current={verdict.current}"]
    lines += [f"  [{'ok' if c.passed else 'FAIL'}] {c.detail}" for c in verdict.checks]
    if verdict.allow_unverified and verdict.parity and not verdict.parity.get("verified"):
        lines.append("  (--allow-unverified: the candidate's export is not parity-verified; the verdict records it)")
    return "\n".join(lines)
