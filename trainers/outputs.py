"""What every backend writes into `output_dir`, and the small helpers that read and summarize it.

Kept free of torch (and of any backend) so that the tinker and unsloth backends, whose heavy imports
are elsewhere or remote, can share the hf backend's file names, metric lines and manifest figures
without importing the hf backend: a run of any backend then compares line by line with another.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data.dataset import file_sha256

if TYPE_CHECKING:
    from data.dataset import Record
    from trainers.config import TrainConfig

ADAPTER_DIR = "adapter"
"""The PEFT adapter plus manifest.json: what `export` and the evaluation read."""
METRICS_FILE = "metrics.jsonl"
"""One JSON line per optimizer step (`type: train`) and per dev evaluation (`type: eval`)."""
CHECKPOINT_DIR = "checkpoint"
"""The hf backend's resumable state (tinker and unsloth name their own)."""


@dataclass
class TrainResult:
    """Where a finished run put its adapter and manifest, and the manifest's metrics."""

    output_dir: Path
    adapter_dir: Path
    manifest_path: Path
    metrics: dict[str, Any] = field(default_factory=dict)


def log(message: str) -> None:
    """Progress goes to stderr, so stdout stays free for the CLI's one JSON summary line."""
    print(message, file=sys.stderr, flush=True)


def append_metric(path: Path, history: list[dict[str, Any]], entry: dict[str, Any]) -> None:
    """Keep `entry` in `history` and append it to metrics.jsonl at once (a killed run keeps its lines)."""
    history.append(entry)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")


def keep_metrics_until(path: Path, step: int) -> list[dict[str, Any]]:
    """On resume, drop metric lines written after the checkpoint (they will be written again)."""
    if not path.is_file():
        return []
    kept = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    kept = [m for m in kept if m.get("step", 0) <= step]
    path.write_text("".join(json.dumps(m) + "\n" for m in kept))
    return kept


def dataset_info(
    config: TrainConfig, records: Sequence[Record], dev_records: Sequence[Record] | None
) -> dict[str, Any]:
    """The manifest's `dataset`: item counts, file paths and sha256s, and the split that produced them."""
    info: dict[str, Any] = {"items": len(records), "dev_items": len(dev_records or [])}
    for key, path in (("train", config.data), ("dev", config.dev_data)):
        if path and Path(path).is_file():
            info[f"{key}_path"] = str(Path(path).resolve())
            info[f"{key}_sha256"] = file_sha256(path)
    split_file = Path(config.data).parent / "split.json" if config.data else None
    if split_file and split_file.is_file():  # written by `news-enhancer data split`: names the source data
        split = json.loads(split_file.read_text())
        info["split"] = {k: v for k, v in split.items() if k != "dev_item_ids"}
    return info


def summarize(history: list[dict[str, Any]], state: dict[str, Any], wall: float, steps_per_epoch: int) -> dict:
    """Final figures for the manifest: losses, dev loss per evaluation, speed."""
    train = [m for m in history if m.get("type") == "train"]
    evals = [m for m in history if m.get("type") == "eval"]
    last_epoch = [m["loss"] for m in train[-steps_per_epoch:]]
    return {
        "steps": state["global_step"],
        "tokens": state["tokens"],
        "train_seconds": round(state["train_seconds"], 1),
        "wall_seconds_this_session": round(wall, 1),
        "tokens_per_second": round(state["tokens"] / max(state["train_seconds"], 1e-9), 1),
        "seconds_per_step": round(state["train_seconds"] / max(state["global_step"], 1), 3),
        "first_train_loss": train[0]["loss"] if train else None,
        "final_train_loss": train[-1]["loss"] if train else None,
        "last_epoch_mean_train_loss": sum(last_epoch) / len(last_epoch) if last_epoch else None,
        "dev_loss": [{"epoch": m["epoch"], "step": m["step"], "loss": m["dev_loss"]} for m in evals],
        "final_dev_loss": evals[-1]["dev_loss"] if evals else None,
    }
