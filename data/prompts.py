"""The one prompt renderer: training, serving and evaluation all build their model input here.

`render_prompt` reproduces the user prompt of the training data (`news_train.jsonl`) byte for byte,
including its `action_items` line (the answers use `company_names`; the model learned that mapping).
`prepare_content` reproduces how that data cut an item's content, so a served item looks like a
trained one. Train/serve skew starts the moment two places build a prompt: don't build one elsewhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas import ANALYSIS_KEYS

PROMPT_TEMPLATE = (
    "Analyze this newsletter item:\n"
    "\n"
    "Title: {title}\n"
    "Content: {content}\n"
    "\n"
    "Provide a JSON response with:\n"
    "- relevance_score (1-10): How relevant is this to tech professionals?\n"
    "- summary: One-sentence summary\n"
    "- key_insights: List of main takeaways\n"
    "- action_items: Recommended next steps"
)

SINGLE_SENTENCE_LIMIT = 500
"""Characters kept from content that is one sentence (the training data's longest such item: 393)."""

_SENTENCE_END = re.compile(r"[.!?](?=\s)")
_READING_TIME = re.compile(r"\(\d+\s+minutes?\s+read\)", re.IGNORECASE)


def render_prompt(title: str, content: str) -> str:
    """The user prompt for one item, exactly as in the training data."""
    return PROMPT_TEMPLATE.format(title=title, content=content)


_PROMPT_ITEM = re.compile(
    r"^Analyze this newsletter item:\n\nTitle: (?P<title>.*)\nContent: (?P<content>.*?)\n\nProvide a JSON", re.DOTALL
)


def parse_prompt(prompt: str) -> tuple[str, str] | None:
    """(title, content) of a prompt `render_prompt` made, or None for any other text."""
    match = _PROMPT_ITEM.match(prompt)
    return (match["title"], match["content"]) if match else None


def is_sponsored_item(title: str, flagged: bool = False) -> bool:
    """An ad: flagged as one (the data's `is_sponsored`, ingest's sponsor labels) or titled "(Sponsor)"."""
    return bool(flagged) or "(sponsor)" in title.lower()


def format_title(title: str) -> str:
    """A title as the training data shows it: Markdown bold, "(N minute read)" cut out.

    TLDR headings read "Title (4 minute read)"; the data kept them as "**Title **" (the space that
    preceded the reading time stays). Markers such as "(GitHub Repo)" or "(Sponsor)" stay too.
    Idempotent, so already-formatted titles pass through unchanged.
    """
    title = " ".join(title.split())
    if len(title) > 4 and title.startswith("**") and title.endswith("**"):
        title = title[2:-2]
    if _READING_TIME.search(title):
        title = _READING_TIME.sub("", title)
        title = title.rstrip() + " "
    return f"**{title}**"


def prepare_content(content: str, is_sponsored: bool = False, chars: int = 0) -> tuple[str, bool]:
    """Cut content the way the adapter's training data was cut; returns (content, was_cut).

    `chars` 0 (the shipped adapter): as the data did: sponsored items and one-sentence items whole,
    every other item cut to its first sentence (`truncation_method` in the data's metadata).
    `chars` N > 0 (a training lever, `TrainConfig.content_chars`): whole sentences up to N characters
    (at least the first sentence, cut at N when that alone is longer), so a long-form story is read
    past its first line; sponsored items stay whole, as in the data.
    """
    content = content.strip()
    if is_sponsored:
        return content, False
    if chars > 0:
        return _sentences_within(content, chars)
    match = _SENTENCE_END.search(content)
    if match and content[match.end() :].strip():
        return content[: match.end()], True
    if len(content) > SINGLE_SENTENCE_LIMIT:
        return content[:SINGLE_SENTENCE_LIMIT].rstrip(), True
    return content, False


def _sentences_within(content: str, chars: int) -> tuple[str, bool]:
    if len(content) <= chars:
        return content, False
    ends = [m.end() for m in _SENTENCE_END.finditer(content) if m.end() <= chars]
    return (content[: ends[-1]] if ends else content[:chars]).rstrip(), True


def shown_prompt(prompt: str, full_content: str, is_sponsored: bool, chars: int) -> str:
    """`prompt` (a `render_prompt` prompt) showing `chars` of the item's whole text instead of what it
    shows (`prepare_content`); chars 0 returns it unchanged. The title stays as the prompt has it."""
    if chars <= 0:
        return prompt
    title = (parse_prompt(prompt) or ("", ""))[0]
    return render_prompt(title, prepare_content(full_content, is_sponsored, chars)[0])


def render_answer(analysis: Mapping[str, Any]) -> str:
    """The assistant answer as the training data writes it: the four keys in order, indent 2."""
    return json.dumps({key: analysis[key] for key in ANALYSIS_KEYS}, indent=2, ensure_ascii=False)


@dataclass(frozen=True)
class ChatFormat:
    """How one model family wraps a single-turn exchange. Texts exclude BOS: tokenizers add it."""

    user_start: str
    user_end: str
    assistant_start: str
    assistant_end: str
    """Ends the answer; training appends it so the model learns to stop."""


CHAT_FORMATS: dict[str, ChatFormat] = {
    "gemma": ChatFormat(
        user_start="<start_of_turn>user\n",
        user_end="<end_of_turn>\n",
        assistant_start="<start_of_turn>model\n",
        assistant_end="<end_of_turn>",
    ),
    "llama3": ChatFormat(
        user_start="<|start_header_id|>user<|end_header_id|>\n\n",
        user_end="<|eot_id|>",
        assistant_start="<|start_header_id|>assistant<|end_header_id|>\n\n",
        assistant_end="<|eot_id|>",
    ),
}


def chat_format(name: str) -> ChatFormat:
    try:
        return CHAT_FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown chat format {name!r}; known: {', '.join(CHAT_FORMATS)}") from None


def render_chat_prompt(prompt: str, fmt: str = "gemma") -> str:
    """The model input up to where the answer starts (what serving feeds the model)."""
    f = chat_format(fmt)
    return f"{f.user_start}{prompt}{f.user_end}{f.assistant_start}"


def render_chat_completion(answer: str, fmt: str = "gemma") -> str:
    """The training target after `render_chat_prompt`: the answer and the turn end."""
    return f"{answer}{chat_format(fmt).assistant_end}"
