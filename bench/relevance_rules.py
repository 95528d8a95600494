"""Which relevance rule ranks best? Every rule, read from the score distributions an evaluation recorded.

The engine records P(1..10) at the score position for every answer (`relevance.probabilities` in
each predictions.jsonl line), whatever rule wrote the score, so one evaluation directory answers for
all rules at once: the written score (the rule's integer) and the distribution's mean are scored
against the references, beside the constant-median baseline, with paired bootstrap CIs of the
absolute-error difference. Use it on out-of-fold predictions (`eval cv`, docs/crossval.md) to choose
the rule; on 23 dev items it only hints. Prints figures; asserts nothing.

    .venv/bin/python bench/relevance_rules.py EVAL_DIR REFERENCES.jsonl [--baseline-from TRAIN.jsonl]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation.metrics import r2_score  # noqa: E402
from evaluation.scoring import load_references  # noqa: E402
from evaluation.stats import bootstrap_ci  # noqa: E402
from inference.relevance import RULES, expected  # noqa: E402


def spearman(a: list[float], b: list[float]) -> float | None:
    from scipy.stats import spearmanr

    value = spearmanr(a, b).statistic
    return None if value != value else float(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_dir", type=Path)
    parser.add_argument("references", type=Path)
    parser.add_argument("--baseline-from", type=Path, help="training file whose median relevance is the baseline")
    args = parser.parse_args()

    refs = load_references(args.references)
    rows = [json.loads(line) for line in (args.eval_dir / "predictions.jsonl").read_text().splitlines() if line]
    by_id = {r.item_id: r for r in refs}
    pairs = [(row, by_id[row["item_id"]]) for row in rows if row.get("relevance") and row.get("item_id") in by_id]
    if not pairs:
        print("no predictions with a recorded score distribution (run eval run with the current engine)")
        return 1
    truth = [float(ref.record["relevance_score"]) for _, ref in pairs]
    dists = [row["relevance"]["probabilities"] for row, _ in pairs]
    base_refs = load_references(args.baseline_from) if args.baseline_from else refs
    constant = float(statistics.median(float(r.record["relevance_score"]) for r in base_refs))
    base_err = [abs(t - constant) for t in truth]
    print(f"{len(pairs)} items with a distribution (of {len(rows)} predictions); constant baseline {constant:g}")
    print(f"{'system':26} {'MAE':>6} {'R2':>7} {'Spearman':>9}  |err| - baseline [95% CI]")
    systems: dict[str, list[float]] = {f"rule {name}": [] for name, read in RULES.items() if read}
    systems["expected (mean, unrounded)"] = []
    systems["greedy (from P)"] = []
    systems["as written in this run"] = []
    for (row, _), p in zip(pairs, dists, strict=True):
        for name, read in RULES.items():
            if read:
                systems[f"rule {name}"].append(float(read(p)))
        systems["expected (mean, unrounded)"].append(expected(p))
        systems["greedy (from P)"].append(float(_greedy(p)))
        systems["as written in this run"].append(float(row["analysis"]["relevance_score"]))
    systems["constant baseline"] = [constant] * len(truth)
    for name, pred in systems.items():
        err = [abs(t - q) for t, q in zip(truth, pred, strict=True)]
        lo, hi, _, _ = bootstrap_ci(err, base_err)
        r2 = r2_score(truth, pred)
        rho = spearman(truth, pred) if len(set(pred)) > 1 else None
        ci = "" if name == "constant baseline" else f"{np.mean(err) - np.mean(base_err):+.2f} [{lo:+.2f}, {hi:+.2f}]"
        print(f"{name:26} {np.mean(err):6.2f} {_f(r2):>7} {_f(rho):>9}  {ci}")
    return 0


def _greedy(p: list[float]) -> int:
    """What greedy decoding writes: the most probable first digit ("1" stands for 1 and 10), then 10
    when "0" is likelier than the number's end after it."""
    first = [p[0] + p[9], *p[1:9]]
    best = 1 + int(np.argmax(first))
    return (10 if p[9] > p[0] else 1) if best == 1 else best


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
