"""Reproduce the shipped adapter's dev figures from a fresh clone, given the annotated data's path.

Runs the same commands as models/README.md: the temporal split, then `eval run` on the dev split with
the default server model (embedded base + shipped adapter) and with the plain base, and prints the
reproduced figures beside the committed ones (models/eval/), made with the greedy score (the
committed run predates the score distribution), plus the default median rule for comparison.
Asserts nothing; greedy decoding makes the figures repeat on the same llama.cpp build, and a
different CPU build may move a few answers.

    .venv/bin/python bench/quality.py PATH/TO/news_train.jsonl [--out runs/quality] [--skip-base]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "models" / "eval"
CLI = [sys.executable, "-m", "news_enhancer.cli"]
FIGURES = (
    ("json_validity", "study"),
    ("f1_overall", "study"),
    ("f1_key_insights", "study"),
    ("f1_company_names", "study"),
    ("relevance_mae", "study"),
    ("rougeL", "study"),
    ("f1_overall_nonempty_ref", "better"),
)


def run(*args: str) -> None:
    print("$ news-enhancer " + " ".join(args), file=sys.stderr, flush=True)
    subprocess.run([*CLI, *args], cwd=ROOT, check=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def figures(metrics_path: Path) -> dict[str, float]:
    if not metrics_path.is_file():
        return {}
    metrics = json.loads(metrics_path.read_text())
    return {name: metrics[group].get(name) for name, group in FIGURES}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="news_train.jsonl (the annotated items)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "quality")
    parser.add_argument("--threads", default="1", help="llama.cpp threads")
    parser.add_argument("--skip-base", action="store_true", help="only the shipped model")
    args = parser.parse_args()

    card = json.loads((COMMITTED / "dev_split.json").read_text())
    data_sha = sha256(args.data)
    if data_sha != card["data_sha256"]:
        print(f"warning: {args.data} is not the data the card was made from (sha256 {data_sha[:12]}…)", file=sys.stderr)
    split = args.out / "split"
    run("data", "split", str(args.data), "-o", str(split), "--dev-fraction", str(card["dev_fraction"]))
    dev = split / "dev.jsonl"
    if sha256(dev) != card["dev_sha256"]:
        print("warning: the dev split differs from the committed one; figures will not match", file=sys.stderr)

    # The committed figures were made with the greedy score (before the score distribution existed):
    # they are reproduced with --relevance-rule greedy; "shipped-median" is today's default, beside them.
    greedy = ["--relevance-rule", "greedy"]
    systems = {"shipped": greedy, "shipped-median": ["--relevance-rule", "median"]}
    if not args.skip_base:
        systems["base"] = ["--no-default-lora", *greedy]
    for name, extra in systems.items():
        run("eval", "run", "--data", str(dev), "--out", str(args.out / name), "--n-threads", args.threads, *extra)

    print(f"\n{'system':8} {'metric':26} {'committed':>10} {'reproduced':>11}")
    for name in systems:
        committed = figures(COMMITTED / name / "metrics.json")
        reproduced = figures(args.out / name / "metrics.json")
        for metric, _ in FIGURES:
            was, now = committed.get(metric), reproduced.get(metric)
            mark = "" if was is None or now is None or abs(was - now) < 1e-9 else "  (differs)"
            print(f"{name:8} {metric:26} {_fmt(was):>10} {_fmt(now):>11}{mark}")
    return 0


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    raise SystemExit(main())
