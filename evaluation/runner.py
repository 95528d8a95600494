"""Generate predictions for a reference set through the serving analyzer, with a resumable cache.

Predictions come from `Analyzer.complete_many(user_prompts)`: the very code path the MCP server uses
(chat format, grammar-constrained greedy decoding), fed the reference's user prompt unchanged, one
batch of `config.n_parallel` references at a time (with the engine's padded rows an answer does not
depend on what else is in its batch, and a lone item would leave the other rows idle). Each answer is
appended to DIR/predictions.jsonl as soon as it exists (`{"output": raw, ...}`, one line per reference, same
order), so scoring can be redone without generating again and an interrupted run resumes where it stopped.
`DIR/run.json` records what generated the cache; a different model, adapter or decoding setting in the same
directory is refused instead of silently mixing two systems' answers.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from data.prompts import shown_prompt
from evaluation.scoring import Reference

PREDICTIONS = "predictions.jsonl"
RUN_FILE = "run.json"

IDENTITY_KEYS_EXTRA = ("engine",)
"""Recorded when another engine than the local llama.cpp one made the answers (e.g. a remote server)."""

IDENTITY_KEYS = (
    "model_path",
    "lora_path",
    "lora_scale",
    "chat_format",
    "max_tokens",
    "seed",
    "n_ctx",
    "relevance_rule",
    "relevance_head",
    "content_chars",
)
"""EngineConfig fields that change the generated text (n_threads does not); the relevance ones as
served (inference.relevance.rule_identity: "auto" is recorded as the rule it resolved to)."""

LEGACY_IDENTITY = {"relevance_rule": "greedy", "relevance_head": None, "content_chars": 0}
"""What a cache written before a key existed was made with (the score was the greedy token then)."""


class RunnerError(RuntimeError):
    pass


@dataclass
class RunStats:
    generated: int
    cached: int
    seconds: float
    """Wall time of the generation done by this call (0 when everything was cached)."""
    completion_tokens: int
    prompt_tokens: int
    cut_at_max_tokens: int = 0
    """Answers (cached ones included) that reached max_tokens before they ended."""
    failed: int = 0
    """Items whose generation raised (recorded with an empty output and an error)."""

    @property
    def items_per_second(self) -> float | None:
        return self.generated / self.seconds if self.seconds > 0 else None

    @property
    def tokens_per_second(self) -> float | None:
        return self.completion_tokens / self.seconds if self.seconds > 0 else None


def prompt_hash(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """Lines of a predictions file; a truncated last line (an interrupted write) is dropped."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise RunnerError(f"{path}: line {number} is not JSON") from None
        if not isinstance(row, dict) or not isinstance(row.get("output"), str):
            raise RunnerError(f"{path}: line {number} has no string 'output'")
        rows.append(row)
    return rows


def engine_identity(config: Any) -> dict[str, Any]:
    """What made the cached answers: resolved model path, adapter and decoding settings."""
    identity = {key: getattr(config, key, None) for key in IDENTITY_KEYS}
    if hasattr(config, "relevance_rule"):
        from inference.relevance import rule_identity

        identity.update(rule_identity(config))
    if hasattr(config, "content_chars"):
        from inference.models import content_chars

        identity["content_chars"] = content_chars(config.content_chars, config.lora_path)
    if identity["model_path"] is None:
        from inference.models import embedded_base_model

        identity["model_path"] = str(embedded_base_model())
        identity["model"] = "embedded Gemma 3 270M Q4_K_M"
    for key in ("model_path", "lora_path"):
        if identity[key] is not None:
            path = Path(identity[key]).resolve()
            identity[key] = str(path)
            identity[f"{key.split('_')[0]}_bytes"] = path.stat().st_size if path.is_file() else None
    return identity


def _check_cache(rows: list[dict[str, Any]], refs: Sequence[Reference], out_dir: Path, identity: dict) -> None:
    run_file = out_dir / RUN_FILE
    if rows and run_file.is_file():
        previous = json.loads(run_file.read_text(encoding="utf-8")).get("engine", {})
        keys = (*IDENTITY_KEYS, *IDENTITY_KEYS_EXTRA)
        changed = [
            k for k in keys if previous.get(k, LEGACY_IDENTITY.get(k)) != identity.get(k, LEGACY_IDENTITY.get(k))
        ]
        if changed:
            raise RunnerError(
                f"{out_dir} holds predictions from a different setup ({', '.join(changed)} differ); "
                "use another --out directory or delete its predictions.jsonl"
            )
    for i, row in enumerate(rows[: len(refs)]):
        expected = prompt_hash(refs[i].prompt)
        if row.get("prompt_sha256", expected) != expected:
            raise RunnerError(
                f"{out_dir / PREDICTIONS}: line {i + 1} was generated for another prompt; "
                "these are not the same references (use another --out directory)"
            )


def generate(
    refs: Sequence[Reference],
    out_dir: str | Path,
    config: Any = None,
    analyzer: Any = None,
    progress: bool = True,
) -> tuple[list[str], RunStats]:
    """Raw outputs for every reference (cached ones reused), appending new ones to DIR/predictions.jsonl.

    `config` is an `inference.engine.EngineConfig`; `analyzer` may be given instead (already loaded).
    """
    from inference.analyzer import Analyzer
    from inference.engine import Engine, EngineConfig

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = config if config is not None else getattr(analyzer, "config", None) or EngineConfig()
    identity = engine_identity(config)
    engine = getattr(analyzer, "engine", None)
    if engine is not None and not isinstance(engine, Engine):  # e.g. a remote server: name what answered
        identity["engine"] = f"{type(engine).__module__}.{type(engine).__name__} {getattr(engine, 'model_path', '')}"
    seen = _head_seen(identity, refs)
    if seen:
        print(
            f"eval run: warning: the relevance head was fitted on {seen} of these {len(refs)} items: its relevance "
            "figures here are not out-of-sample (eval cv head has them)",
            file=sys.stderr,
        )
    pred_path = out_dir / PREDICTIONS
    rows = read_predictions(pred_path)
    _check_cache(rows, refs, out_dir, identity)
    run = {"engine": identity, "config": _config_dict(config), "relevance_head_fitted_on_items": seen}
    (out_dir / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    if len(rows) > len(refs):
        rows = rows[: len(refs)]
    else:
        _rewrite(pred_path, rows)  # drops a torn last line before appending
    cached = len(rows)
    todo = list(range(cached, len(refs)))
    stats = RunStats(generated=len(todo), cached=cached, seconds=0.0, completion_tokens=0, prompt_tokens=0)
    if todo:
        analyzer = analyzer if analyzer is not None else Analyzer(config)
        started = time.perf_counter()
        size = max(1, int(getattr(getattr(analyzer, "config", None), "n_parallel", 1) or 1))
        bar = _progress(progress, cached, len(refs))
        with open(pred_path, "a", encoding="utf-8") as handle:
            for start in range(0, len(todo), size):
                chunk = todo[start : start + size]
                for row in _complete_batch(analyzer, [refs[i] for i in chunk], chunk):
                    stats.completion_tokens += int(row.get("completion_tokens") or 0)
                    stats.prompt_tokens += int(row.get("prompt_tokens") or 0)
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                    rows.append(row)
                handle.flush()
                os.fsync(handle.fileno())
                if bar is not None:
                    bar.update(len(chunk))
        if bar is not None:
            bar.close()
        stats.seconds = time.perf_counter() - started
    stats.cut_at_max_tokens = sum(row.get("finish_reason") == "length" for row in rows)
    stats.failed = sum("error" in row for row in rows)
    return [row["output"] for row in rows], stats


def _head_seen(identity: dict[str, Any], refs: Sequence[Reference]) -> int:
    """How many references the served relevance head was fitted on (0 without a head)."""
    if not identity.get("relevance_head"):
        return 0
    from inference.relevance import head_path

    path = head_path(identity)
    fitted = json.loads(Path(path).read_text(encoding="utf-8")).get("fitted", {}) if path else {}
    ids = set(fitted.get("item_ids") or [])
    return sum(ref.item_id in ids for ref in refs)


def _head_inputs(analyzer: Any, refs: Sequence[Reference]) -> list | None:
    """What the relevance head reads of each reference (the item's whole text), where a head serves."""
    if getattr(analyzer, "head", None) is None:
        return None
    inputs = [getattr(ref, "head_input", None) for ref in refs]
    return inputs if all(i is not None for i in inputs) else None


def _prompt(analyzer: Any, ref: Reference) -> str:
    """The reference's prompt as the analyzer cuts items (`content_chars`, from the adapter's training);
    the reference itself (its identity, fingerprint and `prompt_sha256`) keeps the data's prompt."""
    chars = getattr(analyzer, "content_chars", 0) or 0
    if not chars or ref.head_input is None:
        return ref.prompt
    return shown_prompt(ref.prompt, ref.head_input.content, ref.head_input.is_sponsored, chars)


def _complete_batch(analyzer: Any, refs: Sequence[Reference], indices: Sequence[int]) -> list[dict[str, Any]]:
    """Prediction lines for a batch, in order; where the batch fails, each item again on its own."""
    started = time.perf_counter()
    inputs = _head_inputs(analyzer, refs)
    try:
        completions = analyzer.complete_many([_prompt(analyzer, ref) for ref in refs], head_inputs=inputs)
    except Exception:  # noqa: BLE001 - one bad item must not take its batch with it
        return [_complete_one(analyzer, ref, i) for ref, i in zip(refs, indices, strict=True)]
    seconds = (time.perf_counter() - started) / max(1, len(refs))
    return [_row(c, ref, i, seconds) for c, ref, i in zip(completions, refs, indices, strict=True)]


def _complete_one(analyzer: Any, ref: Reference, index: int) -> dict[str, Any]:
    """One prediction line; a failure is recorded (empty output, scored invalid), never lost or fatal."""
    started = time.perf_counter()
    try:
        inputs = _head_inputs(analyzer, [ref])
        prompt = _prompt(analyzer, ref)
        completion = analyzer.complete(prompt, inputs[0]) if inputs else analyzer.complete(prompt)
    except Exception as exc:  # noqa: BLE001 - one bad item must not end a long run
        print(f"eval run: item {index} ({ref.item_id}) failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        error = f"{type(exc).__name__}: {exc}"
        return {"output": "", **_base(ref, index), "error": error, "seconds": time.perf_counter() - started}
    return _row(completion, ref, index, time.perf_counter() - started)


def _base(ref: Reference, index: int) -> dict[str, Any]:
    return {"index": index, "item_id": ref.item_id, "prompt_sha256": prompt_hash(ref.prompt)}


def _row(completion: Any, ref: Reference, index: int, seconds: float) -> dict[str, Any]:
    return {
        "output": completion.raw,
        **_base(ref, index),
        "seconds": getattr(completion, "seconds", None) or seconds,
        "prompt_tokens": getattr(completion, "prompt_tokens", None),
        "completion_tokens": getattr(completion, "completion_tokens", None),
        # "length": max_tokens cut the raw text; the server closes it into a valid object (`analysis`),
        # but validity is judged on the raw text, so such an answer counts as invalid.
        "finish_reason": getattr(completion, "finish_reason", None),
        "analysis": getattr(completion, "analysis", None),
        "relevance": getattr(completion, "relevance", None),
    }


def _progress(enabled: bool, done: int, total: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(desc="eval run", unit="item", initial=done, total=total, file=sys.stderr, dynamic_ncols=True)


def _rewrite(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)


def _config_dict(config: Any) -> dict[str, Any]:
    try:
        return asdict(config)
    except TypeError:
        return {k: v for k, v in vars(config).items() if not k.startswith("_")}
