"""The remote engine: the analyzer's engine interface over an OpenAI-compatible completions server.

For a team that runs one inference service (llama.cpp's `llama-server`, vLLM, or llama-cpp-python's
own `python -m llama_cpp.server`) and thin MCP servers pointing at it. `RemoteEngine(config)` has the
interface `inference.analyzer.Analyzer` uses (`prompt_tokens`, `generate`, `load`, `close`), so the
analyzer, the MCP tools, `analyze`, evaluation and the workflow run unchanged on top of it.

What it sends: the same rendered chat prompt as the local engine (`data.prompts.render_chat_prompt`,
the config's chat format) as raw completion text to `/v1/completions`, greedy (temperature 0, no
repetition penalty), `max_tokens` from the config, and the article schema as the server's
structured-output parameter (`STRUCTURED`: by default the project's own GBNF grammar, which both
llama.cpp servers take; vLLM takes the JSON Schema). The server's `finish_reason` becomes "stop" or
"length"; the analyzer then closes and validates the answer exactly as for the local engine.

Tokens: `prompt_tokens` asks the server's tokenizer (`/extras/tokenize` on llama_cpp.server,
`/tokenize` on llama-server and vLLM), so the analyzer's context fit counts the server's own tokens.
A server with neither gets an over-estimate (one token per 2 UTF-8 bytes; real text averages about
4), logged once: the fit then cuts earlier than needed, never too late.

Faults: connection refused or reset, timeouts, HTTP 429 and 5xx are retried with exponential backoff
(`Retry-After` honoured), `ServerSettings.retries` times; everything else (4xx, an answer that is not
JSON or has no completion) is an `EngineError` at once. Messages name the server by scheme, host and
path only; the API key (environment only, `API_KEY_ENV`) never appears in a message or a log line.

Relevance: the server writes its own greedy score. Under a distribution rule (`median`, `mean`, or
`auto` where no relevance head applies) the answer is asked with `SCORE_TOP` log-probabilities per
token; at the score position they give P(1..9), and one more one-token request (the prompt, the
answer up to the score and "1") gives P("0" | "1"), so P(10) and P(1) are exact as in the local
probe (`inference.relevance.from_top_logprobs`). The analyzer then reports the rule's score and the
distribution. A server that returns no log-probabilities gets `relevance: null` (warned once).

Batching: the prompts of one `generate` call (a newsletter's items) go out concurrently, at most
`config.n_parallel` at a time, so the server's continuous batching does the work; `on_done` is called
in the caller's thread as each answer arrives.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import schemas
from data.prompts import chat_format, render_chat_prompt
from inference.engine import EngineConfig, EngineError, Generation
from inference.grammar import json_constraint
from inference.relevance import SCORE_POSITION, from_top_logprobs

log = logging.getLogger(__name__)

API_KEY_ENV = "NEWS_ENHANCER_API_KEY"
"""The only place the API key comes from (never a flag: flags show in process lists and shell history)."""

STRUCTURED: dict[str, str] = {
    "grammar": "the project's GBNF grammar in `grammar` (llama-server, llama_cpp.server): the local constraint",
    "json_schema": "the JSON Schema in `json_schema` (llama-server, converted by its own grammar builder)",
    "response_format": 'OpenAI\'s `response_format: {"type": "json_schema", ...}` (vLLM, other OpenAI servers)',
    "structured_outputs": 'vLLM\'s `structured_outputs: {"json": schema}` (the only form from vLLM 0.12 on)',
    "guided_json": "vLLM < 0.12's `guided_json` (removed in vLLM 0.12)",
}
"""How the article schema is sent (--server-structured): mode -> what it sends, to which servers."""

LLAMA_CPP_MODES = ("grammar", "json_schema")
"""Modes for llama.cpp servers, which also get `repeat_penalty: 1.0` (llama_cpp.server defaults to 1.1)."""

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
"""HTTP statuses worth another attempt: busy (429), loading or overloaded (503), gateways, timeouts."""

SCORE_TOP = 20
"""Top log-probabilities asked where the score distribution is read: enough that all ten digits are
among them at the score position (the grammar allows only digits there; the raw logits do not)."""

MAX_BACKOFF = 30.0
"""Seconds: the longest wait between two attempts (also caps a server's Retry-After)."""

FINISH_REASONS = {"stop": "stop", "eos": "stop", "stop_sequence": "stop", "end_turn": "stop", "length": "length"}
"""Server finish_reason -> the engine's ("stop": the answer ended; "length": max_tokens reached)."""

PROMPT_MEMORY = 4096
"""Token lists from `prompt_tokens` remembered with their prompt (the analyzer hands tokens back)."""

BYTES_PER_TOKEN = 2
"""The over-estimate used without a tokenize endpoint (Gemma averages about 4 bytes per token)."""

CONTROL_MARKERS = ("<bos>", "<eos>", "<pad>", "<|begin_of_text|>", "<|end_of_text|>")
"""Control tokens broken up inside a user prompt, besides those of the chat format's turns."""
_CONTROL = re.compile(r"<[^<>\s]+>")


@dataclass(frozen=True)
class ServerSettings:
    """Where the server is and how to talk to it (the --server-* options)."""

    url: str
    """The server's OpenAI base URL (http://host:8080/v1) or its root (http://host:8080)."""
    model: str | None = None
    """The `model` field; None -> the first model the server lists (vLLM needs its served name)."""
    structured: str = "grammar"
    """How the schema is sent: a key of STRUCTURED."""
    timeout: float = 120.0
    """Seconds to wait for one answer (a queued request waits for the ones before it)."""
    retries: int = 3
    """Further attempts after a transient failure (connection, timeout, 429, 5xx)."""
    backoff: float = 0.5
    """Seconds before the first retry; doubled for each next one (at most MAX_BACKOFF)."""
    logprobs: int = 0
    """Top log-probabilities asked per answer token (0: none; slow on llama_cpp.server)."""
    api_key: str | None = field(default=None, repr=False)
    """Bearer token, from the environment (API_KEY_ENV) only; never logged."""

    def __post_init__(self) -> None:
        if not self.url:
            raise ValueError("--backend openai needs --server-url (or NEWS_ENHANCER_SERVER_URL)")
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"--server-url must be an http(s) URL like http://host:8080/v1, not {_public(self.url)}")
        if parts.username or parts.password or parts.query:
            raise ValueError(
                f"--server-url takes no credentials or query ({_public(self.url)}): "
                f"put the API key in the environment variable {API_KEY_ENV}"
            )
        if self.structured not in STRUCTURED:
            raise ValueError(f"--server-structured must be one of {', '.join(STRUCTURED)}, not {self.structured!r}")
        if self.timeout <= 0 or self.retries < 0 or self.backoff < 0 or self.logprobs < 0:
            raise ValueError("--server-timeout must be positive; --server-retries and --server-logprobs at least 0")

    @property
    def base(self) -> str:
        """The OpenAI base, ending in /v1."""
        url = self.url.rstrip("/")
        return url if url.endswith("/v1") else url + "/v1"

    @property
    def root(self) -> str:
        """The server's root (where llama-server's /tokenize and llama_cpp.server's /extras live)."""
        return self.base[: -len("/v1")]

    @classmethod
    def from_env(cls, **overrides: Any) -> ServerSettings:
        """Settings from NEWS_ENHANCER_SERVER_* variables (what `--engine inference.remote:RemoteEngine` gets)."""
        env = os.environ
        values: dict[str, Any] = {
            "url": env.get("NEWS_ENHANCER_SERVER_URL", ""),
            "model": env.get("NEWS_ENHANCER_SERVER_MODEL") or None,
            "structured": env.get("NEWS_ENHANCER_SERVER_STRUCTURED") or "grammar",
        }
        for name, kind in (("timeout", float), ("retries", int), ("logprobs", int)):
            raw = env.get(f"NEWS_ENHANCER_SERVER_{name.upper()}")
            if raw:
                values[name] = kind(raw)
        values.update(overrides)
        values.setdefault("api_key", env.get(API_KEY_ENV) or None)
        return cls(**values)


@dataclass
class TokenLogprob:
    """One answer token as the server reported it."""

    token: str
    logprob: float | None
    top: dict[str, float]
    """The server's most likely tokens at this position (token text -> log-probability)."""


@dataclass
class RemoteGeneration(Generation):
    """A Generation from the server: `tokens` stays empty (servers return text), `probe` None
    (the local engine's score probe reads the logits as it decodes; a server returns no logits)."""

    logprobs: list[TokenLogprob] | None = None
    """Per answer token, when asked (ServerSettings.logprobs) and returned by the server."""
    server_seconds: float | None = None
    """The server's own prompt + answer time (llama-server's `timings`), when it reports it."""


class ServerError(EngineError):
    """The server answered with a status that no retry can fix (or ran out of retries)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class RemoteEngine:
    """EngineLike over an OpenAI-compatible server. Thread-safe; no model in this process."""

    scores_with_local_head = True
    """With `--relevance-rule head` or `auto` the analyzer scores items with the local relevance head
    (its base model ships with every install) and reports that score instead of the server's."""
    forces_choices = False
    """The server writes its own score; the analyzer reports the head's or the rule's in its place."""

    def __init__(self, config: EngineConfig | None = None, settings: ServerSettings | None = None):
        self.config = (config or EngineConfig()).resolved()
        self.settings = settings or ServerSettings.from_env()
        self.server_model = self.settings.model
        self._schema = schemas.load_schema("article_analysis")
        self._grammar = json_constraint(self._schema).grammar
        self._prompts: OrderedDict[tuple[int, ...], str] = OrderedDict()
        self._lock = threading.Lock()
        self._tokenizer: str | None = None
        """"extras" (/extras/tokenize), "tokenize" (/tokenize) or "approximate"."""
        self._loaded = False
        self.load_seconds: float | None = None
        self.model_path: str | None = None
        """What serves the answers, for logs and benchmarks: the server (and model name)."""
        fmt = chat_format(self.config.chat_format)
        turns = fmt.user_start + fmt.user_end + fmt.assistant_start + fmt.assistant_end
        self._markers = sorted(set(_CONTROL.findall(turns)) | set(CONTROL_MARKERS))
        self._reads_scores = getattr(self.config, "relevance_rule", "greedy") != "greedy"
        """Read the score distribution from log-probabilities where no choices (head scores) are given."""
        self._warned_scores = False

    # --- connection ----------------------------------------------------------------------------

    def load(self) -> RemoteEngine:
        """Reach the server (idempotent): its model list and which tokenizer endpoint it has.

        Raises EngineError when it cannot be reached after the retries."""
        if self._loaded:
            return self
        with self._lock:
            if not self._loaded:
                started = time.perf_counter()
                self._connect()
                self.load_seconds = time.perf_counter() - started
                self._loaded = True
                rule = getattr(self.config, "relevance_rule", "greedy")
                if rule != "greedy":
                    log.info(
                        "the server writes its greedy score; the relevance head's score is reported where it "
                        "applies, else the %s rule's over the server's log-probabilities",
                        "median" if rule in ("auto", "head") else rule,
                    )
                log.info(
                    "inference server %s reached in %.2f s (model %s, tokens from %s)",
                    _public(self.settings.base),
                    self.load_seconds,
                    self.server_model or "unnamed",
                    self._tokenizer,
                )
        return self

    @property
    def loaded(self) -> bool:
        return self._loaded

    def close(self) -> None:
        """Nothing to free (no connection is kept between requests); the next use reconnects."""
        self._loaded = False

    def _connect(self) -> None:
        try:
            listing = self._call("GET", self.settings.base + "/models", None, "the model list")
        except ServerError as exc:
            if exc.status not in (404, 405):
                raise
            listing = {}  # a server without /v1/models still completes
        ids = [m.get("id") for m in listing.get("data", []) if isinstance(m, dict)] if isinstance(listing, dict) else []
        if self.server_model is None and ids:
            self.server_model = ids[0]
        elif self.server_model is not None and ids and self.server_model not in ids:
            log.warning("--server-model %s is not among the server's models (%s)", self.server_model, ", ".join(ids))
        self.model_path = f"{_public(self.settings.base)} ({self.server_model or 'default model'})"
        self._tokenizer = self._find_tokenizer()

    def _find_tokenizer(self) -> str:
        for kind in ("extras", "tokenize"):
            try:
                tokens = self._server_tokens(kind, "ok")
            except ServerError as exc:
                if exc.status in (404, 405, 422, 400, 501):
                    continue
                raise
            if tokens:
                return kind
        log.warning(
            "the inference server %s has no tokenize endpoint: prompt tokens are over-estimated "
            "(1 per %d bytes), so long items are cut earlier than the context needs",
            _public(self.settings.root),
            BYTES_PER_TOKEN,
        )
        return "approximate"

    # --- tokens --------------------------------------------------------------------------------

    def prompt_tokens(self, user_prompt: str) -> list[int]:
        """The tokens the server reads for `user_prompt` in the config's chat turns (BOS included)."""
        self.load()
        text = self._render(user_prompt)
        if self._tokenizer == "approximate":
            data = text.encode("utf-8")
            step = BYTES_PER_TOKEN
            tokens = [int.from_bytes(data[i : i + step], "big") for i in range(0, len(data), step)]
        else:
            tokens = self._server_tokens(self._tokenizer or "extras", text)
        with self._lock:
            self._prompts[tuple(tokens)] = user_prompt
            self._prompts.move_to_end(tuple(tokens))
            while len(self._prompts) > PROMPT_MEMORY:
                self._prompts.popitem(last=False)
        return tokens

    def _server_tokens(self, kind: str, text: str) -> list[int]:
        model = {"model": self.server_model} if self.server_model else {}
        if kind == "extras":
            url, body = self.settings.root + "/extras/tokenize", {"input": text, **model}
        else:  # llama-server reads content/add_special/parse_special, vLLM prompt/add_special_tokens
            url = self.settings.root + "/tokenize"
            body = {"content": text, "add_special": True, "parse_special": True, **model}
            body.update(prompt=text, add_special_tokens=True)
        answer = self._call("POST", url, body, "tokenize", retry=True)
        tokens = answer.get("tokens") if isinstance(answer, dict) else None
        if not isinstance(tokens, list):
            raise ServerError(f"the inference server's {url.rsplit('/', 1)[-1]} answer has no token list")
        return [t["id"] if isinstance(t, dict) else int(t) for t in tokens]

    def _render(self, user_prompt: str) -> str:
        """The chat prompt text. Servers read control tokens anywhere in the text; the local engine
        reads the user's text without them, so a marker inside the text is broken up (a zero-width space)."""
        for marker in self._markers:
            if marker in user_prompt:
                user_prompt = user_prompt.replace(marker, marker[0] + "\u200b" + marker[1:])
        return render_chat_prompt(user_prompt, self.config.chat_format)

    def _prompt_text(self, prompt: str | list[int]) -> str | list[int]:
        if isinstance(prompt, str):
            return self._render(prompt)
        with self._lock:
            user_prompt = self._prompts.get(tuple(prompt))
        if user_prompt is not None:
            return self._render(user_prompt)
        if self._tokenizer == "approximate":
            raise EngineError("token prompts need a server with a tokenize endpoint (or come from prompt_tokens)")
        return list(prompt)  # tokens we did not make: sent as token ids (llama-server and vLLM take them)

    # --- generation ----------------------------------------------------------------------------

    def generate(
        self,
        prompts: Sequence[str | list[int]],
        *,
        on_done: Callable[[int, Generation], None] | None = None,
        shared_prefix: str | None = None,
        max_tokens: int | None = None,
        grammar: str = "fast",
        cancelled: Callable[[], bool] | None = None,
        choices: Sequence[str | None] | None = None,
    ) -> list[Generation]:
        """Answer each prompt (user prompt text, or tokens from `prompt_tokens`); results in prompt order.
        `choices` (the relevance head's scores) cannot be forced on a server: the analyzer reports them
        in place of the score the server wrote.
        When `cancelled()` turns true, what has not started is dropped and EngineError is raised.

        At most `config.n_parallel` requests are in flight; `on_done(i, gen)` runs in this thread as
        each answer arrives. The first failure cancels what has not started and is raised.
        `shared_prefix` is unused: servers find shared prefixes themselves (llama-server's prompt cache,
        vLLM's prefix caching). `grammar="none"` sends no schema (benchmarks); any other value sends it."""
        self.load()
        budget = max_tokens or self.config.max_tokens
        scores = self._reads_scores and choices is None and grammar != "none"
        bodies = [self._body(self._prompt_text(p), budget, grammar != "none", scores) for p in prompts]
        results: list[Generation | None] = [None] * len(bodies)
        abort = threading.Event()
        workers = max(1, min(self.config.n_parallel, len(bodies)))
        pool = ThreadPoolExecutor(workers, thread_name_prefix="remote-engine")
        try:
            running: dict[Future, int] = {
                pool.submit(self._complete, b, abort, scores): i for i, b in enumerate(bodies)
            }
            while running:
                done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                if cancelled and cancelled():
                    raise EngineError("the generation was cancelled")
                for future in sorted(done, key=running.get):
                    index = running.pop(future)
                    results[index] = gen = future.result()
                    if on_done:
                        on_done(index, gen)
        except BaseException:
            abort.set()  # requests in flight end on their own (no retries after this)
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return [r for r in results if r is not None]

    def _body(
        self, prompt: str | list[int], budget: int, constrained: bool = True, scores: bool = False
    ) -> dict[str, Any]:
        mode = self.settings.structured if constrained else None
        body: dict[str, Any] = {
            "prompt": prompt,
            "max_tokens": budget,
            "temperature": 0.0,
            "top_p": 1.0,
            "n": 1,
            "stream": False,
            "seed": self.config.seed,
        }
        if self.server_model:
            body["model"] = self.server_model
        if mode == "grammar":
            body["grammar"] = self._grammar
        elif mode == "json_schema":
            body["json_schema"] = self._schema
        elif mode == "response_format":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "article_analysis", "schema": self._schema, "strict": True},
            }
        elif mode == "structured_outputs":
            body["structured_outputs"] = {"json": self._schema}
        elif mode == "guided_json":
            body["guided_json"] = self._schema
        llama_cpp = self.settings.structured in LLAMA_CPP_MODES
        if llama_cpp:
            body["repeat_penalty"] = 1.0  # llama_cpp.server's default (1.1) would change greedy answers
        top = max(self.settings.logprobs, SCORE_TOP if scores else 0)
        if top:
            body["logprobs"] = top
            if llama_cpp:
                body["n_probs"] = top  # what llama-server's /v1/completions reads
        return body

    def _complete(self, body: dict[str, Any], abort: threading.Event, scores: bool = False) -> RemoteGeneration:
        started = time.perf_counter()
        try:
            answer = self._call("POST", self.settings.base + "/completions", body, "completion", abort=abort)
        except ServerError as exc:
            if not scores or self.settings.logprobs or not _refuses_logprobs(exc):
                raise
            self._reads_scores = scores = False  # e.g. llama_cpp.server without --logits_all: ask no more
            self._warn_scores("refused log-probabilities")
            body = {k: v for k, v in body.items() if k not in ("logprobs", "n_probs")}
            answer = self._call("POST", self.settings.base + "/completions", body, "completion", abort=abort)
        seconds = time.perf_counter() - started
        choice = _first_choice(answer)
        text = choice.get("text")
        if not isinstance(text, str):
            raise EngineError(f"the inference server's completion has no text: {_excerpt(json.dumps(choice))}")
        reason = choice.get("finish_reason")
        if reason not in FINISH_REASONS:
            raise EngineError(f"the inference server ended the answer with finish_reason {reason!r}")
        usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
        timings = answer.get("timings") if isinstance(answer.get("timings"), dict) else {}
        prompt_ms, predicted_ms = timings.get("prompt_ms"), timings.get("predicted_ms")
        prompt = body["prompt"]
        logprobs = _token_logprobs(choice.get("logprobs"))
        return RemoteGeneration(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens") or (len(prompt) if isinstance(prompt, list) else 0)),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            seconds=seconds,
            prompt_seconds=float(prompt_ms) / 1000 if isinstance(prompt_ms, (int, float)) else 0.0,
            finish_reason=FINISH_REASONS[reason],
            logprobs=logprobs,
            server_seconds=(prompt_ms + predicted_ms) / 1000
            if isinstance(prompt_ms, (int, float)) and isinstance(predicted_ms, (int, float))
            else None,
            probe=self._score_distribution(body, logprobs, abort) if scores else None,
        )

    def _score_distribution(
        self, body: dict[str, Any], logprobs: list[TokenLogprob] | None, abort: threading.Event
    ) -> dict[str, float] | None:
        """P(1..10) at the answer's score position, or None (warned once) where the server gives none."""
        found = _score_position(logprobs)
        if found is None or not isinstance(body["prompt"], str):
            self._warn_scores("returned no log-probabilities at the score" if found is None else "got token ids")
            return None
        prefix, first = found
        after_one = None
        if any(token.strip() == "1" for token in first):  # P("0" | "1"): one more token, no grammar
            probe = {k: v for k, v in body.items() if k not in STRUCTURED}
            probe.update(prompt=body["prompt"] + prefix + "1", max_tokens=1)
            answer = self._call("POST", self.settings.base + "/completions", probe, "score probe", abort=abort)
            tokens = _token_logprobs(_first_choice(answer).get("logprobs")) or []
            if not tokens:
                self._warn_scores("returned no log-probabilities after a written 1")
                return None
            after_one = _with_chosen(tokens[0])
        distribution = from_top_logprobs(first, after_one)
        if distribution is None:
            self._warn_scores("listed no digit among the top log-probabilities at the score")
        return distribution

    def _warn_scores(self, why: str) -> None:
        if not self._warned_scores:
            self._warned_scores = True
            log.warning(
                "the inference server %s %s: relevance is null and the server's own greedy score is reported "
                "(llama_cpp.server needs --logits_all true)",
                _public(self.settings.base),
                why,
            )

    # --- HTTP ----------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        url: str,
        body: Mapping[str, Any] | None,
        what: str,
        *,
        retry: bool = True,
        abort: threading.Event | None = None,
    ) -> Any:
        """One request with retries for the transient failures; the parsed JSON answer."""
        settings = self.settings
        data = json.dumps(body, ensure_ascii=False).encode("utf-8") if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        where = _public(url)
        attempt = 0
        while True:
            wait_for: float | None = None
            try:
                request = urllib.request.Request(url, data=data, headers=headers, method=method)
                with _OPENER.open(request, timeout=settings.timeout) as response:
                    raw = response.read()
                break
            except urllib.error.HTTPError as exc:
                detail = _error_detail(exc)
                if exc.code in (401, 403):
                    raise ServerError(
                        f"the inference server {where} refused the request (HTTP {exc.code}: {detail}); "
                        f"set its API key in the environment variable {API_KEY_ENV}",
                        exc.code,
                    ) from None
                if exc.code not in RETRY_STATUS or _LOGPROBS.search(detail):  # a refusal is no transient fault
                    message = f"the inference server {where} answered HTTP {exc.code}: {detail}"
                    raise ServerError(message, exc.code) from None
                problem, status = f"HTTP {exc.code}: {detail}", exc.code
                wait_for = _retry_after(exc.headers.get("Retry-After"))
            except TimeoutError:
                problem, status = f"no answer within {settings.timeout:g} s", None
            except urllib.error.URLError as exc:
                problem, status = _reason(exc.reason), None
            except (OSError, http.client.HTTPException) as exc:
                problem, status = _reason(exc), None
            if not retry or attempt >= settings.retries or (abort is not None and abort.is_set()):
                attempts = f"{attempt + 1} attempt{'s' if attempt else ''}"
                raise ServerError(f"the inference server {where} failed ({what}, {attempts}): {problem}", status)
            delay = wait_for if wait_for is not None else min(settings.backoff * 2**attempt, MAX_BACKOFF)
            log.warning("inference server %s: %s; retrying in %.1f s (%s)", where, problem, delay, what)
            if abort is not None:
                if abort.wait(delay):
                    raise ServerError(f"the inference server {where} failed ({what}): {problem}", status)
            else:
                time.sleep(delay)
            attempt += 1
        try:
            return json.loads(raw)
        except ValueError:
            raise ServerError(
                f"the inference server {where} answered with invalid JSON ({what}): {_excerpt(raw)}"
            ) from None


class _NoProxyForLoopback(urllib.request.ProxyHandler):
    """The environment's proxies, except for loopback servers (a proxy cannot reach this machine's)."""

    def proxy_open(self, req, proxy, type):
        host = (req.host or "").rsplit(":", 1)[0].strip("[]")
        if host in ("127.0.0.1", "localhost", "::1"):
            return None
        return super().proxy_open(req, proxy, type)


_OPENER = urllib.request.build_opener(_NoProxyForLoopback())


def _first_choice(answer: Any) -> dict[str, Any]:
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise EngineError(f"the inference server's answer has no completion choices: {_excerpt(json.dumps(answer))}")
    return choices[0]


def _token_logprobs(raw: Any) -> list[TokenLogprob] | None:
    """The answer's token log-probabilities in either format servers use, or None.

    OpenAI's completions format (llama_cpp.server, vLLM): `tokens`, `token_logprobs`, `top_logprobs`
    (a dict per token). The chat-style format (llama-server): `content`, a list of
    `{token, logprob, top_logprobs: [{token, logprob}]}`."""
    if not isinstance(raw, dict):
        return None
    if isinstance(raw.get("tokens"), list):
        tops = raw.get("top_logprobs") or [None] * len(raw["tokens"])
        values = raw.get("token_logprobs") or [None] * len(raw["tokens"])
        return [
            TokenLogprob(str(token), value, dict(top) if isinstance(top, dict) else {})
            for token, value, top in zip(raw["tokens"], values, tops, strict=False)
        ]
    if isinstance(raw.get("content"), list):
        return [
            TokenLogprob(
                str(entry.get("token", "")),
                entry.get("logprob"),
                {str(t.get("token", "")): t.get("logprob") for t in entry.get("top_logprobs") or [] if _is_dict(t)},
            )
            for entry in raw["content"]
            if isinstance(entry, dict)
        ]
    return None


_LOGPROBS = re.compile(r"logprob|logits_all", re.IGNORECASE)


def _refuses_logprobs(exc: ServerError) -> bool:
    """The server's answer says it cannot return log-probabilities (llama_cpp.server: `logits_all`)."""
    return exc.status is not None and bool(_LOGPROBS.search(str(exc)))


def _score_position(logprobs: list[TokenLogprob] | None) -> tuple[str, dict[str, float]] | None:
    """(the answer text before the score's first digit, the top log-probabilities there), or None."""
    text = ""
    for entry in logprobs or []:
        stripped = entry.token.lstrip()
        lead = entry.token[: len(entry.token) - len(stripped)]
        if stripped[:1].isdigit() and SCORE_POSITION.search(text + lead):
            return text + lead, _with_chosen(entry)
        text += entry.token
    return None


def _with_chosen(entry: TokenLogprob) -> dict[str, float]:
    """The top log-probabilities, the chosen token included (a server may list it only as the token)."""
    top = {token: value for token, value in entry.top.items() if isinstance(value, (int, float))}
    if isinstance(entry.logprob, (int, float)):
        top.setdefault(entry.token, entry.logprob)
    return top


def _is_dict(value: Any) -> bool:
    return isinstance(value, dict)


def _public(url: str) -> str:
    """The URL without credentials or query (safe in messages and logs)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _excerpt(raw: bytes | str, limit: int = 200) -> str:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    text = " ".join(text.split())
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def _error_detail(exc: urllib.error.HTTPError) -> str:
    """The server's own error message (OpenAI's {"error": {"message"}} or FastAPI's {"detail"})."""
    try:
        raw = exc.read()
    except (OSError, http.client.HTTPException):
        raw = b""
    try:
        parsed = json.loads(raw)
    except ValueError:
        return _excerpt(raw) if raw.strip() else str(exc.reason)
    if isinstance(parsed, dict):
        error = parsed.get("error", parsed.get("detail", parsed.get("message")))
        if isinstance(error, dict):
            error = error.get("message", error)
        if error is not None:
            return _excerpt(error if isinstance(error, str) else json.dumps(error), 300)
    return _excerpt(raw)


def _reason(exc: Any) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionError):
        return f"connection lost ({type(exc).__name__})"
    if isinstance(exc, http.client.HTTPException):
        return f"connection lost ({type(exc).__name__})"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header in seconds (an HTTP date is ignored), capped."""
    try:
        return min(max(float(value), 0.0), MAX_BACKOFF) if value else None
    except ValueError:
        return None
