"""News analysis on top of the engine: the one entry point of the MCP server, the CLI, evaluation and workflows.

`complete(user_prompt)` is the single generation path (chat format, grammar-constrained greedy
decoding, schema validation). `analyze_item` cleans an item, cuts it the way the training data did,
renders the training prompt and fits it into the context budget. `analyze_newsletter` splits a
newsletter, analyzes its items together (the engine decodes them in parallel) and renders the report.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import schemas
from data.prompts import PROMPT_TEMPLATE, format_title, is_sponsored_item, parse_prompt, prepare_content, render_prompt
from inference.companies import organisations
from inference.engine import Engine, EngineConfig, EngineError, Generation
from inference.grammar import close_json_prefix, fill_missing, json_constraint
from inference.models import content_chars
from inference.relevance import (
    DEFAULT_RULE,
    HEAD_RULES,
    RULES,
    as_list,
    median,
    relevance_result,
    score_probe,
    serving_rule,
)
from inference.relevance_head import HeadInput, HeadScorer
from ingest.newsletter import Newsletter, split_newsletter
from ingest.report import render_markdown
from ingest.sanitize import clean_text

log = logging.getLogger(__name__)

MAX_ITEMS = 40
"""Items analyzed per newsletter; the rest are reported in `notes` (a 1 MB email must not run for an hour)."""

CONTENT_CHARS = 2000
"""Characters of an item's own text returned with its result (the report shows a few hundred)."""

TITLE_CHARS = 300
"""Longest title kept (training titles are under 200 characters); longer ones are cut and flagged."""


class ItemLike(Protocol):
    """What analyze_items needs of an item (ingest.newsletter.NewsItem fits)."""

    title: str
    content: str
    url: str | None
    is_sponsored: bool


@dataclass
class Item:
    title: str
    content: str
    url: str | None = None
    is_sponsored: bool = False


@dataclass
class Completion:
    """One model answer: the raw text, the validated analysis and what it cost."""

    raw: str
    analysis: dict[str, Any]
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    finish_reason: str = "stop"
    """"length" when the token budget cut the answer and it was closed (see grammar.close_json_prefix)."""
    relevance: dict[str, Any] | None = None
    """The score distribution (schemas' ArticleResult.relevance), when the engine could read it."""


@dataclass
class _Prepared:
    title: str
    url: str | None
    content: str
    """The item's text as given (cleaned), for the reader: the model may see less."""
    is_sponsored: bool
    truncated: bool
    prompt: list[int]
    """The chat prompt's tokens, as the context fit counted them (generation reuses them)."""
    head_input: HeadInput
    """What the relevance head reads: the whole (cleaned) text, not the cut the prompt shows."""


ProgressFn = Callable[[int, int, dict[str, Any], float], None]
"""on_item(done, total, result, seconds): called as each item finishes."""

Cancelled = Callable[[], bool] | None
"""Polled between decode steps: true stops the call and frees its slots (a client that cancelled)."""


class EngineLike(Protocol):
    """What the analyzer needs of an engine (`inference.engine.Engine`; tests pass a small fake)."""

    config: EngineConfig

    def prompt_tokens(self, user_prompt: str) -> list[int]: ...

    def generate(
        self,
        prompts: Sequence[str | list[int]],
        *,
        on_done: Callable[[int, Generation], None] | None = None,
        shared_prefix: str | None = None,
        cancelled: Callable[[], bool] | None = None,
        choices: Sequence[str | None] | None = None,
    ) -> list[Generation]: ...


def article_engine(config: EngineConfig | None = None, rule: str | None = None) -> Engine:
    """The llama.cpp engine constrained to the article schema (grammar, list-repeat and stop rules),
    reading the score distribution at the score position (`inference.relevance`)."""
    rule = rule or (config.relevance_rule if config else EngineConfig.relevance_rule)
    return Engine(config, json_constraint(schemas.load_schema("article_analysis"), score_probe(rule)))


def _runs_head_here(engine: EngineLike) -> bool:
    """A remote server's engine under a head rule: the head scores items in this process."""
    return getattr(engine, "scores_with_local_head", False) and engine.config.relevance_rule in HEAD_RULES


def _prompt_input(user_prompt: str) -> HeadInput:
    """What the head reads when only a prompt is given: the title and content it shows."""
    title, content = parse_prompt(user_prompt) or ("", user_prompt)
    return HeadInput(title, content)


class Analyzer:
    """Thread-safe (the engine serializes generations); loads the model on first use.

    `engine`: any EngineLike (default: `article_engine(config)`, the real llama.cpp one).
    `head`: the relevance head that writes the score (default: the one `config` asks for, when the
    analyzer builds its own engine; an engine passed in gets none unless one is passed too)."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        engine: EngineLike | None = None,
        max_items: int = MAX_ITEMS,
        head: HeadScorer | None = None,
    ):
        if engine is None:
            rule, scorer = serving_rule(config or EngineConfig())
            engine = article_engine(config, "greedy" if scorer else rule)
            head = head or scorer
        elif head is None and _runs_head_here(engine):
            head = serving_rule(engine.config)[1]
        self.engine = engine
        self.head = head
        self.config = self.engine.config
        rule = getattr(self.config, "relevance_rule", DEFAULT_RULE)
        self.rule = "head" if head else rule if rule in RULES else DEFAULT_RULE
        """The rule the written score comes from (reported in every result's `relevance.rule`)."""
        self.max_items = max_items
        self.content_chars = content_chars(getattr(self.config, "content_chars", None), self.config.lora_path)
        """How much of an item the prompt shows: as the adapter was trained (inference.models.content_chars)."""
        self._template_head = PROMPT_TEMPLATE[: PROMPT_TEMPLATE.index("{title}")]
        self._schema = schemas.load_schema("article_analysis")

    # --- the generation path -------------------------------------------------------------------

    def complete(self, user_prompt: str, head_input: HeadInput | None = None) -> Completion:
        """Answer one user prompt (e.g. evaluation's reference prompt) with a schema-valid analysis.

        `head_input`: what the relevance head reads (evaluation passes the item's whole text); None:
        the title and content shown in the prompt."""
        return self.complete_many([user_prompt], head_inputs=[head_input] if head_input else None)[0]

    def complete_many(
        self,
        user_prompts: Sequence[str | list[int]],
        on_done: Callable[[int, Completion], None] | None = None,
        cancelled: Cancelled = None,
        head_inputs: Sequence[HeadInput] | None = None,
    ):
        """`complete` for several prompts (user prompts, or chat-prompt tokens from `engine.prompt_tokens`),
        decoded in parallel; results in input order. `cancelled()` turning true stops it (EngineError).
        With a relevance head, `head_inputs` (one per prompt) are scored first and their scores written."""
        if self.head is not None and head_inputs is None and all(isinstance(p, str) for p in user_prompts):
            head_inputs = [_prompt_input(p) for p in user_prompts]  # type: ignore[arg-type]
        distributions = self._head_distributions(head_inputs, len(user_prompts))
        choices = [str(median(p)) for p in distributions] if distributions else None

        def finished(index: int, gen: Generation) -> None:
            if on_done:
                on_done(index, self._completion(gen, distributions[index] if distributions else None))

        gens = self.engine.generate(
            list(user_prompts),
            on_done=finished if on_done else None,
            shared_prefix=self._template_head,
            cancelled=cancelled,
            **({"choices": choices} if choices else {}),
        )
        return [self._completion(g, distributions[i] if distributions else None) for i, g in enumerate(gens)]

    def _head_distributions(self, inputs: Sequence[HeadInput] | None, n: int) -> list[list[float]] | None:
        if self.head is None or inputs is None:
            return None
        if len(inputs) != n:
            raise ValueError(f"{len(inputs)} head inputs for {n} prompts")
        return [list(map(float, row)) for row in self.head.probabilities(list(inputs))]

    def _completion(self, gen: Generation, distribution: list[float] | None = None) -> Completion:
        text = gen.text
        if gen.finish_reason == "length":
            log.warning("answer reached max_tokens=%d; closing it at its last complete value", self.config.max_tokens)
            text = close_json_prefix(text)
        try:
            analysis = fill_missing(json.loads(text), self._schema)
        except ValueError as exc:
            raise EngineError(f"the model's answer is not JSON ({exc}): {gen.text[:200]!r}") from exc
        for key, value in analysis.items():
            if isinstance(value, list):  # a small model repeats list items; the metrics count sets anyway
                analysis[key] = list(dict.fromkeys(value))
        analysis["company_names"], dropped = organisations(analysis["company_names"])
        if dropped:
            log.debug("company_names: dropped %s (not organisations)", dropped)
        if distribution is not None:
            written = median(distribution)
            if analysis["relevance_score"] != written:  # a server wrote its own (or the grammar refused: never seen)
                level = logging.WARNING if getattr(self.engine, "forces_choices", True) else logging.DEBUG
                log.log(
                    level,
                    "the answer wrote relevance %s; the head's %d is reported",
                    analysis["relevance_score"],
                    written,
                )
                analysis["relevance_score"] = written
            relevance = relevance_result(dict(zip(map(str, range(1, 11)), distribution, strict=True)), written, "head")
        else:
            read = RULES.get(self.rule)
            if gen.probe is not None and read is not None and not getattr(self.engine, "forces_choices", True):
                analysis["relevance_score"] = read(as_list(gen.probe))  # a server wrote its greedy score
            relevance = relevance_result(gen.probe, analysis["relevance_score"], self.rule)
        problems = schemas.errors("article_analysis", analysis)
        if problems:
            raise EngineError(f"the model's answer breaks the schema: {'; '.join(problems)}")
        return Completion(
            raw=gen.text,
            analysis=analysis,
            prompt_tokens=gen.prompt_tokens,
            completion_tokens=gen.completion_tokens,
            seconds=gen.seconds,
            finish_reason=gen.finish_reason,
            relevance=relevance,
        )

    # --- items ---------------------------------------------------------------------------------

    def analyze_item(
        self,
        title: str,
        content: str,
        url: str | None = None,
        is_sponsored: bool = False,
        cancelled: Cancelled = None,
    ) -> dict:
        """An ArticleResult dict for one article as a caller gave it (raw text: cleaned here, once).

        Raises ValueError when title and content are both empty."""
        url = (clean_text(url) or None) if url else None
        item = Item(clean_text(title or ""), clean_text(content or ""), url, bool(is_sponsored))
        result = self.analyze_items([item], cancelled=cancelled)[0]
        schemas.validate("article_result", result)
        return result

    def analyze_items(
        self, items: Sequence[ItemLike], on_item: ProgressFn | None = None, cancelled: Cancelled = None
    ) -> list[dict[str, Any]]:
        """ArticleResult dicts for several clean items (ingest's, or `analyze_item`'s), decoded in
        parallel; results in input order."""
        prepared = [self._prepare(item) for item in items]
        started = time.perf_counter()
        done = [0]

        def finished(index: int, completion: Completion) -> None:
            done[0] += 1
            if on_item:
                on_item(done[0], len(prepared), self._result(prepared[index], completion), completion.seconds)

        completions = self.complete_many(
            [p.prompt for p in prepared],
            on_done=finished if on_item else None,
            cancelled=cancelled,
            head_inputs=[p.head_input for p in prepared],
        )
        log.info("%d item(s) analyzed in %.1f s", len(prepared), time.perf_counter() - started)
        return [self._result(p, c) for p, c in zip(prepared, completions, strict=True)]

    def _result(self, item: _Prepared, completion: Completion) -> dict[str, Any]:
        """The ArticleResult dict (its analysis part was validated in `_completion`; the report
        holding it is validated once as a whole)."""
        return {
            "title": item.title,
            "url": item.url,
            "content": item.content,
            "is_sponsored": item.is_sponsored,
            "truncated": item.truncated,
            "complete": completion.finish_reason != "length",
            "incomplete_reason": "max_tokens" if completion.finish_reason == "length" else None,
            **completion.analysis,
            "relevance": completion.relevance,
        }

    def _prepare(self, item: ItemLike) -> _Prepared:
        """Cut as the training data did, render the training prompt, fit the context budget (tokenized once)."""
        title, content = (item.title or "").strip(), (item.content or "").strip()
        if not title and not content:
            raise ValueError("nothing to analyze: the title and the content are both empty (after cleaning)")
        url = item.url or None
        truncated = len(title) > TITLE_CHARS
        title = title[:TITLE_CHARS].rstrip()
        body, cut = prepare_content(content, bool(item.is_sponsored), self.content_chars)
        shown_title = format_title(title)
        tokens, squeezed = self._fit(shown_title, body)
        shown = content[:CONTENT_CHARS]
        head_input = HeadInput(shown_title, content, is_sponsored_item(title, item.is_sponsored))
        return _Prepared(title, url, shown, bool(item.is_sponsored), truncated or cut or squeezed, tokens, head_input)

    def _fit(self, title: str, body: str) -> tuple[list[int], bool]:
        """Cut `body` until the chat prompt leaves room for the answer in the context; (tokens, was_cut)."""
        budget = self.config.n_ctx - self.config.max_tokens
        limit = budget * 8  # a cheap first cut before tokenizing: text this long never fits in practice
        body, cut = body[:limit], len(body) > limit
        while True:
            tokens = self.engine.prompt_tokens(render_prompt(title, body))
            n = len(tokens)
            if n <= budget:
                return tokens, cut
            if not body:
                raise ValueError(f"the title alone needs {n} tokens; the context allows {budget}")
            keep = max(0, int(len(body) * budget / n) - 16)
            body, cut = body[:keep].rstrip(), True

    # --- newsletters ---------------------------------------------------------------------------

    def analyze_newsletter(
        self,
        text: str,
        fmt: str = "auto",
        source: str | None = None,
        on_item: ProgressFn | None = None,
        cancelled: Cancelled = None,
    ) -> dict[str, Any]:
        """A NewsletterReport dict: the newsletter's items (at most `max_items`), analyzed, with a Markdown report."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        if not text or not text.strip():
            raise ValueError("nothing to analyze: the newsletter text is empty")
        return self.analyze_split(split_newsletter(text, fmt), source, on_item, cancelled)

    def analyze_split(
        self,
        newsletter: Newsletter,
        source: str | None = None,
        on_item: ProgressFn | None = None,
        cancelled: Cancelled = None,
    ) -> dict[str, Any]:
        """`analyze_newsletter` for a newsletter already split (the workflow knows its email's format and headers)."""
        notes: list[str] = []
        items = [i for i in newsletter.items if (i.title or "").strip() or (i.content or "").strip()]
        if len(items) < len(newsletter.items):
            notes.append(f"{len(newsletter.items) - len(items)} item(s) without text were skipped")
        if not newsletter.items:
            notes.append("no items were found in the newsletter")
        if len(items) > self.max_items:
            notes.append(f"{len(items)} items found; analyzed the first {self.max_items} (the per-newsletter limit)")
            items = items[: self.max_items]
        results = self.analyze_items(items, on_item=on_item, cancelled=cancelled) if items else []
        report: dict[str, Any] = {
            "source": clean_text(source) if source else newsletter.source,
            "subject": newsletter.subject,
            "date": newsletter.date,
            "format": newsletter.format,
            "items_found": len(newsletter.items),
            "notes": notes,
            "items": results,
            "markdown": "",
        }
        report["markdown"] = render_markdown(report)
        schemas.validate("newsletter_report", report)
        return report
