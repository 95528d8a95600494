"""`news-enhancer train --backend hf|unsloth|tinker --data FILE [--config FILE] [overrides]`.

Backends are looked up in BACKENDS (name -> module with `train(config, resume=...)`), imported only
when chosen, so `--backend tinker` never imports torch's CUDA stack and `hf` never imports unsloth.
Config precedence: defaults < --config file < --set key=value < explicit flags.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from trainers.config import TrainConfig, load_config, parse_set_options

BACKENDS: dict[str, str] = {
    "hf": "trainers.hf_backend",
    "unsloth": "trainers.unsloth_backend",
    "tinker": "trainers.tinker_backend",
}

FLAGS: dict[str, str] = {
    # flag -> config key (the most used keys; any key works with --set)
    "data": "data",
    "dev_data": "dev_data",
    "output_dir": "output_dir",
    "base_model": "base_model",
    "epochs": "epochs",
    "max_steps": "max_steps",
    "learning_rate": "learning_rate",
    "batch_size": "batch_size",
    "lora_r": "lora_r",
    "seed": "seed",
    "num_threads": "num_threads",
    "device": "device",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="news-enhancer train", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="hf")
    parser.add_argument("--config", help="TOML or YAML file with TrainConfig keys (optionally under [train])")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key")
    parser.add_argument("--data", help="training JSONL (news_train.jsonl format)")
    parser.add_argument("--dev-data", help="dev JSONL; its loss is measured after every epoch")
    parser.add_argument("--output-dir", "-o", help="where metrics, checkpoint and adapter/ go")
    parser.add_argument("--base-model", help="embedded:gemma-3-270m (default), a .gguf, a checkpoint dir or HF id")
    parser.add_argument("--epochs", type=float)
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--learning-rate", "--lr", type=float)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lora-r", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--num-threads", type=int)
    parser.add_argument("--device")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/checkpoint")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return parser


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    overrides: dict[str, object] = parse_set_options(args.set)
    overrides.update({key: getattr(args, flag) for flag, key in FLAGS.items() if getattr(args, flag) is not None})
    return load_config(args.config, overrides)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = resolve_config(args)
    except (ValueError, OSError) as exc:
        print(f"news-enhancer train: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    if not config.data:
        print("news-enhancer train: no training data: give --data FILE", file=sys.stderr)
        return 2
    try:
        backend = importlib.import_module(BACKENDS[args.backend])
    except ImportError as exc:
        print(f"news-enhancer train: backend {args.backend!r} is not available: {exc}", file=sys.stderr)
        return 2
    try:
        result = backend.train(config, resume=args.resume)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as exc:
        print(f"news-enhancer train: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"adapter": str(result.adapter_dir), "manifest": str(result.manifest_path), **result.metrics}))
    return 0
