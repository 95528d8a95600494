"""The `hf` backend: LoRA fine-tuning with transformers + peft, on CPU or CUDA.

Why a small loop of our own rather than TRL's SFTTrainer: the one change that matters most on CPU is
computing the 262k-vocabulary output head only on answer positions (the head dominates compute and
memory; with bf16 autocast on an AMX CPU it took a step from 7.5 to 5.8 s, docs/measured-facts.md),
which SFTTrainer cannot do without overriding its loss anyway; its defaults (lr 2e-5, gradient
checkpointing) are wrong for LoRA on CPU; and an explicit loop makes the answer-only labels,
metrics.jsonl and exact resume easy to read and to test. This module supplies the step, the checkpoint
and the dev loss; epochs, batches, metric lines, when to checkpoint and how to resume are
trainers/loop.py's, shared with the tinker backend. The data path is shared with the other backends:
`data.convert.tokenize_records` renders every example with data/prompts.py and masks the prompt (labels
-100), so the loss covers the answer and `<end_of_turn>`.

Outputs in `output_dir`: `metrics.jsonl` (one line per step: loss, lr, tokens, seconds; one per dev
evaluation), `checkpoint/` (resumable: adapter, optimizer, scheduler, RNG, position), and `adapter/`
(the PEFT adapter plus `manifest.json`).
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from data.convert import IGNORE_INDEX, TokenizedExample, tokenize_records
from data.dataset import Record
from inference.manifest import Manifest
from trainers.base_model import BaseModelInfo, resolve_base_model
from trainers.config import TrainConfig, load_records
from trainers.loop import Backend, StepResult, count_steps, run_loop
from trainers.outputs import ADAPTER_DIR, CHECKPOINT_DIR, TrainResult, dataset_info
from trainers.outputs import log as _log
from trainers.precision import choose_precision

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


# ---------------------------------------------------------------- machine


def select_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


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


# ---------------------------------------------------------------- training


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
    precision = choose_precision(config.precision, device.type)
    dtype = DTYPES[precision.chosen]
    _log(f"precision: {precision.reason}")
    if precision.warning:
        _log(f"warning: {precision.warning}")

    if model is None or tokenizer is None:
        _log(f"loading base model {config.base_model}")
        tokenizer, model, base_info = load_base(config)
    base_info = base_info or BaseModelInfo(spec=config.base_model, path=str(getattr(model, "name_or_path", "")))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    examples = tokenize_records(
        tokenizer, records, config.chat_format, config.max_length, content_chars=config.content_chars
    )
    dev_examples = tokenize_records(
        tokenizer, dev_records or [], config.chat_format, config.max_length, content_chars=config.content_chars
    )
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

    steps = count_steps(config, len(examples))
    total_steps = steps.total
    from transformers import get_scheduler

    # fp16 needs loss scaling (its range underflows small gradients); bf16 and fp32 do not.
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = get_scheduler(
        config.lr_scheduler,
        optimizer,
        num_warmup_steps=round(config.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )

    resumed = None
    if resume and (out / CHECKPOINT_DIR).exists():
        resumed = load_checkpoint(out, model, optimizer, scheduler)
        _log(f"resumed from {out / CHECKPOINT_DIR} at step {resumed['global_step']}/{total_steps}")

    n_params = sum(p.numel() for p in trainable)
    _log(
        f"training {len(examples)} examples ({len(dev_examples)} dev) on {device} "
        f"autocast={dtype}, {n_params:,} trainable parameters, {total_steps} steps of {steps.per_step}"
    )

    def step(chunk: list[int], index: int) -> StepResult:
        """One optimizer step: gradient accumulation over micro-batches, clipping, scheduler."""
        micro = [chunk[i : i + config.batch_size] for i in range(0, len(chunk), config.batch_size)]
        answer_total = sum(examples[i].answer_tokens for i in chunk) or 1
        loss_value, tokens = 0.0, 0
        for indices in micro:
            batch = move(collate([examples[i] for i in indices], pad_id), device)
            with autocast(device, dtype):
                loss_sum, _ = answer_loss_sum(model, batch, config.answer_only_head)
            scaler.scale(loss_sum / answer_total).backward()
            loss_value += loss_sum.detach().item() / answer_total
            tokens += int(batch["attention_mask"].sum())
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
        lr = scheduler.get_last_lr()[0]
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return StepResult(loss_value, lr, tokens, answer_total, float(grad_norm))

    def dev_loss() -> float:
        return evaluate_loss(model, dev_examples, config.batch_size, pad_id, device, dtype, config.answer_only_head)

    backend = Backend(
        step=step,
        save=lambda state, _name: save_checkpoint(out, model, optimizer, scheduler, state),
        dev_loss=dev_loss if dev_examples else None,
    )
    run = run_loop(config, backend, out, len(examples), resumed)

    adapter_dir = out / ADAPTER_DIR
    model.save_pretrained(adapter_dir)
    manifest = Manifest(
        kind="adapter",
        config=config.to_dict(),
        dataset=dataset_info(config, records, dev_records),
        base_model=vars(base_info).copy(),
        metrics=run.metrics,
        extra={
            "backend": "hf",
            "device": str(device),
            "autocast": str(dtype),
            "precision": precision.as_dict(),
            "trainable_parameters": n_params,
        },
    )
    manifest_path = manifest.write(adapter_dir)
    _log(f"adapter: {adapter_dir}\nmanifest: {manifest_path}")
    return TrainResult(out, adapter_dir, manifest_path, run.metrics)
