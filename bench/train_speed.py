"""Training speed of the hf backend for a given config: seconds/step and tokens/s over a few real steps.

    .venv/bin/python bench/train_speed.py --data /work/shared/data/news_train.jsonl --steps 6 \
        [--config FILE] [--set key=value ...]

Runs `trainers.hf_backend.train` for --steps optimizer steps in a temporary directory (the first step
is reported separately as warm-up) and projects the time of the configured full run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from data.dataset import load_dataset
from trainers import hf_backend
from trainers.config import load_config, parse_set_options
from trainers.loop import count_steps
from trainers.outputs import METRICS_FILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--config")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps to time (the first is warm-up)")
    args = parser.parse_args(argv)

    overrides = parse_set_options(args.set)
    config = load_config(args.config, {**overrides, "data": args.data, "dev_data": None})
    records = load_dataset(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        run = config.replace(output_dir=str(Path(tmp) / "run"), max_steps=args.steps, save_steps=0)
        started = time.monotonic()
        hf_backend.train(run, records)
        total = time.monotonic() - started
        steps = [json.loads(line) for line in (Path(tmp) / "run" / METRICS_FILE).read_text().splitlines()]
    steps = [m for m in steps if m["type"] == "train"]
    timed = steps[1:] or steps
    seconds = sum(m["seconds"] for m in timed)
    per_step = statistics.median(m["seconds"] for m in timed)
    full = count_steps(config, len(records))
    figures = {
        "threads": config.num_threads or "torch default",
        "precision": config.precision,
        "answer_only_head": config.answer_only_head,
        "batch": full.per_step,
        "warmup_step_seconds": steps[0]["seconds"],
        "seconds_per_step_median": round(per_step, 2),
        "tokens_per_second": round(sum(m["tokens"] for m in timed) / seconds, 1),
        "answer_tokens_per_second": round(sum(m["answer_tokens"] for m in timed) / seconds, 1),
        "full_run_steps": full.total,
        "full_run_minutes_projected": round(full.total * per_step / 60, 1),
        "bench_wall_seconds": round(total, 1),
    }
    for key, value in figures.items():
        print(f"{key:28} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
