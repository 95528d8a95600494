"""How often company_names lists non-organisations, and what keeping organisations only does to F1.

Reads an `eval run` / `eval cv run` predictions file (the raw answers) and its references, then prints:
- the references' own names by kind (what the filter would take from the annotations: should be ~0);
- the raw answers' names by kind (place, person, generic: `inference.companies.kind`), with examples;
- company_names and overall F1 of the raw answers against the same answers filtered
  (`inference.companies.organisations`, what the analyzer now returns), with a paired bootstrap CI that
  resamples whole emails.

    .venv/bin/python bench/companies.py runs/cv/shipped/fold-0/eval/predictions.jsonl \
        runs/cv/shipped/fold-0/heldout.jsonl [--all-references ../shared/data/news_train.jsonl]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.dataset import load_dataset  # noqa: E402
from evaluation.metrics import per_example  # noqa: E402
from evaluation.parse import parse_prediction  # noqa: E402
from evaluation.relevance_cv import email_bootstrap  # noqa: E402
from evaluation.runner import read_predictions  # noqa: E402
from evaluation.scoring import reference  # noqa: E402
from inference.companies import kind, organisations  # noqa: E402


def kinds(names_per_item: list[list[str]]) -> tuple[int, Counter, dict[str, Counter]]:
    total, counts, examples = 0, Counter(), {}
    for names in names_per_item:
        for name in names:
            total += 1
            what = kind(name)
            if what:
                counts[what] += 1
                examples.setdefault(what, Counter())[name] += 1
    return total, counts, examples


def report(label: str, names_per_item: list[list[str]]) -> None:
    total, counts, examples = kinds(names_per_item)
    dropped = sum(counts.values())
    share = dropped / total if total else 0.0
    print(f"{label}: {total} names in {len(names_per_item)} items; not organisations: {dropped} ({share:.1%})")
    for what in ("place", "person", "generic"):
        if counts[what]:
            top = ", ".join(f"{n!r} x{c}" for n, c in examples[what].most_common(8))
            print(f"  {what}: {counts[what]} ({top})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("predictions")
    parser.add_argument("references", help="the JSONL the predictions were made for (same order)")
    parser.add_argument("--all-references", help="a data file whose annotations to check as well")
    args = parser.parse_args()
    records = load_dataset(args.references)
    refs = [reference(r) for r in records]
    rows = read_predictions(Path(args.predictions))[: len(refs)]
    if len(rows) != len(refs):
        print(f"{len(rows)} predictions for {len(refs)} references", file=sys.stderr)
        return 2
    if args.all_references:
        report("annotations (all)", [r.analysis["company_names"] for r in load_dataset(args.all_references)])
    report("annotations (these items)", [r.record["company_names"] for r in refs])
    raw = [parse_prediction(row.get("output")).record for row in rows]
    report("raw answers", [p["company_names"] for p in raw])
    filtered = [{**p, "company_names": organisations(p["company_names"])[0]} for p in raw]
    gold = [r.record for r in refs]
    before, after = per_example(raw, gold), per_example(filtered, gold)
    emails = [r.email_id for r in records]
    for key in ("f1_company_names", "f1_overall"):
        a, b = np.array(after[key]), np.array(before[key])
        ci = email_bootstrap(a, b, emails)
        print(
            f"{key}: raw {b.mean():.3f} -> organisations only {a.mean():.3f} "
            f"({ci['mean']:+.4f}, 95% CI {ci['ci_low']:+.4f} .. {ci['ci_high']:+.4f}, {ci['emails']} emails)"
        )
    changed = sum(x["company_names"] != y["company_names"] for x, y in zip(raw, filtered, strict=True))
    print(f"items whose company_names changed: {changed}/{len(refs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
