"""The `unsloth` backend: LoRA fine-tuning with Unsloth's FastLanguageModel and TRL's SFTTrainer, CUDA only.

Same inputs as the hf backend: the base model from `trainers.base_model` (the embedded Gemma 3 270M is
dequantized once into a plain checkpoint; an HF id such as `unsloth/gemma-3-270m` works too), LoRA rank,
alpha, dropout and target modules from TrainConfig, and the examples from `data.convert.tokenize_records`,
i.e. rendered with data/prompts.py in the config's chat format and labelled -100 on every prompt token.
The tokenized rows (input_ids, attention_mask, labels) go to SFTTrainer with `skip_prepare_dataset`, and
`DataCollatorForSeq2Seq` pads labels with -100; this is the state Unsloth's own `train_on_responses_only`
leaves a trainer in, without its marker-matching heuristics, so the masked tokens are exactly the hf and
tinker backends' (answer-only loss).

Unsloth needs an NVIDIA GPU: on a machine without CUDA `train` raises a RuntimeError before importing
unsloth. Install it in a separate CUDA environment: unsloth 2026.10 requires trl<=1.15 and
transformers<=5.17, which conflict with the project's `train` extra (trl 1.16, transformers>=5.23).

Not yet run: the project had no GPU machine when this was written. The code follows Unsloth 2026.10's API
(FastLanguageModel.from_pretrained / get_peft_model, read from its source); the CPU error, the argument
mapping and the data rows are tested on CPU.

Outputs in `output_dir`: `metrics.jsonl` (one line per step, one per dev evaluation), `checkpoints/`
(Trainer checkpoints; `--resume` continues from the last) and `adapter/` (the PEFT adapter plus
`manifest.json`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data.convert import TokenizedExample, tokenize_records
from data.dataset import Record
from inference.manifest import Manifest
from trainers.config import TrainConfig, load_records
from trainers.loop import count_steps
from trainers.outputs import (
    ADAPTER_DIR,
    METRICS_FILE,
    TrainResult,
    append_metric,
    dataset_info,
    keep_metrics_until,
    summarize,
)
from trainers.outputs import log as _log
from trainers.precision import choose_precision

CHECKPOINTS_DIR = "checkpoints"
CPU_ERROR = "the unsloth backend needs a CUDA GPU; use --backend hf on CPU"


def require_cuda() -> None:
    """Fail clearly before `import unsloth`, which itself fails (or worse) without an NVIDIA GPU."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(CPU_ERROR)


def total_steps(config: TrainConfig, n_examples: int) -> tuple[int, int]:
    """(optimizer steps, steps per epoch), counted as the hf and tinker backends count them."""
    steps = count_steps(config, n_examples)
    return steps.total, steps.per_epoch


def rows(examples: Sequence[TokenizedExample]) -> list[dict[str, list[int]]]:
    """Tokenized examples as dataset rows; labels are already -100 on the prompt."""
    return [{"input_ids": e.input_ids, "attention_mask": [1] * len(e.input_ids), "labels": e.labels} for e in examples]


def sft_arguments(config: TrainConfig, steps: int, bf16: bool, has_dev: bool) -> dict[str, Any]:
    """SFTConfig keyword arguments for `config` (plain data, so it can be checked without a GPU)."""
    chosen = choose_precision(config.precision, "cuda", cuda_bf16=bf16).chosen
    use_bf16, use_fp16 = chosen == "bf16", chosen == "fp16"
    return {
        "output_dir": str(Path(config.output_dir) / CHECKPOINTS_DIR),
        "per_device_train_batch_size": config.batch_size,
        "per_device_eval_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.grad_accum,
        "max_steps": steps,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": config.lr_scheduler,
        "warmup_steps": round(config.warmup_ratio * steps),
        "weight_decay": config.weight_decay,
        "max_grad_norm": config.max_grad_norm,
        "gradient_checkpointing": config.gradient_checkpointing,
        "optim": "adamw_torch",
        "bf16": use_bf16,
        "fp16": use_fp16,
        "seed": config.seed,
        "logging_steps": 1,
        "save_strategy": "steps" if config.save_steps > 0 else "epoch",
        "save_steps": config.save_steps if config.save_steps > 0 else 500,
        "save_total_limit": 2,
        "eval_strategy": "epoch" if has_dev else "no",
        "max_length": config.max_length,
        "dataset_kwargs": {"skip_prepare_dataset": True},
        "packing": False,
        "include_num_input_tokens_seen": "non_padding",
        "report_to": "none",
    }


def _metrics_callback(metrics_path: Path, history: list[dict[str, Any]], state: dict[str, Any], log_every: int):
    """A TrainerCallback writing the hf backend's metrics.jsonl lines (built lazily: transformers after unsloth)."""
    from transformers import TrainerCallback

    class MetricsCallback(TrainerCallback):
        def __init__(self) -> None:
            self.step_started = time.monotonic()
            self.tokens_seen = 0

        def on_train_begin(self, args, trainer_state, control, **kwargs):
            self.tokens_seen = int(getattr(trainer_state, "num_input_tokens_seen", 0) or 0)

        def on_step_begin(self, args, trainer_state, control, **kwargs):
            self.step_started = time.monotonic()

        def on_log(self, args, trainer_state, control, logs=None, **kwargs):
            logs = logs or {}
            step = trainer_state.global_step
            if "eval_loss" in logs:
                entry = {"type": "eval", "step": step, "epoch": logs.get("epoch"), "dev_loss": logs["eval_loss"]}
            elif "loss" in logs:
                seen = int(getattr(trainer_state, "num_input_tokens_seen", 0) or 0)
                tokens, self.tokens_seen = seen - self.tokens_seen, seen
                seconds = time.monotonic() - self.step_started
                state["global_step"], state["tokens"] = step, state["tokens"] + tokens
                state["train_seconds"] += seconds
                entry = {
                    "type": "train",
                    "step": step,
                    "epoch": logs.get("epoch"),
                    "loss": logs["loss"],
                    "lr": logs.get("learning_rate"),
                    "grad_norm": logs.get("grad_norm"),
                    "tokens": tokens,
                    "seconds": round(seconds, 3),
                }
                if step % max(log_every, 1) == 0:
                    _log(f"step {step}/{trainer_state.max_steps} loss {logs['loss']:.4f} {seconds:.2f} s/step")
            else:
                return
            append_metric(metrics_path, history, entry)

    return MetricsCallback()


def _fresh_state(metrics_path: Path) -> dict[str, Any]:
    if metrics_path.exists():
        metrics_path.unlink()
    return {"global_step": 0, "tokens": 0, "train_seconds": 0.0}


def _resume_metrics(metrics_path: Path, checkpoints: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """On resume, keep the metric lines up to the last Trainer checkpoint (later ones will be written again)."""
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if last is None:
        raise FileNotFoundError(f"--resume: no checkpoint-* under {checkpoints}")
    step = json.loads((Path(last) / "trainer_state.json").read_text())["global_step"]
    history = keep_metrics_until(metrics_path, step)
    train = [m for m in history if m.get("type") == "train"]
    state = {
        "global_step": step,
        "tokens": sum(m.get("tokens", 0) for m in train),
        "train_seconds": sum(m.get("seconds", 0.0) for m in train),
    }
    return history, state


def train(
    config: TrainConfig,
    records: Sequence[Record] | None = None,
    dev_records: Sequence[Record] | None = None,
    *,
    resume: bool = False,
) -> TrainResult:
    """Train a LoRA adapter with Unsloth on a CUDA GPU; returns where the PEFT adapter and manifest are."""
    require_cuda()
    out = Path(config.output_dir)
    checkpoints = out / CHECKPOINTS_DIR
    if checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*")) and not resume:
        raise FileExistsError(f"{out} already holds checkpoints: pass --resume or choose another output_dir")
    records, dev_records = load_records(config, records, dev_records)

    import unsloth  # first: it patches transformers, trl and peft on import
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq
    from trl import SFTConfig, SFTTrainer
    from unsloth import FastLanguageModel, is_bfloat16_supported

    from trainers.base_model import resolve_base_model

    base_info = resolve_base_model(config.base_model)
    _log(f"loading {base_info.path} with Unsloth")
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=base_info.path,
        max_seq_length=config.max_length,
        dtype=None,
        load_in_4bit=False,
        load_in_8bit=False,
        full_finetuning=False,
    )
    model = FastLanguageModel.get_peft_model(
        model,
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        bias="none",
        use_gradient_checkpointing="unsloth" if config.gradient_checkpointing else False,
        random_state=config.seed,
    )

    text_tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # multimodal Gemma 3 sizes load a processor
    examples = tokenize_records(
        text_tokenizer, records, config.chat_format, config.max_length, content_chars=config.content_chars
    )
    dev_examples = tokenize_records(
        text_tokenizer, dev_records, config.chat_format, config.max_length, content_chars=config.content_chars
    )
    cut = sum(e.truncated for e in examples) + sum(e.truncated for e in dev_examples)
    if cut:
        _log(f"warning: {cut} example(s) longer than max_length={config.max_length} were cut")
    steps, steps_per_epoch = total_steps(config, len(examples))

    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / METRICS_FILE
    history, state = _resume_metrics(metrics_path, checkpoints) if resume else ([], _fresh_state(metrics_path))
    trainer = SFTTrainer(
        model=model,
        processing_class=tokenizer,
        train_dataset=Dataset.from_list(rows(examples)),
        eval_dataset=Dataset.from_list(rows(dev_examples)) if dev_examples else None,
        data_collator=DataCollatorForSeq2Seq(tokenizer=text_tokenizer, padding=True, label_pad_token_id=-100),
        args=SFTConfig(**sft_arguments(config, steps, is_bfloat16_supported(), bool(dev_examples))),
        callbacks=[_metrics_callback(metrics_path, history, state, config.log_steps)],
    )
    _log(f"training {len(examples)} examples ({len(dev_examples)} dev) with Unsloth, {steps} steps")
    wall_start = time.monotonic()
    trainer.train(resume_from_checkpoint=True if resume else None)
    if dev_examples and not any(m["type"] == "eval" and m["step"] == trainer.state.global_step for m in history):
        trainer.evaluate()
    wall = time.monotonic() - wall_start

    adapter_dir = out / ADAPTER_DIR
    model.save_pretrained(str(adapter_dir))
    import torch

    manifest = Manifest(
        kind="adapter",
        config=config.to_dict(),
        dataset=dataset_info(config, records, dev_records),
        base_model=vars(base_info).copy(),
        metrics=summarize(history, state, wall, steps_per_epoch),
        extra={"backend": "unsloth", "unsloth": unsloth.__version__, "device": torch.cuda.get_device_name(0)},
    )
    manifest_path = manifest.write(adapter_dir)
    _log(f"adapter: {adapter_dir}\nmanifest: {manifest_path}")
    return TrainResult(out, adapter_dir, manifest_path, manifest.metrics)
