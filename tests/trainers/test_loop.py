"""trainers/loop.py with a counter for a model: steps and epochs, dev loss, checkpoints, exact resume.

The counter's weight depends on every batch it saw and in which order, so any difference in batches,
step order or restored state between a resumed and an uninterrupted run shows in its losses.
"""

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from trainers.config import TrainConfig
from trainers.loop import Backend, StepResult, count_steps, epoch_order, run_loop

TIMING = {"seconds"}
TIMING_SUMMARY = {"train_seconds", "wall_seconds_this_session", "tokens_per_second", "seconds_per_step"}


class Crash(Exception):
    """Stands in for a killed process."""


@dataclass
class Counter:
    """A deterministic 'model': its weight folds in each batch's items in order."""

    weight: int = 0
    crash_at: int | None = None
    """1-based step whose call raises Crash."""
    steps: list[tuple[list[int], int]] = field(default_factory=list)
    dev_calls: list[int] = field(default_factory=list)
    saves: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)

    def step(self, chunk: list[int], index: int) -> StepResult:
        if self.crash_at is not None and index + 1 == self.crash_at:
            raise Crash(f"killed at step {self.crash_at}")
        self.steps.append((list(chunk), index))
        for item in chunk:
            self.weight = (self.weight * 31 + item + 1) % 10007
        return StepResult(
            loss=self.weight / 10007, lr=0.1 / (index + 1), tokens=10 * len(chunk), answer_tokens=3 * len(chunk)
        )

    def save(self, state: dict[str, Any], name: str) -> None:
        self.saves.append((name, dict(state), self.weight))

    def dev_loss(self) -> float:
        self.dev_calls.append(self.weight)
        return self.weight / 20011

    def backend(self, dev: bool = True) -> Backend:
        return Backend(step=self.step, save=self.save, dev_loss=self.dev_loss if dev else None)


def config(**changes) -> TrainConfig:
    return TrainConfig(batch_size=2, grad_accum=1, epochs=2, seed=3, log_steps=1, save_steps=0).replace(**changes)


def read_metrics(out) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def without(entries: list[dict[str, Any]], keys: set[str]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k not in keys} for e in entries]


def test_steps_epochs_dev_loss_and_checkpoints_are_counted_right(tmp_path):
    counter = Counter()
    result = run_loop(config(), counter.backend(), tmp_path, n_items=5)

    # 5 items in steps of 2: 3 steps per epoch (the last one short), 2 epochs
    assert count_steps(config(), 5) == count_steps(config(grad_accum=2, batch_size=1), 5)
    assert [index for _, index in counter.steps] == list(range(6))
    for epoch in range(2):
        chunks = [chunk for chunk, _ in counter.steps[epoch * 3 : epoch * 3 + 3]]
        assert [len(c) for c in chunks] == [2, 2, 1]
        assert [i for c in chunks for i in c] == epoch_order(5, 3, epoch)
    assert counter.steps[0][0] != counter.steps[3][0]  # a new order each epoch

    metrics = read_metrics(tmp_path)
    assert metrics == result.history
    train = [m for m in metrics if m["type"] == "train"]
    assert [m["step"] for m in train] == [1, 2, 3, 4, 5, 6]
    assert [m["epoch"] for m in train] == [0.3333, 0.6667, 1.0, 1.3333, 1.6667, 2.0]
    assert list(train[0]) == ["type", "step", "epoch", "loss", "lr", "tokens", "answer_tokens", "seconds"]
    assert [m["tokens"] for m in train] == [20, 20, 10, 20, 20, 10]
    # the dev loss once per epoch, not again at the end (the last step ends an epoch)
    assert len(counter.dev_calls) == 2
    assert [(m["step"], m["epoch"]) for m in metrics if m["type"] == "eval"] == [(3, 1.0), (6, 2.0)]
    assert [m["type"] for m in metrics] == ["train"] * 3 + ["eval"] + ["train"] * 3 + ["eval"]
    # a checkpoint at each epoch end (after the dev loss: positioned at the next epoch's start) and at the end
    assert [(name, s["global_step"], s["epoch"], s["step_in_epoch"]) for name, s, _ in counter.saves] == [
        ("epoch-001", 3, 1, 0),
        ("epoch-002", 6, 2, 0),
        ("final", 6, 2, 0),
    ]

    summary = result.metrics
    assert summary["steps"] == 6 and summary["tokens"] == 100
    assert summary["final_train_loss"] == train[-1]["loss"]
    assert summary["last_epoch_mean_train_loss"] == pytest.approx(sum(m["loss"] for m in train[3:]) / 3)
    assert [d["step"] for d in summary["dev_loss"]] == [3, 6]


def test_max_steps_mid_epoch_ends_with_a_dev_loss_and_save_steps_checkpoint_once_per_step(tmp_path):
    counter = Counter()
    result = run_loop(config(max_steps=5, save_steps=2), counter.backend(), tmp_path, n_items=5)

    assert result.state["global_step"] == 5 and len(counter.steps) == 5
    evals = [m for m in read_metrics(tmp_path) if m["type"] == "eval"]
    assert [(m["step"], m["epoch"]) for m in evals] == [(3, 1.0), (5, 1.6667)]
    assert len(counter.dev_calls) == 2
    assert [(name, s["global_step"]) for name, s, _ in counter.saves] == [
        ("step-000002", 2),
        ("epoch-001", 3),
        ("step-000004", 4),
        ("final", 5),
    ]


def test_without_dev_data_there_are_no_eval_lines(tmp_path):
    counter = Counter()
    run_loop(config(), counter.backend(dev=False), tmp_path, n_items=5)
    assert {m["type"] for m in read_metrics(tmp_path)} == {"train"}


def test_a_save_steps_step_that_ends_an_epoch_is_saved_once_under_its_step_name(tmp_path):
    counter = Counter()
    run_loop(config(save_steps=3), counter.backend(), tmp_path, n_items=5)
    assert [(name, s["global_step"], s["epoch"]) for name, s, _ in counter.saves] == [
        ("step-000003", 3, 1),
        ("step-000006", 6, 2),
        ("final", 6, 2),
    ]


@pytest.mark.parametrize("crash_at", [3, 4, 5, 6])
def test_checkpoint_and_resume_give_the_uninterrupted_metrics(tmp_path, crash_at):
    run = config(epochs=2.5, save_steps=2)  # 8 steps; checkpoints at steps 2, 3 (epoch end), 4, 6, 8
    straight = Counter()
    expected = run_loop(run, straight.backend(), tmp_path / "straight", n_items=5)

    out = tmp_path / "interrupted"
    first = Counter(crash_at=crash_at)
    with pytest.raises(Crash):
        run_loop(run, first.backend(), out, n_items=5)
    _, saved_state, saved_weight = first.saves[-1]
    assert saved_state["global_step"] < crash_at
    assert len([m for m in read_metrics(out) if m["type"] == "train"]) == crash_at - 1

    resumed = Counter(weight=saved_weight)  # the backend restores its model from the checkpoint
    result = run_loop(run, resumed.backend(), out, n_items=5, resumed=saved_state)

    assert [index for _, index in resumed.steps] == list(range(saved_state["global_step"], 8))
    assert first.steps[: saved_state["global_step"]] + resumed.steps == straight.steps
    assert without(read_metrics(out), TIMING) == without(read_metrics(tmp_path / "straight"), TIMING)
    assert without([result.metrics], TIMING_SUMMARY) == without([expected.metrics], TIMING_SUMMARY)
    assert first.dev_calls + resumed.dev_calls == straight.dev_calls
    assert resumed.weight == straight.weight
    assert without([resumed.saves[-1][1]], {"train_seconds"}) == without([straight.saves[-1][1]], {"train_seconds"})


def test_a_fresh_run_replaces_old_metrics(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"type": "train", "step": 1, "loss": 9.0}\n')
    run_loop(config(max_steps=1), Counter().backend(dev=False), tmp_path, n_items=5)
    assert [m["step"] for m in read_metrics(tmp_path)] == [1]
    assert read_metrics(tmp_path)[0]["loss"] != 9.0


def test_grad_norm_when_reported_and_progress_lines_on_stderr(tmp_path, capsys):
    def step(chunk, index):
        return StepResult(loss=0.5, lr=1e-3, tokens=8, answer_tokens=2, grad_norm=0.25)

    run_loop(config(log_steps=2), Backend(step=step, save=lambda state, name: None), tmp_path, n_items=5)
    line = read_metrics(tmp_path)[0]
    assert list(line) == ["type", "step", "epoch", "loss", "lr", "grad_norm", "tokens", "answer_tokens", "seconds"]
    assert line["grad_norm"] == 0.25
    progress = [x for x in capsys.readouterr().err.splitlines() if x.startswith("step ")]
    assert [x.split()[1] for x in progress] == ["2/6", "4/6", "6/6"]
    pattern = r"step 2/6 epoch 0\.67 loss 0\.5000 lr 1\.00e-03 [\d.]+ s/step \d+ tok/s eta [\d.]+ min"
    assert re.fullmatch(pattern, progress[0]), progress[0]


def test_epoch_order_is_the_torch_permutation_earlier_runs_used():
    generator = torch.Generator().manual_seed(7 * 1000 + 2)
    assert epoch_order(11, seed=7, epoch=2) == torch.randperm(11, generator=generator).tolist()
    assert sorted(epoch_order(11, 7, 3)) == list(range(11))
    assert epoch_order(11, 7, 3) == epoch_order(11, 7, 3) != epoch_order(11, 7, 4)


def test_shared_modules_and_remote_backends_import_neither_torch_nor_the_hf_backend():
    code = (
        "import sys; import trainers.loop, trainers.outputs, trainers.tinker_backend, trainers.unsloth_backend; "
        "print(sorted(m for m in ('torch', 'trainers.hf_backend') if m in sys.modules))"
    )
    root = Path(__file__).parents[2]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert done.stdout.strip() == "[]"
