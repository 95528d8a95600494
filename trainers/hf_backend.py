"""The `hf` backend: LoRA fine-tuning with transformers + peft, on CPU or CUDA.

Why a small loop of our own rather than TRL's SFTTrainer: the one change that matters most on CPU is
computing the 262k-vocabulary output head only on answer positions (the head dominates compute and
memory; FINDINGS.md measured 7.5 -> 5.8 s/step), which SFTTrainer cannot do without overriding its
loss anyway; its defaults (lr 2e-5, gradient checkpointing) are wrong for LoRA on CPU; and an explicit
loop makes the answer-only labels, metrics.jsonl and exact resume easy to read and to test. The data
path is shared with the other backends: `data.convert.tokenize_records` renders every example with
data/prompts.py and masks the prompt (labels -100), so the loss covers the answer and `<end_of_turn>`.

Outputs in `output_dir`: `metrics.jsonl` (one line per step: loss, lr, tokens, seconds; one per dev
evaluation), `checkpoint/` (resumable: adapter, optimizer, scheduler, RNG, position), and `adapter/`
(the PEFT adapter plus `manifest.json`).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from data.convert import IGNORE_INDEX, TokenizedExample, tokenize_records
from data.dataset import Record, file_sha256
from trainers.base_model import BaseModelInfo, resolve_base_model
from trainers.config import TrainConfig, load_records
from trainers.manifest import Manifest

CHECKPOINT_DIR = "checkpoint"
ADAPTER_DIR = "adapter"
METRICS_FILE = "metrics.jsonl"

PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


@dataclass
class TrainResult:
    output_dir: Path
    adapter_dir: Path
    manifest_path: Path
    metrics: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- machine


def select_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 by default on CPU and on CUDA GPUs that support it, else fp32."""
    if precision == "auto":
        if device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_bf16_supported()):
            return torch.bfloat16
        return None
    try:
        return PRECISIONS[precision]
    except KeyError:
        raise ValueError(f"unknown precision {precision!r}; known: auto, {', '.join(PRECISIONS)}") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------- model


def load_base(config: TrainConfig) -> tuple[Any, Any, BaseModelInfo]:
    """Tokenizer, float32 model and base-model info for `config.base_model` (dequantized GGUF cached)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = resolve_base_model(config.base_model)
    tokenizer = AutoTokenizer.from_pretrained(info.path)
    model = AutoModelForCausalLM.from_pretrained(info.path, dtype=torch.float32, attn_implementation="sdpa")
    return tokenizer, model, info


def add_lora(model: Any, config: TrainConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


# ---------------------------------------------------------------- batches and loss


def collate(examples: Sequence[TokenizedExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padding gets attention 0 and label -100."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def answer_loss_sum(model: Any, batch: dict[str, torch.Tensor], answer_only_head: bool = True) -> tuple[Any, int]:
    """Summed next-token cross-entropy over answer positions, and how many there were.

    With `answer_only_head` the decoder runs on the whole sequence but the output head only on the
    positions whose next token is an answer token: the same loss as the full head, far cheaper.
    """
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = causal.get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE_INDEX
    hidden = hidden[:, :-1]
    head = causal.get_output_embeddings()
    if answer_only_head:
        logits = head(hidden[keep])
        labels = targets[keep]
    else:
        logits = head(hidden).reshape(-1, head.out_features)
        labels = targets.reshape(-1)
    logits = logits.float()
    cap = getattr(causal.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    loss = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return loss, int(keep.sum())


def move(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def evaluate_loss(
    model: Any,
    examples: Sequence[TokenizedExample],
    batch_size: int,
    pad_id: int,
    device: torch.device,
    dtype: torch.dtype | None,
    answer_only_head: bool = True,
) -> float:
    """Mean answer-token loss over `examples` (dropout off)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = move(collate(examples[start : start + batch_size], pad_id), device)
        with autocast(device, dtype):
            loss, n = answer_loss_sum(model, batch, answer_only_head)
        total += float(loss)
        count += n
    model.train(was_training)
    return total / max(count, 1)


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device_type=device.type, dtype=dtype) if dtype is not None else nullcontext()


def epoch_order(n_items: int, seed: int, epoch: int) -> list[int]:
    """The item order of one epoch: fixed by (seed, epoch), so a resumed run sees the same batches."""
    generator = torch.Generator().manual_seed(seed * 1000 + epoch)
    return torch.randperm(n_items, generator=generator).tolist()


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(out: Path, model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any]) -> None:
    """Write a resumable checkpoint atomically (a crash mid-write leaves the previous one)."""
    from peft import get_peft_model_state_dict

    tmp = out / (CHECKPOINT_DIR + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    torch.save(get_peft_model_state_dict(model), tmp / "adapter_state.pt")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save({"torch": torch.get_rng_state(), "python": random.getstate()}, tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    final = out / CHECKPOINT_DIR
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def load_checkpoint(out: Path, model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    from peft import set_peft_model_state_dict

    ckpt = out / CHECKPOINT_DIR
    set_peft_model_state_dict(model, torch.load(ckpt / "adapter_state.pt", weights_only=True))
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=True))
    rng = torch.load(ckpt / "rng.pt", weights_only=False)
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    return json.loads((ckpt / "state.json").read_text())


def keep_metrics_until(path: Path, step: int) -> list[dict[str, Any]]:
    """On resume, drop metric lines written after the checkpoint (they will be written again)."""
    if not path.is_file():
        return []
    kept = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    kept = [m for m in kept if m.get("step", 0) <= step]
    path.write_text("".join(json.dumps(m) + "\n" for m in kept))
    return kept


# ---------------------------------------------------------------- training


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train(
    config: TrainConfig,
    records: Sequence[Record] | None = None,
    dev_records: Sequence[Record] | None = None,
    *,
    model: Any = None,
    tokenizer: Any = None,
    base_info: BaseModelInfo | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train a LoRA adapter as `config` says; returns where the adapter and manifest are.

    `records`/`dev_records` default to loading `config.data`/`config.dev_data`. Tests pass a tiny
    `model` and `tokenizer` directly; otherwise the base model is resolved from `config.base_model`.
    With `resume`, training continues from `output_dir/checkpoint` exactly where it stopped.
    """
    out = Path(config.output_dir)
    if (out / CHECKPOINT_DIR).exists() and not resume:
        raise FileExistsError(f"{out} already holds a checkpoint: pass --resume or choose another output_dir")
    records, dev_records = load_records(config, records, dev_records)
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    seed_everything(config.seed)
    device = select_device(config.device)
    dtype = autocast_dtype(config.precision, device)

    if model is None or tokenizer is None:
        _log(f"loading base model {config.base_model}")
        tokenizer, model, base_info = load_base(config)
    base_info = base_info or BaseModelInfo(spec=config.base_model, path=str(getattr(model, "name_or_path", "")))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    examples = tokenize_records(tokenizer, records, config.chat_format, config.max_length)
    dev_examples = tokenize_records(tokenizer, dev_records or [], config.chat_format, config.max_length)
    cut = sum(e.truncated for e in examples) + sum(e.truncated for e in dev_examples)
    if cut:
        _log(f"warning: {cut} example(s) longer than max_length={config.max_length} were cut")

    seed_everything(config.seed)
    model = add_lora(model, config)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    model.to(device)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]

    per_step = config.batch_size * config.grad_accum
    steps_per_epoch = math.ceil(len(examples) / per_step)
    total_steps = config.max_steps if config.max_steps > 0 else math.ceil(config.epochs * steps_per_epoch)
    from transformers import get_scheduler

    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = get_scheduler(
        config.lr_scheduler,
        optimizer,
        num_warmup_steps=round(config.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )

    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / METRICS_FILE
    state = {"global_step": 0, "epoch": 0, "step_in_epoch": 0, "train_seconds": 0.0, "tokens": 0}
    history: list[dict[str, Any]] = []
    if resume and (out / CHECKPOINT_DIR).exists():
        state = load_checkpoint(out, model, optimizer, scheduler)
        history = keep_metrics_until(metrics_path, state["global_step"])
        _log(f"resumed from {out / CHECKPOINT_DIR} at step {state['global_step']}/{total_steps}")
    elif metrics_path.exists():
        metrics_path.unlink()

    n_params = sum(p.numel() for p in trainable)
    _log(
        f"training {len(examples)} examples ({len(dev_examples)} dev) on {device} "
        f"autocast={dtype}, {n_params:,} trainable parameters, {total_steps} steps of {per_step}"
    )

    def record(entry: dict[str, Any]) -> None:
        history.append(entry)
        with open(metrics_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")

    def run_dev(epoch: float) -> None:
        if not dev_examples:
            return
        started = time.monotonic()
        loss = evaluate_loss(model, dev_examples, config.batch_size, pad_id, device, dtype, config.answer_only_head)
        record({"type": "eval", "step": state["global_step"], "epoch": epoch, "dev_loss": loss})
        _log(f"dev loss {loss:.4f} at epoch {epoch:.2f} ({time.monotonic() - started:.0f} s)")

    wall_start = time.monotonic()
    epoch, step_in_epoch = state["epoch"], state["step_in_epoch"]
    while state["global_step"] < total_steps:
        order = epoch_order(len(examples), config.seed, epoch)
        chunks = [order[i : i + per_step] for i in range(0, len(order), per_step)]
        for chunk in chunks[step_in_epoch:]:
            if state["global_step"] >= total_steps:
                break
            step_start = time.monotonic()
            micro = [chunk[i : i + config.batch_size] for i in range(0, len(chunk), config.batch_size)]
            answer_total = sum(examples[i].answer_tokens for i in chunk) or 1
            loss_value, tokens = 0.0, 0
            for indices in micro:
                batch = move(collate([examples[i] for i in indices], pad_id), device)
                with autocast(device, dtype):
                    loss_sum, _ = answer_loss_sum(model, batch, config.answer_only_head)
                (loss_sum / answer_total).backward()
                loss_value += loss_sum.detach().item() / answer_total
                tokens += int(batch["attention_mask"].sum())
            grad_norm = torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            seconds = time.monotonic() - step_start
            state["global_step"] += 1
            step_in_epoch += 1
            state["train_seconds"] += seconds
            state["tokens"] += tokens
            position = epoch + step_in_epoch / len(chunks)
            record(
                {
                    "type": "train",
                    "step": state["global_step"],
                    "epoch": round(position, 4),
                    "loss": loss_value,
                    "lr": lr,
                    "grad_norm": float(grad_norm),
                    "tokens": tokens,
                    "answer_tokens": answer_total,
                    "seconds": round(seconds, 3),
                }
            )
            if state["global_step"] % max(config.log_steps, 1) == 0 or state["global_step"] == total_steps:
                rate = state["tokens"] / max(state["train_seconds"], 1e-9)
                eta = (total_steps - state["global_step"]) * state["train_seconds"] / state["global_step"]
                _log(
                    f"step {state['global_step']}/{total_steps} epoch {position:.2f} loss {loss_value:.4f} "
                    f"lr {lr:.2e} {seconds:.1f} s/step {rate:.0f} tok/s eta {eta / 60:.1f} min"
                )
            state["epoch"], state["step_in_epoch"] = epoch, step_in_epoch
            at_epoch_end = step_in_epoch == len(chunks)  # the epoch-end checkpoint follows right away
            if config.save_steps > 0 and state["global_step"] % config.save_steps == 0 and not at_epoch_end:
                save_checkpoint(out, model, optimizer, scheduler, state)
        else:
            epoch, step_in_epoch = epoch + 1, 0
            state["epoch"], state["step_in_epoch"] = epoch, 0
            run_dev(float(epoch))
            save_checkpoint(out, model, optimizer, scheduler, state)
            continue
        break
    wall = time.monotonic() - wall_start

    if not any(m.get("type") == "eval" and m.get("step") == state["global_step"] for m in history):
        run_dev(round(state["global_step"] / steps_per_epoch, 4))
    save_checkpoint(out, model, optimizer, scheduler, state)

    adapter_dir = out / ADAPTER_DIR
    model.save_pretrained(adapter_dir)
    metrics = summarize(history, state, wall, steps_per_epoch)
    manifest = Manifest(
        kind="adapter",
        config=config.to_dict(),
        dataset=dataset_info(config, records, dev_records),
        base_model=vars(base_info).copy(),
        metrics=metrics,
        extra={"backend": "hf", "device": str(device), "autocast": str(dtype), "trainable_parameters": n_params},
    )
    manifest_path = manifest.write(adapter_dir)
    _log(f"adapter: {adapter_dir}\nmanifest: {manifest_path}")
    return TrainResult(out, adapter_dir, manifest_path, metrics)


def dataset_info(
    config: TrainConfig, records: Sequence[Record], dev_records: Sequence[Record] | None
) -> dict[str, Any]:
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
