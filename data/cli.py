"""`news-enhancer data validate|stats|split|convert`: check, describe, split and convert a dataset."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from data.dataset import (
    DatasetError,
    file_sha256,
    find_duplicates,
    find_leakage,
    load_dataset,
    read_records,
    write_records,
)
from data.split import temporal_split


def cmd_validate(args: argparse.Namespace) -> int:
    records, problems = read_records(args.file)
    for problem in problems:
        print(f"{args.file}: {problem}", file=sys.stderr)
    duplicates = find_duplicates(records)
    for group in duplicates:
        lines = ", ".join(str(r.line) for r in group)
        print(f"{args.file}: duplicate item (normalized title+content) on lines {lines}", file=sys.stderr)
    leaks = []
    if args.against:
        other, other_problems = read_records(args.against)
        problems += [f"{args.against}: {p}" for p in other_problems]
        leaks = find_leakage(records, other)
        for mine, theirs in leaks:
            print(
                f"leak: {args.file} line {mine.line} ({mine.item_id}) == {args.against} line {theirs.line} "
                f"({theirs.item_id})",
                file=sys.stderr,
            )
    ok = not problems and not duplicates and not leaks and records
    summary = {
        "file": args.file,
        "valid": len(records),
        "problems": len(problems),
        "duplicate_groups": len(duplicates),
        "leaks": len(leaks),
    }
    print(json.dumps(summary))
    return 0 if ok else 1


def cmd_stats(args: argparse.Namespace) -> int:
    from data.stats import dataset_stats, format_stats

    try:
        records = load_dataset(args.file)
    except DatasetError as exc:
        print(exc, file=sys.stderr)
        return 1
    tokenizer = None
    if args.tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    stats = dataset_stats(records, tokenizer=tokenizer, fmt=args.chat_format)
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    try:
        records = load_dataset(args.file)
        split = temporal_split(records, args.dev_fraction, args.date_key)
    except (DatasetError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    out = Path(args.out_dir)
    write_records(split.train, out / "train.jsonl")
    write_records(split.dev, out / "dev.jsonl")
    summary = {
        "source": str(Path(args.file).resolve()),
        "source_sha256": file_sha256(args.file),
        "command": f"news-enhancer data split {args.file} -o {args.out_dir} --dev-fraction {args.dev_fraction}",
        "dev_fraction": args.dev_fraction,
        **split.summary(),
    }
    (out / "split.json").write_text(json.dumps(summary, indent=2) + "\n")
    leaks = find_leakage(split.train, split.dev)
    brief = {k: v for k, v in summary.items() if k not in ("dev_item_ids", "command")}
    print(json.dumps({**brief, "leaks": len(leaks), "out_dir": str(out)}))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from data.convert import convert_records, write_jsonl

    try:
        records = load_dataset(args.file)
        rows = convert_records(records, args.to, args.chat_format)
    except (DatasetError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    count = write_jsonl(rows, args.out)
    print(json.dumps({"rows": count, "to": args.to, "out": args.out}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="news-enhancer data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check every line (schema, duplicates; leakage with --against)")
    p.add_argument("file")
    p.add_argument("--against", help="a second file (e.g. dev) that must share no item with FILE")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("stats", help="label distributions, empty-field rates, lengths")
    p.add_argument("file")
    p.add_argument("--tokenizer", help="tokenizer dir for token lengths (e.g. the cached base model dir)")
    p.add_argument("--chat-format", default="gemma")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("split", help="temporal split: newest emails -> dev, an email's items together")
    p.add_argument("file")
    p.add_argument("--out-dir", "-o", required=True, help="writes train.jsonl, dev.jsonl, split.json")
    p.add_argument("--dev-fraction", type=float, default=0.2, help="share of emails held out (default 0.2)")
    p.add_argument("--date-key", default="email_date")
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("convert", help="write a backend's input file")
    p.add_argument("file")
    p.add_argument("--to", required=True, choices=["prompt_completion", "tinker", "chat_text"])
    p.add_argument("--out", required=True)
    p.add_argument("--chat-format", default="gemma")
    p.set_defaults(func=cmd_convert)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
