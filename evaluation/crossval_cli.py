"""`news-enhancer eval cv plan|run|compare`: k-fold cross-validation over emails (docs/crossval.md).

plan     deal the emails into k folds (items of an email together, balanced by items): PLAN/folds.json
run      one configuration through all folds (resumable): PLAN/NAME/cv.json, fold-K/, oof/
compare  paired tests over two runs' out-of-fold predictions, with a per-fold table
head     the relevance head's protocol (minutes, no training): PLAN/head/; --save-head fits the shipped one
"""

# Registered in evaluation/cli.py (`add_parser`, `main_args`); the work is in evaluation/crossval.py.

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `cv` (with its own plan/run/compare subcommands) to the `eval` subparsers."""
    cv = sub.add_parser(
        "cv",
        help="k-fold cross-validation over emails: plan, run (resumable), compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmds = cv.add_subparsers(dest="cv_command", required=True)

    plan = cmds.add_parser("plan", help="write PLAN/folds.json: the fold of every item")
    plan.add_argument("--data", required=True, metavar="TRAIN.jsonl", help="all annotated items (news_train.jsonl)")
    plan.add_argument("--folds", type=int, default=4, help="number of folds (default 4; the protocol needs >= 4)")
    plan.add_argument("--seed", type=int, default=0, help="orders emails of equal size (default 0)")
    plan.add_argument("-o", "--out", required=True, metavar="PLAN", help="plan directory (runs go under it)")

    run = cmds.add_parser("run", help="run one configuration through the folds (skips done folds, resumes)")
    run.add_argument("--plan", required=True, metavar="PLAN", help="directory holding folds.json")
    run.add_argument("--name", required=True, help="run name: results go to PLAN/NAME/")
    run.add_argument("--config", metavar="FILE", help="training config (TOML/YAML), e.g. configs/news-gemma3-270m.toml")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any training key")
    run.add_argument("--max-steps", type=int, metavar="N", help="training steps per fold (smoke tests)")
    run.add_argument("--folds-only", metavar="0,1", help="run only these folds (the run stays INCOMPLETE)")
    run.add_argument("--n-threads", type=int, metavar="N", help="llama.cpp threads for the predictions")
    run.add_argument("--max-tokens", type=int, metavar="N", help="answer budget of the predictions (default as served)")
    run.add_argument(
        "--engine", action="append", default=[], metavar="KEY=VALUE", help="another EngineConfig field (predictions)"
    )
    run.add_argument("--no-bertscore", dest="bertscore", action="store_false", help="skip BERTScore on the OOF set")
    run.add_argument("--bertscore-model", metavar="DIR", help="local BERTScore model directory")
    run.add_argument("--no-progress", dest="progress", action="store_false", help="no prediction progress bar")

    comp = cmds.add_parser("compare", help="paired statistics over two runs' out-of-fold predictions")
    comp.add_argument("dirs", nargs=2, metavar="PLAN/NAME")
    comp.add_argument("--out", metavar="DIR", help="comparison directory (default PLAN/compare-A-vs-B)")
    comp.add_argument("--names", nargs=2, metavar="NAME", help="names for the two runs")
    head = cmds.add_parser("head", help="cross-validate the relevance head; optionally fit and save the final one")
    head.add_argument("--plan", required=True, metavar="PLAN", help="directory holding folds.json")
    head.add_argument("--out", metavar="DIR", help="results directory (default PLAN/head)")
    head.add_argument("--model", metavar="GGUF", help="base GGUF to embed with (default: the embedded Gemma 3 270M)")
    head.add_argument("--threads", type=int, default=2, help="llama.cpp threads for the embeddings")
    head.add_argument("--adapter-run", default="shipped", help="eval cv run NAME to compare with (if present)")
    head.add_argument(
        "--save-head", metavar="FILE", help="fit on every item and write the head (models/relevance-head.json)"
    )
    head.add_argument(
        "--save-fold-heads",
        action="store_true",
        help="also write PLAN/head/fold-K.head.json (fitted without fold K) to evaluate fold adapters as served",
    )
    return cv


def cmd_head(args: argparse.Namespace) -> int:
    from pathlib import Path

    from evaluation.crossval import plan_records, read_plan
    from evaluation.relevance_cv import fit_final, run_head_cv
    from inference.models import embedded_base_model

    plan = read_plan(args.plan)
    records = plan_records(plan)
    model = Path(args.model) if args.model else embedded_base_model()
    out = Path(args.out) if args.out else Path(args.plan) / "head"
    summary = run_head_cv(Path(args.plan), plan, records, model, out, args.threads, args.adapter_run)
    print((out / "report.md").read_text(encoding="utf-8"))
    print(f"wrote {out}/head_cv.json, oof.jsonl, report.md, relevance.png")
    if args.save_fold_heads:
        from evaluation.relevance_cv import fold_heads

        print("wrote " + ", ".join(str(p) for p in fold_heads(records, plan, model, out, summary)))
    if args.save_head:
        head = fit_final(records, plan, model, out, summary)
        head.save(args.save_head)
        print(
            f"wrote {args.save_head} (C={head.fitted['C']}, sponsor_scale={head.sponsor_scale:g}, {len(records)} items)"
        )
    return 0


def main_args(args: argparse.Namespace) -> int:
    from evaluation.crossval import CvError
    from evaluation.runner import RunnerError

    try:
        commands = {"plan": cmd_plan, "run": cmd_run, "compare": cmd_compare, "head": cmd_head}
        return commands[args.cv_command](args)
    except (CvError, RunnerError, FileNotFoundError) as exc:
        print(f"eval cv {args.cv_command}: {exc}", file=sys.stderr)
        return 2


def cmd_plan(args: argparse.Namespace) -> int:
    from evaluation.crossval import PLAN_FILE, RECOMMENDED_FOLDS, write_plan

    if args.folds < RECOMMENDED_FOLDS:
        print(f"eval cv plan: warning: {args.folds} folds; the protocol asks for {RECOMMENDED_FOLDS} or more")
    plan = write_plan(args.data, args.out, args.folds, args.seed)
    data = plan["data"]
    print(f"{data['items']} items in {data['emails']} emails -> {args.folds} folds (seed {args.seed})")
    for fold in plan["folds"]:
        print(
            f"  fold {fold['fold']}: {fold['items']:4d} items, {fold['emails']:3d} emails, "
            f"{fold['sponsored']:2d} sponsored, {str(fold['first_date'])[:10]} .. {str(fold['last_date'])[:10]}"
        )
    print(f"wrote {args.out}/{PLAN_FILE}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from evaluation.crossval import CvSetup, read_plan, run_cv, steps_per_fold
    from trainers.config import load_config, parse_set_options

    overrides: dict[str, Any] = parse_set_options(args.set)
    if args.max_steps is not None:
        overrides["max_steps"] = args.max_steps
    config = load_config(args.config, overrides)
    folds_only = None
    if args.folds_only:
        try:
            folds_only = [int(f) for f in args.folds_only.split(",") if f.strip()]
        except ValueError:
            print(f"eval cv run: --folds-only takes fold numbers like 0,1 (got {args.folds_only!r})", file=sys.stderr)
            return 2
    try:
        engine = engine_options(args.engine)
    except ValueError as exc:
        print(f"eval cv run: {exc}", file=sys.stderr)
        return 2
    engine.update({k: v for k, v in (("n_threads", args.n_threads), ("max_tokens", args.max_tokens)) if v is not None})
    setup = CvSetup(engine=engine, bertscore=args.bertscore, bertscore_model=args.bertscore_model)
    setup.progress = args.progress
    steps = steps_per_fold(config, read_plan(args.plan))
    print(
        f"eval cv run: {args.name}: steps per fold {steps} (batch {config.batch_size} x {config.grad_accum}), "
        f"precision {config.precision}",
        file=sys.stderr,
    )
    source = {
        "config_file": args.config,
        "overrides": overrides,
        "command": shlex.join(sys.argv),
    }
    # `kill PID` of a background run: unwind (cv.json records where the folds stopped, the lock is freed)
    signal.signal(signal.SIGTERM, _terminate)
    state = run_cv(args.plan, args.name, config, folds_only=folds_only, setup=setup, source=source)
    print_run(state)
    return 0


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def engine_options(items: list[str]) -> dict[str, Any]:
    """`["max_tokens=64", "lora_scale=0.5"]` -> EngineConfig fields, typed like the fields' defaults."""
    import dataclasses

    from inference.engine import EngineConfig
    from trainers.config import parse_set_options

    fields = {f.name: f for f in dataclasses.fields(EngineConfig)}
    out: dict[str, Any] = {}
    for key, value in parse_set_options(items).items():
        if key not in fields or key in ("model_path", "lora_path"):
            known = ", ".join(k for k in fields if k not in ("model_path", "lora_path"))
            raise ValueError(f"--engine {key}: not an EngineConfig field the run may set (known: {known})")
        default = fields[key].default
        if value.lower() in ("none", "null"):
            out[key] = None
        elif isinstance(default, bool):
            out[key] = value.lower() in ("1", "true", "yes", "on")
        elif isinstance(default, (int, float)):
            out[key] = type(default)(value)
        else:
            out[key] = value
    return out


def print_run(state: dict[str, Any]) -> None:
    print(f"cv {state['name']}: {state['status']}")
    head = ("fold", 4), ("status", 9), ("train", 5), ("held", 5), ("train s", 8), ("tok/s", 6), ("F1", 6), ("MAE", 5)
    print("  " + " ".join(f"{text:>{width}}" for text, width in head) + f" {'valid':>6}")
    for fold in state["folds"]:
        training, scores = fold.get("training") or {}, fold.get("scores") or {}
        print(
            f"  {fold['fold']:>4} {fold['status']:>9} {fold.get('train_items', ''):>5} "
            f"{fold.get('held_out_items', ''):>5} {_num(training.get('train_seconds'), '.0f'):>8} "
            f"{_num(training.get('tokens_per_second'), '.0f'):>6} {_num(scores.get('f1_overall'), '.3f'):>6} "
            f"{_num(scores.get('relevance_mae'), '.2f'):>5} {_num(scores.get('json_validity'), '.0%'):>6}"
        )
    oof = state.get("oof")
    if oof:
        study = oof["study"]
        print(
            f"out-of-fold ({oof['items']}/{oof['of_items']} items{'' if oof['complete'] else ', INCOMPLETE'}): "
            f"validity {_num(study.get('json_validity'), '.1%')}  F1 {_num(study.get('f1_overall'), '.3f')}  "
            f"MAE {_num(study.get('relevance_mae'), '.2f')}  R2 {_num(study.get('relevance_r2'), '.3f')}"
        )
        print(f"  scored eval dir (eval compare / eval gate work on it): {oof['dir']}")
    print(json.dumps({k: state[k] for k in ("name", "complete", "status", "folds_done", "training_seconds_total")}))


def cmd_compare(args: argparse.Namespace) -> int:
    from evaluation.crossval import compare_runs

    try:
        summary = compare_runs(args.dirs[0], args.dirs[1], args.out, args.names)
    except ValueError as exc:
        print(f"eval cv compare: {exc}", file=sys.stderr)
        return 2
    a, b = (run["name"] for run in summary["runs"])
    if not summary["complete"]:
        print(f"WARNING: {summary['status']}: out-of-fold predictions cover only the done folds")
    print(f"{a} - {b} over {summary['statistics'][0]['n']} out-of-fold predictions (paired, 95% bootstrap CI):")
    for st in summary["statistics"]:
        ci = "n/a" if st["ci_low"] is None else f"[{st['ci_low']:+.3f}, {st['ci_high']:+.3f}]"
        better = "lower" if st["lower_is_better"] else "higher"
        print(
            f"  {st['metric']:<22} {st['mean_a']:.3f} vs {st['mean_b']:.3f}  diff {st['mean_diff']:+.3f}  "
            f"CI {ci}  p(t) {_num(st['t_pvalue'], '.3g')}  p(W) {_num(st['wilcoxon_pvalue'], '.3g')}  "
            f"({better} is better)"
        )
    if not summary["same_folds"]:
        print("note: the runs used different fold plans; the per-fold table uses the first run's folds")
    print(f"per fold (F1 overall, relevance MAE; diff = {a} - {b}):")
    head = ("fold", 4), ("n", 4), ("F1 A", 6), ("F1 B", 6), ("dF1", 7), ("MAE A", 6), ("MAE B", 6), ("dMAE", 6)
    print("  " + " ".join(f"{text:>{width}}" for text, width in head) + f" {'valid A/B':>9}")
    for row in summary["per_fold"]:
        print(
            f"  {row['fold']:>4} {row['n']:>4} {row['f1_a']:6.3f} {row['f1_b']:6.3f} {row['f1_diff']:+7.3f} "
            f"{row['mae_a']:6.2f} {row['mae_b']:6.2f} {row['mae_diff']:+6.2f} {row['valid_a']:>4}/{row['valid_b']:<4}"
        )
    print(f"wrote {summary['out']}/cv_compare.json, comparison.json, report.md, report.html, plots/")
    if not summary["complete"]:
        print(f"WARNING: {summary['status']}")
    return 0


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)
