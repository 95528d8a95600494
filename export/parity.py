"""Does llama.cpp run the exported model the way transformers ran the trained one? Measured, with thresholds.

For each prompt (the training format's user message, in the model family's chat turns):
1. the prompt is tokenized once, by the serving engine exactly as it tokenizes what it serves, and both
   sides get the same token ids (tokenizer differences are a separate question; this is about the weights);
2. transformers (the dense base the trainer trained on + the PEFT adapter, float32) decodes greedily;
3. every llama.cpp variant (base GGUF + LoRA GGUF, merged GGUF, ...) decodes greedily too, and is then
   teacher-forced along the transformers continuation, so logits are compared position by position.
   Both run through `inference.engine.Engine`, the code path that serves the model (its tokenization,
   fixed prompt chunks, answering steps padded to the served number of slots), so a pass certifies the
   weights as `serve` computes them. Decoding here is unconstrained (no grammar, score probe or
   jump-forward): those choose among tokens, and would hide weight differences behind forced ones.

Figures per variant: how many greedy answers are identical, top-1 agreement over the compared positions,
max and mean |logit difference|, and that mean relative to the adapter's own effect (mean |logits with
adapter - logits without|). The relative figure is what catches a lost alpha scale or a wrong layer mapping
even when the adapter is weak: quantization noise is a small fraction of a trained adapter's effect, a
broken export is a large one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data.prompts import chat_format as get_chat_format


@dataclass(frozen=True)
class ParityThresholds:
    """Limits a variant must meet. Defaults separate quantization noise from broken exports (docs/export.md)."""

    min_greedy_agreement: float = 0.6
    """Fraction of prompts whose greedy answers must agree: identical token ids, or parted only at a near tie."""
    tie_margin: float = 1.0
    """Greedy answers that part where transformers' own logit margin between the two tokens is at most this
    (a near tie, which quantization noise may flip) still agree; a larger margin is a real disagreement."""
    min_top1_agreement: float = 0.9
    """Fraction of teacher-forced positions whose argmax token must agree."""
    max_relative_error: float = 0.3
    """Mean |logit diff| to transformers+adapter, as a fraction of the adapter's mean effect."""
    min_adapter_effect: float = 0.0
    """The relative check runs whenever the adapter changes the logits at all (mean effect above this).
    It used to be skipped below 0.02, which let a variant that lost a weak adapter pass on greedy
    agreement alone; a weak adapter's export must still carry it."""


@dataclass
class Variant:
    """One llama.cpp configuration to compare."""

    name: str
    model_path: str
    lora_path: str | None = None


@dataclass
class VariantParity:
    name: str
    model_path: str
    lora_path: str | None
    prompts: int = 0
    greedy_identical: int = 0
    greedy_near_tie: int = 0
    """Prompts whose greedy answers parted at a near tie (see ParityThresholds.tie_margin)."""
    divergence_margins: list[float | None] = field(default_factory=list)
    """Transformers' logit margin (its token over llama.cpp's) where each non-identical answer parted."""
    positions: int = 0
    top1_agreement: float = 0.0
    max_logit_diff: float = 0.0
    mean_logit_diff: float = 0.0
    relative_error: float | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def greedy_agreement(self) -> float:
        """Fraction of prompts whose greedy answers are identical or parted only at a near tie."""
        return (self.greedy_identical + self.greedy_near_tie) / self.prompts if self.prompts else 0.0


@dataclass
class ParityReport:
    prompts: int
    positions: int
    adapter_effect_mean: float | None
    adapter_effect_max: float | None
    variants: list[VariantParity]
    thresholds: ParityThresholds
    seconds: float
    hf_answers: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.variants)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["passed"] = self.passed
        for v, d in zip(self.variants, out["variants"], strict=True):
            d["passed"] = v.passed
            d["greedy_agreement"] = v.greedy_agreement
        return out

    def summary(self) -> str:
        effect = "n/a" if self.adapter_effect_mean is None else f"{self.adapter_effect_mean:.3f}"
        lines = [f"parity: {self.prompts} prompts, {self.positions} positions, adapter effect (mean |dlogit|) {effect}"]
        for v in self.variants:
            rel = "n/a" if v.relative_error is None else f"{v.relative_error:.3f}"
            lines.append(
                f"  {v.name:<8} {'PASS' if v.passed else 'FAIL'}  greedy identical {v.greedy_identical}/{v.prompts} "
                f"(+{v.greedy_near_tie} parted at a near tie)  "
                f"top-1 {v.top1_agreement:.3f}  max |dlogit| {v.max_logit_diff:.3f}  "
                f"mean |dlogit| {v.mean_logit_diff:.4f}  relative {rel}"
            )
            lines += [f"    - {f}" for f in v.failures]
        return "\n".join(lines)


class ParityError(RuntimeError):
    """The exported model does not behave like the trained one (the report is attached)."""

    def __init__(self, report: ParityReport):
        self.report = report
        super().__init__("parity check FAILED\n" + report.summary())


def load_prompts(dataset: str | Path, k: int) -> list[str]:
    """K user prompts from a training-format JSONL, spread evenly over the file (deterministic)."""
    from data.dataset import load_dataset

    records = load_dataset(dataset)
    if k <= 0:
        raise ValueError("--parity-k must be at least 1")
    indices = np.linspace(0, len(records) - 1, num=min(k, len(records))).round().astype(int)
    return [records[i].prompt for i in dict.fromkeys(indices.tolist())]


def _engine_greedy(engine: Any, ids: list[int], max_new: int) -> list[int]:
    """Greedy ids after the prompt `ids`, as the engine serves them (its end-of-turn token included)."""
    gen = engine.generate([ids], grammar="none", max_tokens=max_new)[0]
    return gen.tokens + ([gen.stop_token] if gen.stop_token is not None else [])


def _hf_greedy(model: Any, prompt: list[int], stops: set[int], max_new: int) -> list[int]:
    import torch

    with torch.no_grad():
        out = model(input_ids=torch.tensor([prompt]), use_cache=True)
        past, logits, tokens = out.past_key_values, out.logits[0, -1], []
        for _ in range(max_new):
            token = int(logits.argmax())
            tokens.append(token)
            if token in stops:
                break
            out = model(input_ids=torch.tensor([[token]]), past_key_values=past, use_cache=True)
            past, logits = out.past_key_values, out.logits[0, -1]
    return tokens


def _hf_forced(model: Any, prompt: list[int], continuation: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + continuation])).logits[0]
    return logits[len(prompt) - 1 : len(prompt) + len(continuation) - 1].float().numpy()


def check_parity(
    hf_model: Any,
    prompts: Sequence[str],
    variants: Sequence[Variant],
    chat_format: str = "gemma",
    max_new_tokens: int = 96,
    thresholds: ParityThresholds | None = None,
    threads: int = 1,
    n_ctx: int = 1024,
) -> ParityReport:
    """Compare `hf_model` (a PeftModel, or any causal LM) with each llama.cpp variant on `prompts`.

    A PeftModel also gives the adapter's own effect (its adapter is disabled for one forward pass) and so
    the relative error; for a plain model that figure is not computed.
    """
    from inference.engine import Engine, EngineConfig

    thresholds = thresholds or ParityThresholds()
    if not prompts:
        raise ValueError("parity needs at least one prompt")
    if not variants:
        raise ValueError("parity needs at least one llama.cpp variant")
    started = time.monotonic()
    hf_model.eval()
    has_adapter = hasattr(hf_model, "disable_adapter")
    results = [VariantParity(v.name, v.model_path, v.lora_path) for v in variants]
    abs_sums, agreements = [0.0] * len(variants), [0] * len(variants)
    effect_sum, effect_max, positions, vocab = 0.0, 0.0, 0, 0
    answers: list[str] = []
    engines = []
    try:
        for v in variants:
            config = EngineConfig(
                model_path=v.model_path,
                lora_path=v.lora_path,
                n_ctx=n_ctx,
                n_threads=threads,
                chat_format=chat_format,
                max_tokens=max_new_tokens,  # n_parallel as served: the answering steps' row count is part of the path
            )
            engines.append(Engine(config).load())
        tokenizer = engines[0]
        stops = set(tokenizer.end_tokens(get_chat_format(chat_format).assistant_end))
        for index, prompt in enumerate(prompts, 1):
            ids = tokenizer.prompt_tokens(prompt)
            if len(ids) + max_new_tokens > n_ctx:
                raise ValueError(f"prompt {index} has {len(ids)} tokens; raise n_ctx above {len(ids) + max_new_tokens}")
            continuation = _hf_greedy(hf_model, ids, stops, max_new_tokens)
            answers.append(tokenizer.detokenize(continuation))
            reference = _hf_forced(hf_model, ids, continuation)
            vocab = reference.shape[1]
            if has_adapter:
                with hf_model.disable_adapter():
                    delta = np.abs(reference - _hf_forced(hf_model, ids, continuation))
                effect_sum += float(delta.sum())
                effect_max = max(effect_max, float(delta.max()))
            positions += len(continuation)
            for i, (engine, result) in enumerate(zip(engines, results, strict=True)):
                greedy = _engine_greedy(engine, ids, max_new_tokens)
                forced = engine.forced_logits(ids, continuation)
                diff = np.abs(forced - reference)
                result.prompts += 1
                if greedy == continuation:
                    result.greedy_identical += 1
                else:
                    margin = _divergence_margin(greedy, continuation, reference)
                    result.divergence_margins.append(None if margin is None else round(margin, 4))
                    result.greedy_near_tie += int(margin is not None and margin <= thresholds.tie_margin)
                result.max_logit_diff = max(result.max_logit_diff, float(diff.max()))
                abs_sums[i] += float(diff.sum())
                agreements[i] += int((forced.argmax(axis=1) == reference.argmax(axis=1)).sum())
            tally = [f"{r.name} {r.greedy_identical}/{r.prompts} (+{r.greedy_near_tie} near tie)" for r in results]
            print(
                f"parity: prompt {index}/{len(prompts)}: {len(continuation)} tokens; greedy identical: "
                + ", ".join(tally),
                file=sys.stderr,
                flush=True,
            )
    finally:
        for engine in engines:
            engine.close()

    cells = positions * vocab
    effect_mean = effect_sum / cells if has_adapter else None
    for result, abs_sum, agree in zip(results, abs_sums, agreements, strict=True):
        result.positions = positions
        result.top1_agreement = agree / positions
        result.mean_logit_diff = abs_sum / cells
        if effect_mean is not None and effect_mean > thresholds.min_adapter_effect:
            result.relative_error = result.mean_logit_diff / effect_mean
        result.failures = _failures(result, thresholds)
    return ParityReport(
        prompts=len(prompts),
        positions=positions,
        adapter_effect_mean=effect_mean,
        adapter_effect_max=effect_max if has_adapter else None,
        variants=results,
        thresholds=thresholds,
        seconds=time.monotonic() - started,
        hf_answers=answers,
    )


def _divergence_margin(greedy: list[int], continuation: list[int], reference: np.ndarray) -> float | None:
    """How sure transformers was of its own token where the two greedy answers first part (None: no such place)."""
    j = next((i for i, (a, b) in enumerate(zip(greedy, continuation, strict=False)) if a != b), None)
    if j is None:  # one answer is a prefix of the other: cut by the token limit, not a choice between tokens
        return None
    return float(reference[j, continuation[j]] - reference[j, greedy[j]])


def _failures(result: VariantParity, t: ParityThresholds) -> list[str]:
    out = []
    if result.greedy_agreement < t.min_greedy_agreement:
        out.append(
            f"greedy answers agree on {result.greedy_identical + result.greedy_near_tie}/{result.prompts} prompts "
            f"({result.greedy_identical} identical, {result.greedy_near_tie} parted at a near tie <= "
            f"{t.tie_margin} logit; need {t.min_greedy_agreement:.0%})"
        )
    if result.top1_agreement < t.min_top1_agreement:
        out.append(f"top-1 agreement {result.top1_agreement:.3f} < {t.min_top1_agreement}")
    if result.relative_error is not None and result.relative_error > t.max_relative_error:
        out.append(
            f"mean |logit diff| is {result.relative_error:.2f} of the adapter's own effect (max "
            f"{t.max_relative_error}): llama.cpp does not carry the adapter (wrong tensor mapping, transposed "
            "matrices, lost alpha scaling, or a quantization that rounded the merged change away)"
        )
    return out
