"""The `tinker` backend: LoRA fine-tuning on Thinking Machines' Tinker service through its Python SDK.

Tinker runs the model remotely; this module only tokenizes, sends batches and fetches the result:

    ServiceClient -> create_lora_training_client(base_model, rank, seed, train_attn/mlp/unembed)
      per step: forward_backward(datums, "cross_entropy") + optim_step(AdamParams(lr at this step))
      end:      save_state (resumable) + save_weights_for_sampler (Tinker sampling)
                + save_weights_external -> RestClient.get_external_weights_urls -> download -> PEFT

The data path is the hf backend's: `data.convert.tokenize_records` renders every example with
data/prompts.py and marks prompt tokens; a Datum gets weight 0 on every prompt token and 1 on every
answer token (the answer and its turn-end marker), shifted by one as next-token targets. The epochs,
batches, metrics.jsonl lines, checkpoint timing and resume are trainers/loop.py's, shared with the hf
backend; the learning-rate schedule and the manifest match it too, so runs of the two backends compare
line by line. This module supplies the loop's step (forward_backward + optim_step), checkpoint
(save_state) and dev loss (forward).

What Tinker decides itself: the LoRA alpha (read back from the downloaded adapter and recorded), and
which modules get LoRA, in groups (all attention projections, all MLP projections, the output head):
`target_modules` must be whole groups. It has no dropout. It hosts its own list of base models
(Llama 3.x, Qwen3, ...; not Gemma 3 270M), and the prompt must be rendered in that family's chat format
from data/prompts.py, so only families listed in CHAT_FORMAT_BY_MODEL_PREFIX are accepted.

Credentials: the SDK reads TINKER_API_KEY (or a key stored by `tinker auth login`). The service is not
reachable from the project's CI; tests drive this loop with a fake ServiceClient at the SDK boundary.

Outputs in `output_dir`: `metrics.jsonl`, `tinker_checkpoint.json` (the last resumable Tinker state and
the loop position), `tinker_adapter/` (the files as downloaded) and `adapter/` (the PEFT adapter plus
`manifest.json`).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data.convert import IGNORE_INDEX, TokenizedExample, tokenize_records
from data.dataset import Record
from inference.manifest import Manifest
from trainers.base_model import EMBEDDED
from trainers.config import TrainConfig, load_records
from trainers.loop import Backend, StepResult, count_steps, run_loop
from trainers.outputs import ADAPTER_DIR, TrainResult, dataset_info
from trainers.outputs import log as _log
from trainers.tinker_convert import convert as convert_adapter

CHECKPOINT_FILE = "tinker_checkpoint.json"
DOWNLOAD_DIR = "tinker_adapter"
LOSS_FN = "cross_entropy"
ACCESS_CHECK_SECONDS = 60

CHAT_FORMAT_BY_MODEL_PREFIX: dict[str, str] = {
    "meta-llama/Llama-3": "llama3",
}
"""Tinker model-name prefix -> the data/prompts.py chat format its tokenizer and training expect."""

DEFAULT_TINKER_MODEL = "meta-llama/Llama-3.2-1B"

MODULE_GROUPS: dict[str, frozenset[str]] = {
    "train_attn": frozenset({"q_proj", "k_proj", "v_proj", "o_proj"}),
    "train_mlp": frozenset({"gate_proj", "up_proj", "down_proj"}),
    "train_unembed": frozenset({"lm_head"}),
}
"""create_lora_training_client flag -> the Hugging Face module names it puts LoRA on."""

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
"""torch.optim.AdamW defaults, as the hf backend uses (Tinker's own defaults are 0.95 and 1e-12)."""


# ---------------------------------------------------------------- config checks


def lora_flags(target_modules: Sequence[str]) -> dict[str, bool]:
    """`target_modules` as Tinker's per-group flags; a group must be taken whole or not at all."""
    targets = set(target_modules)
    unknown = targets - set().union(*MODULE_GROUPS.values())
    if unknown:
        raise ValueError(f"Tinker cannot put LoRA on {sorted(unknown)}; it trains the groups {_groups_text()}")
    flags = {}
    for flag, group in MODULE_GROUPS.items():
        chosen = targets & group
        if chosen and chosen != group:
            raise ValueError(
                f"Tinker trains {sorted(group)} together; target_modules has only {sorted(chosen)}. "
                f"Use whole groups: {_groups_text()}"
            )
        flags[flag] = bool(chosen)
    if not any(flags.values()):
        raise ValueError("target_modules is empty")
    return flags


def _groups_text() -> str:
    return "; ".join(f"{flag}: {','.join(sorted(group))}" for flag, group in MODULE_GROUPS.items())


def check_config(config: TrainConfig) -> dict[str, bool]:
    """Refuse what Tinker cannot do before anything is sent; returns the LoRA group flags."""
    base = config.base_model
    if base == EMBEDDED or base.endswith(".gguf") or Path(base).expanduser().exists():
        raise ValueError(
            f"the tinker backend trains models hosted by Tinker, not {base!r}: "
            f"e.g. --base-model {DEFAULT_TINKER_MODEL} --set chat_format=llama3"
        )
    expected = next((fmt for prefix, fmt in CHAT_FORMAT_BY_MODEL_PREFIX.items() if base.startswith(prefix)), None)
    if expected is None:
        raise ValueError(
            f"no chat format in data/prompts.py for Tinker model {base!r}; "
            f"supported families: {', '.join(CHAT_FORMAT_BY_MODEL_PREFIX)}"
        )
    if config.chat_format != expected:
        raise ValueError(f"{base} needs chat_format={expected}, config has {config.chat_format!r}")
    return lora_flags(config.target_modules)


def lr_schedule(config: TrainConfig, total_steps: int) -> list[float]:
    """The learning rate of every step, from the same transformers scheduler the hf backend steps."""
    import torch
    from transformers import get_scheduler

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.learning_rate)
    scheduler = get_scheduler(
        config.lr_scheduler,
        optimizer,
        num_warmup_steps=round(config.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    rates = []
    for _ in range(total_steps):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return rates


# ---------------------------------------------------------------- data


def to_datum(example: TokenizedExample) -> Any:
    """One example as a Tinker Datum: inputs are tokens[:-1]; targets tokens[1:] weighted 1 on the answer only."""
    from tinker import types

    weights = [0.0 if label == IGNORE_INDEX else 1.0 for label in example.labels]
    return types.Datum(
        model_input=types.ModelInput.from_ints(example.input_ids[:-1]),
        loss_fn_inputs={
            "target_tokens": types.TensorData(data=example.input_ids[1:], dtype="int64"),
            "weights": types.TensorData(data=weights[1:], dtype="float32"),
        },
    )


def mean_nll(output: Any, datums: Sequence[Any]) -> tuple[float, int]:
    """Weighted mean negative log-likelihood of a forward(_backward) result, and the weighted token count."""
    total, count = 0.0, 0.0
    for result, datum in zip(output.loss_fn_outputs, datums, strict=True):
        logprobs = result["logprobs"].to_numpy().reshape(-1)
        weights = datum.loss_fn_inputs["weights"].to_numpy().reshape(-1)
        total -= float((logprobs * weights).sum())
        count += float(weights.sum())
    return total / max(count, 1.0), int(count)


# ---------------------------------------------------------------- service plumbing


def make_service_client() -> Any:
    """A real ServiceClient, once the service has answered one request with the configured credential.

    The SDK waits for a stalled service up to two hours by design (its requests queue); a single
    unretried request, bounded by ACCESS_CHECK_SECONDS, turns a missing key, a rejected key or an
    unreachable service into an error at once.
    """
    import tinker
    from tinker import auth

    if not auth.tinker_has_credentials():
        raise RuntimeError(
            "the tinker backend needs an API key: export TINKER_API_KEY=tml-... (or run `tinker auth login`)"
        )
    outcome: list[BaseException | None] = []

    def check() -> None:
        try:
            auth.raise_if_tinker_not_accessible()
            outcome.append(None)
        except BaseException as exc:  # reported below, in the caller's thread
            outcome.append(exc)

    thread = threading.Thread(target=check, name="tinker-access-check", daemon=True)
    thread.start()
    thread.join(ACCESS_CHECK_SECONDS)
    if not outcome:
        raise RuntimeError(f"the Tinker service did not answer within {ACCESS_CHECK_SECONDS} s (network or outage?)")
    if outcome[0] is not None:
        raise RuntimeError(f"Tinker is not accessible: {outcome[0]}") from outcome[0]
    return tinker.ServiceClient(user_metadata={"project": "news-enhancer"})


def download_external_weights(rest_client: Any, tinker_path: str, dest: Path) -> list[Path]:
    """Fetch every file of an external-weights checkpoint through its signed URLs (what `tinker checkpoint
    download` does); refuses file names that would land outside `dest`."""
    response = rest_client.get_external_weights_urls(tinker_path).result()
    if not response.urls:
        raise RuntimeError(f"Tinker returned no files for {tinker_path}")
    dest.mkdir(parents=True, exist_ok=True)
    base = dest.resolve()
    written = []
    for name, url in sorted(response.urls.items()):
        target = (dest / name).resolve()
        if not target.is_relative_to(base):
            raise RuntimeError(f"unsafe file name {name!r} in {tinker_path}")
        target.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=120) as source, open(target, "wb") as sink:
            while block := source.read(1 << 20):
                sink.write(block)
        written.append(target)
    return written


def _save_loop_state(out: Path, state: dict[str, Any]) -> None:
    tmp = out / (CHECKPOINT_FILE + ".partial")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(out / CHECKPOINT_FILE)


# ---------------------------------------------------------------- training


def train(
    config: TrainConfig,
    records: Sequence[Record] | None = None,
    dev_records: Sequence[Record] | None = None,
    *,
    resume: bool = False,
    service_client: Any = None,
) -> TrainResult:
    """Train a LoRA adapter on Tinker as `config` says; returns where the PEFT adapter and manifest are.

    `service_client` defaults to a real `tinker.ServiceClient` (tests pass a fake). With `resume`, training
    continues from the Tinker state named in `output_dir/tinker_checkpoint.json`, optimizer included.
    """
    flags = check_config(config)
    out = Path(config.output_dir)
    if (out / CHECKPOINT_FILE).exists() and not resume:
        raise FileExistsError(f"{out} already holds a Tinker checkpoint: pass --resume or choose another output_dir")
    records, dev_records = load_records(config, records, dev_records)
    if config.lora_dropout:
        _log(f"note: Tinker has no LoRA dropout; lora_dropout={config.lora_dropout} is not used")
    _log(f"note: Tinker chooses the LoRA alpha itself (config lora_alpha={config.lora_alpha} is not used)")

    owns_client = service_client is None
    service_client = service_client or make_service_client()
    status = "errored"
    try:
        result = _train(config, records, dev_records or [], flags, out, resume, service_client)
        status = "success"
        return result
    finally:
        if owns_client:
            try:
                service_client.close(status).result()
            except Exception as exc:  # never hide the training error behind a failed goodbye
                _log(f"warning: closing the Tinker session failed: {exc}")


def _train(
    config: TrainConfig,
    records: Sequence[Record],
    dev_records: Sequence[Record],
    flags: dict[str, bool],
    out: Path,
    resume: bool,
    service_client: Any,
) -> TrainResult:
    from tinker import types

    resumed = None
    if resume and (out / CHECKPOINT_FILE).exists():
        saved_file = json.loads((out / CHECKPOINT_FILE).read_text())
        resumed = saved_file["loop"]
        client = service_client.create_training_client_from_state_with_optimizer(saved_file["state_path"]).result()
        _log(f"resumed from {saved_file['state_path']} at step {resumed['global_step']}")
    else:
        _log(f"creating a Tinker LoRA training client: {config.base_model} rank {config.lora_r} {flags}")
        client = service_client.create_lora_training_client(
            base_model=config.base_model, rank=config.lora_r, seed=config.seed, **flags
        ).result()

    tokenizer = client.get_tokenizer()
    examples = tokenize_records(
        tokenizer, records, config.chat_format, config.max_length, content_chars=config.content_chars
    )
    dev_examples = tokenize_records(
        tokenizer, dev_records, config.chat_format, config.max_length, content_chars=config.content_chars
    )
    cut = sum(e.truncated for e in examples) + sum(e.truncated for e in dev_examples)
    if cut:
        _log(f"warning: {cut} example(s) longer than max_length={config.max_length} were cut")
    datums = [to_datum(e) for e in examples]
    dev_datums = [to_datum(e) for e in dev_examples]

    steps = count_steps(config, len(examples))
    rates = lr_schedule(config, steps.total)
    _log(
        f"training {len(examples)} examples ({len(dev_examples)} dev) on Tinker, "
        f"{steps.total} steps of {steps.per_step}"
    )

    def step(chunk: list[int], index: int) -> StepResult:
        """forward_backward + optim_step, both submitted before waiting on either, so they run back to back."""
        batch = [datums[i] for i in chunk]
        answer_tokens = sum(examples[i].answer_tokens for i in chunk)
        lr = rates[index]
        adam = types.AdamParams(
            learning_rate=lr,
            beta1=ADAM_BETAS[0],
            beta2=ADAM_BETAS[1],
            eps=ADAM_EPS,
            weight_decay=config.weight_decay,
            # Tinker's loss is the weighted *sum* over tokens; the hf backend clips the gradient of
            # the per-answer-token mean. Scaling the threshold by the token count clips the same way.
            grad_clip_norm=config.max_grad_norm * max(answer_tokens, 1) if config.max_grad_norm > 0 else 0.0,
        )
        fwd_bwd = client.forward_backward(batch, LOSS_FN)
        optim = client.optim_step(adam)
        loss, _ = mean_nll(fwd_bwd.result(), batch)
        grad_norm = (getattr(optim.result(), "metrics", None) or {}).get("grad_norm")
        tokens = sum(len(examples[i].input_ids) for i in chunk)
        return StepResult(loss, lr, tokens, answer_tokens, grad_norm)

    saved = {"step": -1, "path": ""}

    def save(state: dict[str, Any], name: str) -> None:
        """Save a resumable Tinker state (at most once per step) and note it with the loop position."""
        if saved["step"] != state["global_step"]:
            saved.update(step=state["global_step"], path=client.save_state(name, overwrite=True).result().path)
        _save_loop_state(out, {"state_path": saved["path"], "loop": dict(state)})

    def dev_loss() -> float:
        return mean_nll(client.forward(dev_datums, LOSS_FN).result(), dev_datums)[0]

    backend = Backend(step=step, save=save, dev_loss=dev_loss if dev_datums else None)
    run = run_loop(config, backend, out, len(examples), resumed)
    state = run.state

    final = f"final-step{state['global_step']}-{time.strftime('%Y%m%d-%H%M%S')}"
    paths = {
        "state": saved["path"],  # the loop's final checkpoint
        "sampler": client.save_weights_for_sampler(final).result().path,
        "external": client.save_weights_external(final).result().path,
    }
    _log(f"downloading the adapter from {paths['external']}")
    download_dir = out / DOWNLOAD_DIR
    download_external_weights(service_client.create_rest_client(), paths["external"], download_dir)
    adapter_dir = out / ADAPTER_DIR
    converted = convert_adapter(download_dir, adapter_dir, base_model=config.base_model)

    manifest = Manifest(
        kind="adapter",
        config=config.to_dict(),
        dataset=dataset_info(config, records, dev_records),
        base_model={"spec": config.base_model, "path": config.base_model, "host": "tinker"},
        metrics=run.metrics,
        extra={
            "backend": "tinker",
            "tinker_paths": paths,
            "lora_flags": flags,
            "lora_alpha": converted.alpha,
            "lora_target_modules": converted.target_modules,
        },
    )
    manifest_path = manifest.write(adapter_dir)
    _log(f"adapter: {adapter_dir}\nmanifest: {manifest_path}")
    return TrainResult(out, adapter_dir, manifest_path, run.metrics)
