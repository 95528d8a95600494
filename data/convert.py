"""Turn validated records into each training backend's input, always through data/prompts.py.

- `to_prompt_completion`: the chat-formatted prompt and completion strings (TRL / the hf backend).
- `to_tinker_conversation`: `{"messages": [...]}` conversation rows (Tinker cookbook style).
- `to_chat_text`: one `text` string with the chat format applied (Unsloth / plain SFT style).
- `tokenize_prompt_completion`: token ids plus labels that are -100 on every prompt token, so the loss
  (or Tinker's per-token weights) covers the answer and its turn-end marker only.

The answer is re-rendered with `render_answer` from the parsed analysis, so what the model learns is
byte-identical to what serving and evaluation render; the shared data already is (verified 364/364).
Texts exclude BOS: the tokenizer adds it when it encodes the prompt.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.dataset import Record
from data.prompts import render_answer, render_chat_completion, render_chat_prompt

IGNORE_INDEX = -100
"""Label value that PyTorch's cross-entropy (and HF models) skip."""


def answer_text(record: Record) -> str:
    """The canonical answer string for a record (key order and indentation as the renderer writes them)."""
    return render_answer(record.analysis)


def to_prompt_completion(record: Record, fmt: str = "gemma", content_chars: int = 0) -> dict[str, str]:
    """`{"prompt", "completion"}`: the prompt ends where the model's turn starts; the completion ends the turn.
    `content_chars`: how much of the item the prompt shows (`Record.shown_prompt`; 0: the data's prompt)."""
    return {
        "prompt": render_chat_prompt(record.shown_prompt(content_chars), fmt),
        "completion": render_chat_completion(answer_text(record), fmt),
    }


def to_tinker_conversation(record: Record) -> dict[str, Any]:
    """A conversation row: the renderer's user prompt and canonical answer; Tinker applies the chat format."""
    return {
        "messages": [
            {"role": "user", "content": record.prompt},
            {"role": "assistant", "content": answer_text(record)},
        ]
    }


def to_chat_text(record: Record, fmt: str = "gemma") -> dict[str, str]:
    """`{"text"}`: prompt and completion in one string, as Unsloth-style SFT on a text field expects."""
    pair = to_prompt_completion(record, fmt)
    return {"text": pair["prompt"] + pair["completion"]}


CONVERTERS = {
    "prompt_completion": to_prompt_completion,
    "tinker": lambda record, fmt="gemma": to_tinker_conversation(record),
    "chat_text": to_chat_text,
}
"""Converter name -> function(record, fmt); `news-enhancer data convert --to NAME` uses this table."""


def convert_records(records: Iterable[Record], to: str, fmt: str = "gemma") -> list[dict[str, Any]]:
    try:
        converter = CONVERTERS[to]
    except KeyError:
        raise ValueError(f"unknown conversion {to!r}; known: {', '.join(CONVERTERS)}") from None
    return [converter(record, fmt) for record in records]


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | Path) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


@dataclass
class TokenizedExample:
    """Token ids of prompt + completion and their labels (-100 on the prompt)."""

    input_ids: list[int]
    labels: list[int]
    prompt_tokens: int
    truncated: bool

    @property
    def answer_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def tokenize_prompt_completion(
    tokenizer: Any, prompt: str, completion: str, max_length: int | None = None
) -> TokenizedExample:
    """Tokenize the two parts separately, as serving does (prompt tokens, then generated answer tokens).

    The prompt gets the tokenizer's special tokens (BOS); the completion gets none, its turn-end marker
    is in the text. Labels copy the completion ids and are -100 on every prompt token. An example longer
    than `max_length` is cut at the end and flagged.
    """
    prompt_ids = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    completion_ids = list(tokenizer(completion, add_special_tokens=False)["input_ids"])
    input_ids = prompt_ids + completion_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + completion_ids
    truncated = max_length is not None and len(input_ids) > max_length
    if truncated:
        input_ids, labels = input_ids[:max_length], labels[:max_length]
    return TokenizedExample(input_ids, labels, len(prompt_ids), truncated)


def tokenize_records(
    tokenizer: Any,
    records: Sequence[Record],
    fmt: str = "gemma",
    max_length: int | None = None,
    content_chars: int = 0,
) -> list[TokenizedExample]:
    """`tokenize_prompt_completion` for every record (the trainers' shared entry point)."""
    out = []
    for record in records:
        pair = to_prompt_completion(record, fmt, content_chars)
        out.append(tokenize_prompt_completion(tokenizer, pair["prompt"], pair["completion"], max_length))
    return out
