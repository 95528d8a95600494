"""The training loop the hf and tinker backends share: epochs, steps, dev loss, checkpoints, resume.

Why one loop for two very different backends: what makes runs comparable and resumable is not how a
step is computed (local torch, or a remote Tinker service) but the bookkeeping around it: which items
form each batch, when the dev loss is measured, what a metrics.jsonl line holds, when a checkpoint is
written and where a resumed run picks up. That bookkeeping lives here once; a backend passes its step,
its checkpoint save and its dev loss as plain callables (`Backend`).

The rules:
- epoch `e` visits the items in `epoch_order(n, seed, e)`, cut into steps of batch_size * grad_accum,
  so a resumed run sees exactly the batches an uninterrupted one would;
- one `train` line per step, an `eval` line after every epoch and at the end (when there is dev data);
- a progress line on stderr every `log_steps` steps (s/step, tok/s, ETA) and at the last step;
- a checkpoint after every epoch (after its dev loss) and every `save_steps` steps, at most one per
  step, and a final one; the saved state is the position to resume from;
- resuming from a saved state drops metric lines written after it, then continues where it stopped.

The unsloth backend does not use this loop: TRL's SFTTrainer runs its steps (see unsloth_backend.py).
No torch at import: `epoch_order` imports it when called.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainers.outputs import METRICS_FILE, append_metric, keep_metrics_until, log, summarize

if TYPE_CHECKING:
    from trainers.config import TrainConfig


@dataclass(frozen=True)
class StepCount:
    """How many optimizer steps a run takes, counted the same way by every backend."""

    per_step: int
    """Items per optimizer step: batch_size * grad_accum."""
    per_epoch: int
    """Steps per epoch (the last one may be short)."""
    total: int
    """Steps of the run: max_steps when set, else epochs * per_epoch rounded up."""


def count_steps(config: TrainConfig, n_items: int) -> StepCount:
    per_step = config.batch_size * config.grad_accum
    per_epoch = math.ceil(n_items / per_step)
    total = config.max_steps if config.max_steps > 0 else math.ceil(config.epochs * per_epoch)
    return StepCount(per_step, per_epoch, total)


def epoch_order(n_items: int, seed: int, epoch: int) -> list[int]:
    """The item order of one epoch: fixed by (seed, epoch), so a resumed run sees the same batches.

    torch's generator (imported only here) keeps the order every earlier run and checkpoint used.
    """
    import torch

    generator = torch.Generator().manual_seed(seed * 1000 + epoch)
    return torch.randperm(n_items, generator=generator).tolist()


def new_state() -> dict[str, Any]:
    """The loop position and totals; saved with every checkpoint and given back to resume.

    A plain dict because backends store it as JSON (checkpoint/state.json, tinker_checkpoint.json).
    `epoch` and `step_in_epoch` say where to continue; `train_seconds` and `tokens` sum the steps done.
    """
    return {"global_step": 0, "epoch": 0, "step_in_epoch": 0, "train_seconds": 0.0, "tokens": 0}


@dataclass
class StepResult:
    """What a backend reports for one optimizer step (the loop adds step, epoch and seconds)."""

    loss: float
    """Mean loss per answer token over the step's items."""
    lr: float
    """The learning rate the step used."""
    tokens: int
    """Tokens the model read (prompt and answer, no padding)."""
    answer_tokens: int
    grad_norm: float | None = None
    """The gradient norm before clipping, where the backend knows it."""


@dataclass
class Backend:
    """The parts of a run only the backend knows; the loop calls them and does everything else."""

    step: Callable[[list[int], int], StepResult]
    """step(item indices, 0-based index of this step): one optimizer step on those items."""
    save: Callable[[dict[str, Any], str], None]
    """save(state, name): a resumable checkpoint of the model/optimizer at this point plus `state` (the
    loop's live dict: write or copy it now). `name` is `step-000012`, `epoch-003` or `final`; called at
    most once per step, plus the final one, which may repeat the last step's."""
    dev_loss: Callable[[], float] | None = None
    """Mean answer-token loss on the dev set; None when there is no dev data."""


@dataclass
class LoopResult:
    state: dict[str, Any]
    history: list[dict[str, Any]]
    """Every metrics.jsonl line of the run, the resumed-over ones included."""
    wall_seconds: float
    """Time this session spent in the steps (not the final dev loss and checkpoint)."""
    metrics: dict[str, Any]
    """`outputs.summarize`: the figures for the manifest."""


def run_loop(
    config: TrainConfig,
    backend: Backend,
    out: Path,
    n_items: int,
    resumed: dict[str, Any] | None = None,
) -> LoopResult:
    """Run (or continue) the steps `config` asks for over `n_items` items; writes out/metrics.jsonl.

    `resumed` is the state the backend loaded from its checkpoint (its model and optimizer already
    restored); None starts afresh and removes an old metrics.jsonl.
    """
    steps = count_steps(config, n_items)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / METRICS_FILE
    if resumed is not None:
        state = dict(resumed)
        history = keep_metrics_until(metrics_path, state["global_step"])
    else:
        state = new_state()
        history = []
        metrics_path.unlink(missing_ok=True)

    def run_dev(epoch: float) -> None:
        if backend.dev_loss is None:
            return
        started = time.monotonic()
        loss = backend.dev_loss()
        append_metric(
            metrics_path, history, {"type": "eval", "step": state["global_step"], "epoch": epoch, "dev_loss": loss}
        )
        log(f"dev loss {loss:.4f} at epoch {epoch:.2f} ({time.monotonic() - started:.0f} s)")

    def save_steps_due() -> bool:
        return config.save_steps > 0 and state["global_step"] % config.save_steps == 0

    wall_start = time.monotonic()
    epoch, step_in_epoch = state["epoch"], state["step_in_epoch"]
    while state["global_step"] < steps.total:
        order = epoch_order(n_items, config.seed, epoch)
        chunks = [order[i : i + steps.per_step] for i in range(0, len(order), steps.per_step)]
        for chunk in chunks[step_in_epoch:]:
            if state["global_step"] >= steps.total:
                break
            step_start = time.monotonic()
            result = backend.step(chunk, state["global_step"])
            seconds = time.monotonic() - step_start
            state["global_step"] += 1
            step_in_epoch += 1
            state["train_seconds"] += seconds
            state["tokens"] += result.tokens
            position = epoch + step_in_epoch / len(chunks)
            entry: dict[str, Any] = {
                "type": "train",
                "step": state["global_step"],
                "epoch": round(position, 4),
                "loss": result.loss,
                "lr": result.lr,
            }
            if result.grad_norm is not None:
                entry["grad_norm"] = result.grad_norm
            entry.update(tokens=result.tokens, answer_tokens=result.answer_tokens, seconds=round(seconds, 3))
            append_metric(metrics_path, history, entry)
            if state["global_step"] % max(config.log_steps, 1) == 0 or state["global_step"] == steps.total:
                _log_progress(state, steps.total, position, result, seconds)
            state["epoch"], state["step_in_epoch"] = epoch, step_in_epoch
            at_epoch_end = step_in_epoch == len(chunks)  # the epoch-end checkpoint follows right away
            if save_steps_due() and not at_epoch_end:
                backend.save(state, f"step-{state['global_step']:06d}")
        else:
            epoch, step_in_epoch = epoch + 1, 0
            state["epoch"], state["step_in_epoch"] = epoch, 0
            run_dev(float(epoch))
            backend.save(state, f"step-{state['global_step']:06d}" if save_steps_due() else f"epoch-{epoch:03d}")
            continue
        break
    wall = time.monotonic() - wall_start

    if not any(m.get("type") == "eval" and m.get("step") == state["global_step"] for m in history):
        run_dev(round(state["global_step"] / steps.per_epoch, 4))
    backend.save(state, "final")
    return LoopResult(state, history, wall, summarize(history, state, wall, steps.per_epoch))


def _log_progress(state: dict[str, Any], total: int, position: float, result: StepResult, seconds: float) -> None:
    rate = state["tokens"] / max(state["train_seconds"], 1e-9)
    eta = (total - state["global_step"]) * state["train_seconds"] / state["global_step"]
    log(
        f"step {state['global_step']}/{total} epoch {position:.2f} loss {result.loss:.4f} "
        f"lr {result.lr:.2e} {seconds:.1f} s/step {rate:.0f} tok/s eta {eta / 60:.1f} min"
    )
