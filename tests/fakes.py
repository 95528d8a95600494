"""A stand-in for the llama.cpp engine, for tests of everything around the model.

`FakeEngine` has the interface `inference.analyzer.Analyzer` uses (the `EngineLike` protocol) and
answers instantly with schema-valid JSON made from the prompt, so protocol, CLI, report and workflow
tests run the real analyzer, server and client code without loading a model. Answer checks use the
real model. Like simonw/llm's mock model, it is selected the way users select an engine:
`news-enhancer serve --engine tests.fakes:FakeEngine` (or `Analyzer(engine=FakeEngine())`).

Prompts that contain `FAKE_FAIL` make it raise an EngineError; `FAKE_CUT` gives an answer cut off at
max_tokens (finish_reason "length"), as a real model's can be; `FAKE_SLOW` makes it take up to 30 s,
polling `cancelled()` (it logs "fake engine: cancelled" when it was).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Sequence

from inference.engine import EngineConfig, EngineError, Generation

_TOKEN = re.compile(r"\w+|[^\w\s]")
_TITLE = re.compile(r"^Title: (.*)$", re.MULTILINE)


class FakeEngine:
    def __init__(self, config: EngineConfig | None = None):
        self.config = config or EngineConfig(chat_format="gemma")
        self.loaded = False
        self.load_seconds: float | None = None
        self.model_path = "fake"
        self.calls: list[list[str]] = []
        """The user prompts of every generate() call (tests inspect batching)."""
        self._texts: dict[tuple[int, ...], str] = {}

    def load(self) -> FakeEngine:
        self.loaded, self.load_seconds = True, 0.0
        return self

    def close(self) -> None:
        self.loaded = False

    def prompt_tokens(self, user_prompt: str) -> list[int]:
        """One token per word or punctuation mark (the context fit counts these)."""
        tokens = [2, *(int(hashlib.sha1(w.encode()).hexdigest()[:6], 16) for w in _TOKEN.findall(user_prompt))]
        self._texts[tuple(tokens)] = user_prompt
        return tokens

    def generate(
        self,
        prompts: Sequence[str | list[int]],
        *,
        on_done: Callable[[int, Generation], None] | None = None,
        shared_prefix: str | None = None,
        grammar: str = "fast",
        max_tokens: int | None = None,
        cancelled: Callable[[], bool] | None = None,
        choices: Sequence[str | None] | None = None,
    ) -> list[Generation]:
        """`choices[i]`: the score prompt i's answer writes (as the real engine's probe writes it)."""
        self.load()
        texts = [p if isinstance(p, str) else self._texts.get(tuple(p), "") for p in prompts]
        self.calls.append(texts)
        out = []
        if any("FAKE_SLOW" in t for t in texts):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (cancelled and cancelled()):
                time.sleep(0.05)
        for index, text in enumerate(texts):
            if cancelled and cancelled():
                logging.getLogger(__name__).warning("fake engine: cancelled")
                raise EngineError("the generation was cancelled")
            if "FAKE_FAIL" in text:
                raise EngineError("the fake engine was told to fail")
            gen = self._answer(text, choices[index] if choices else None)
            out.append(gen)
            if on_done:
                on_done(index, gen)
        return out

    def _answer(self, prompt: str, choice: str | None = None) -> Generation:
        started = time.perf_counter()
        match = _TITLE.search(prompt)
        title = match.group(1).strip("* ") if match else ""
        digest = int(hashlib.sha256(prompt.encode()).hexdigest(), 16)
        words = [w for w in re.findall(r"[A-Za-z][A-Za-z0-9-]{2,}", title)][:3]
        answer = {
            "relevance_score": int(choice) if choice else 1 + digest % 10,
            "summary": "",
            "key_insights": [w.lower() for w in words] or ["news"],
            "company_names": [w for w in words if w[:1].isupper()][:1],
        }
        text = json.dumps(answer, indent=2)
        reason = "stop"
        if "FAKE_CUT" in prompt:
            text, reason = text[: text.index('"summary"')], "length"
        return Generation(
            text=text,
            prompt_tokens=len(_TOKEN.findall(prompt)) + 1,
            completion_tokens=len(_TOKEN.findall(text)),
            seconds=time.perf_counter() - started,
            prompt_seconds=0.0,
            finish_reason=reason,
        )
