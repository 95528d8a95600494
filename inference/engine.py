"""The llama.cpp engine: one model and context, loaded once, greedy decoding under a JSON-Schema grammar.

It knows nothing about news: it turns user prompts into answer texts, in the model family's chat
turns, under the `Constraint` it is given (grammar and stop rules; the analyzer passes the article
schema's). What it adds over `llama_cpp.Llama`:

- **Fast grammar.** Masking all 262k vocabulary entries with the grammar every step cost 3x the
  decoding time. We take the greedy token first and ask the grammar about that one token; only when
  it is rejected do we mask the best 64 tokens, then the best 4096, and only when all of those fail,
  the whole vocabulary. The chosen token is the one full masking would choose (the best allowed).
- **Several prompts at once.** The prompts of one newsletter decode together, one sequence each,
  in a single batch per step: a step costs far less than one step per sequence.
- **Prefix reuse.** Each sequence keeps its KV cache; a new prompt reuses the whole chunks it shares
  with the previous prompt in that sequence (the template's head, or all of a repeated prompt).
- **A lock.** One context runs one generation at a time; MCP tool calls arrive on worker threads.

`llama_cpp` is imported on first load only, so importing this module (e.g. for the MCP server's
start-up) stays cheap.
"""

from __future__ import annotations

import ctypes
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from data.prompts import chat_format
from inference.files import ModelFileError, check_gguf
from inference.grammar import Constraint, Probe

log = logging.getLogger(__name__)

FALLBACK_TIERS = (64, 4096)
"""When the greedy token breaks the grammar: mask the best 64 tokens, then the best 4096, then all.
Masking costs about 0.4 us per token, so the whole 262k vocabulary costs ~100 ms, a tier far less."""

PROMPT_CHUNK = 32
"""Prompts are decoded in chunks that start at multiples of this position, each in a decode call of its own.

llama.cpp's numbers for a token depend slightly on how many tokens share its decode call (kernel
choice); greedy decoding of a small model can flip on such differences. Fixed chunks make every
prompt compute the same way whatever ran before, so answers are deterministic, and cached chunks
from the previous prompt of a sequence can be reused without changing the result. The shared
head of the prompt template is a chunk of its own (see `Engine.generate(shared_prefix=...)`).
"""

GRAMMAR_MODES = ("fast", "full", "none")

TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True)
"""Memory layout of llama.cpp's `llama_token_data`."""

LLAMA_LOG_LEVELS = {1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR}
"""ggml log level (1 debug, 2 info, 3 warn, 4 error; 5 continues the previous line) -> Python level.
llama.cpp's INFO chatter (model metadata, buffer sizes) is DEBUG for us."""


class EngineError(RuntimeError):
    """The model could not be loaded or run (missing/corrupt file, bad adapter, context too small)."""


@dataclass
class EngineConfig:
    """What to run and how. Every field has a CLI flag and an environment variable (see mcp_server.commands)."""

    model_path: str | None = None
    """GGUF model; None -> the embedded Gemma 3 270M Q4_K_M."""
    lora_path: str | None = None
    """GGUF LoRA adapter applied on top of model_path."""
    lora_scale: float = 1.0
    n_threads: int | None = None
    """CPU threads for decoding and prompt processing; None -> min(2, cpu count)."""
    n_ctx: int = 2048
    """Context per sequence: prompt plus answer."""
    n_gpu_layers: int = 0
    """Layers offloaded to a GPU when llama.cpp was built with one (-1: all); ignored otherwise."""
    chat_format: str | None = None
    """Chat turns (data.prompts.CHAT_FORMATS); None -> read from the model (inference.models)."""
    max_tokens: int = 320
    """Answer budget; an answer cut off by it is closed into a valid object (finish_reason "length")."""
    content_chars: int | None = None
    """Characters of an item's text the prompt shows (`data.prompts.prepare_content`): 0, its first
    sentence; None -> what the adapter was trained with (its manifest's `content_chars`), else 0."""
    seed: int = 0
    """Unused by greedy decoding; kept so a sampling mode can be added without changing the API."""
    prefill_first: bool = True
    """Read every newly assigned prompt (all its chunks) before the next answering step, rather than
    one chunk per step: answering steps then run with their slots full."""
    jump_forward: bool = True
    """Write the tokens the grammar forces without sampling steps, several in one decode call of their
    own (never inside the batched step, whose shape stays fixed). Under the answer grammar's strict
    `indent=2` layout (inference.grammar.ANSWER_INDENT) that is every key, quote, comma, bracket and
    indent the model has no choice about: 43 of the ~64 tokens of a training answer, against 15 (the
    keys) under a grammar that allowed any whitespace.

    Why not inside the step, or all sequences' forced tokens in one call: over per-sequence KV caches
    llama.cpp splits a call into ubatches of consecutive sequences with equal token counts, so such a
    call runs as several ubatches anyway; over one shared cache (`kv_unified`) it is one ubatch, but
    a finished item's freed cells are refilled by other sequences, attention sums a sequence's cells
    in cell order, and answers then depend on what else ran (measured: 16-18 of 20 bench items as
    alone; bench/row_shapes.py shows both effects on the logits)."""
    pad_rows: bool = True
    """With 4 or more slots, decode every answering step with one row per slot, idle slots padded, so
    an answer is computed the same way whatever else is in the batch. Why: llama.cpp's CPU kernels
    give a row slightly different numbers depending on how many rows share the decode call and where
    the row sits (up to 3 rows compute alike), and a small model's greedy choice can flip on that.
    Measured with 16 slots and the shipped adapter: unpadded, 0 of 6 items answered exactly as alone;
    padded only to a multiple of 4 rows, 1 of 5; padded to all 16 rows in slot order, 6 of 6
    (bit-identical, score distributions included). The cost: every step computes all rows (padding
    rows skip the output head), so a lone item runs slower with many slots."""
    relevance_rule: str = "auto"
    """How the written score is chosen: "auto" (the relevance head where it fits the model, else
    "median"), "head", or a rule over the adapter's own distribution (inference.relevance.RULES)."""
    relevance_head: str | None = None
    """Relevance head file (inference.relevance_head); None -> models/relevance-head.json."""
    n_parallel: int = 8
    """Sequence slots decoded together (a newsletter's items, concurrent calls). With pad_rows, an
    answer does not depend on what else runs; from 8 slots on not on this number either (steps of 8 or
    more rows compute a row alike, bench/row_shapes.py; 20/20 bench items equal at 8 and 16), below 8
    it may (the step's row count; at 3, 16/20).
    Measured on the 2-core AMD EPYC, shipped adapter, 2 threads: a 20-item newsletter 14.8 s at 8,
    15.2 s at 16 (llama-server -np 16 on the same items: 14.8 s); one article alone 1.56 s at 3,
    2.24 s at 8, 3.11 s at 16. 8 keeps newsletters as fast as 16 and lone calls quicker."""

    def threads(self) -> int:
        return self.n_threads or max(1, min(2, os.cpu_count() or 1))

    def resolved(self) -> EngineConfig:
        """This config with the chat format filled in from the model when none was named."""
        if self.chat_format is not None:
            chat_format(self.chat_format)  # an unknown name fails here, not at the first call
            return self
        from inference.models import resolve_chat_format

        return replace(self, chat_format=resolve_chat_format(None, self.model_path, self.lora_path).name)


@dataclass
class Generation:
    """One answer text and what it cost."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    """From the start of this prompt's processing to the end of its answer."""
    prompt_seconds: float
    """Until the first answer token was chosen (prompt processing, shared with other sequences)."""
    finish_reason: str
    """"stop" (the answer ended by itself) or "length" (max_tokens reached)."""
    reused_tokens: int = 0
    """Prompt tokens found in the KV cache (shared with the previous prompt of the same sequence)."""
    grammar_fallbacks: int = 0
    """Steps where the greedy token broke the grammar and a masked choice was needed."""
    grammar_seconds: float = 0.0
    """Time spent choosing tokens under the grammar and advancing it (part of `seconds`)."""
    tokens: list[int] = field(default_factory=list)
    """The answer's token ids (without the end-of-generation token)."""
    stop_token: int | None = None
    """The end-of-generation token that ended the answer (finish_reason "stop" without a grammar stop)."""
    probe: dict[str, float] | None = None
    """P(choice) for each of the constraint's probe choices, normalized (None: the probe never fired)."""
    forced_tokens: int = 0
    """Answer tokens the grammar forced, written without a sampling step (jump-forward)."""


@dataclass
class _Request:
    """One `generate` call: its jobs wait here until a slot is free; results go back through `events`."""

    jobs: deque[_Job] = field(default_factory=deque)
    events: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    cancelled: Callable[[], bool] | None = None
    abandoned: bool = False
    """Set when the caller stopped waiting (its callback failed, or it was interrupted)."""
    told: bool = False

    def is_cancelled(self) -> bool:
        return self.abandoned or bool(self.cancelled and self.cancelled())

    def cancel(self) -> None:
        """Drop what is left of it and tell a caller still waiting (once)."""
        self.jobs.clear()
        if not self.told:
            self.told = True
            self.events.put(("error", -1, EngineError("the generation was cancelled")))


@dataclass
class _Job:
    index: int
    prompt: list[int]
    max_tokens: int
    started: float
    boundaries: list[int]
    """Where the prompt's chunks end (see PROMPT_CHUNK)."""
    grammar: str = "fast"
    request: _Request | None = None
    pending: list[int] = field(default_factory=list)
    generated: list[int] = field(default_factory=list)
    text: bytearray = field(default_factory=bytearray)
    reused: int = 0
    fallbacks: int = 0
    grammar_seconds: float = 0.0
    close_list: bool = False
    stop_token: int | None = None
    forced: list[int] = field(default_factory=list)
    """Tokens chosen ahead (a probe's choice): written next, one per step, under the grammar."""
    probe_first: dict[int, float] | None = None
    """Probabilities of the probe's first tokens at the probe position, until the choice is made."""
    probe: dict[str, float] | None = None
    choice: str | None = None
    """The probe's answer chosen by the caller (e.g. the relevance head's score): written where the
    probe fires, without reading the model's distribution (no scratch decode)."""
    banned: list[int] = field(default_factory=list)
    """Tokens the next step may not choose (what would extend a one-token probe choice)."""
    forced_count: int = 0
    first_token: float | None = None
    logits_row: int = -1


@dataclass
class _Slot:
    seq_id: int
    cached: list[int] = field(default_factory=list)
    """Tokens the KV cache holds for this sequence, in order."""
    prompt_len: int = 0
    """How many of `cached` are prompt tokens (reusable); the rest were generated."""
    job: _Job | None = None
    grammar: Any = None


class _Candidates:
    """A reusable `llama_token_data_array` over a numpy buffer, for applying the grammar sampler."""

    def __init__(self, llama_cpp: Any, capacity: int):
        self._llama_cpp = llama_cpp
        self.data = np.zeros(capacity, dtype=TOKEN_DATA)
        self.array = llama_cpp.llama_token_data_array(
            data=self.data.ctypes.data_as(llama_cpp.llama_token_data_p), size=0, selected=-1, sorted=False
        )
        self._ref = ctypes.byref(self.array)

    def best_allowed(self, grammar: Any, ids: np.ndarray, logits: np.ndarray) -> int | None:
        """The highest-logit token among `ids` (ascending ids) that the grammar allows, or None."""
        n = len(ids)
        self.data["id"][:n] = ids
        self.data["logit"][:n] = logits
        self.data["p"][:n] = 0.0
        self.array.size, self.array.selected, self.array.sorted = n, -1, False
        self._llama_cpp.llama_sampler_apply(grammar, self._ref)
        masked = self.data["logit"][:n]
        best = int(np.argmax(masked))
        return None if masked[best] == -np.inf else int(self.data["id"][best])


class Engine:
    """Owns the llama.cpp model and context. Thread-safe; loads on first use (or `load()`)."""

    def __init__(self, config: EngineConfig | None = None, constraint: Constraint | None = None):
        """`constraint`: the grammar and stop rules answers follow (None: only unconstrained decoding)."""
        self.config = (config or EngineConfig()).resolved()
        self.constraint = constraint
        self._lock = threading.Lock()
        """Held while the context is in use: by the decode worker while it has work, by loading and the
        one-off checks (grammar_accepts, forced_logits) otherwise."""
        self._cond = threading.Condition()
        """Guards `_requests` (jobs waiting for a slot) and wakes the decode worker."""
        self._requests: deque[_Request] = deque()
        self._worker: threading.Thread | None = None
        self._closing = False
        self._loaded = False
        self.load_seconds: float | None = None
        self.model_path: Path | None = None

    # --- loading -------------------------------------------------------------------------------

    def load(self) -> Engine:
        """Load the model now (idempotent). Raises EngineError naming the path when it cannot."""
        if self._loaded:  # no lock needed, and none taken: tokenizing must not wait for a generation
            return self
        with self._lock:
            if not self._loaded:
                self._load()
        return self

    @property
    def loaded(self) -> bool:
        return self._loaded

    def _load(self) -> None:
        started = time.perf_counter()
        cfg = self.config
        model_path = Path(cfg.model_path) if cfg.model_path else _embedded_model()
        try:
            check_gguf(model_path, "model")
            if cfg.lora_path:
                check_gguf(cfg.lora_path, "LoRA adapter")
        except ModelFileError as exc:
            raise EngineError(str(exc)) from None

        import llama_cpp  # heavy (ctypes library load): kept off the server's start-up path

        _route_llama_logs(llama_cpp)
        llama_cpp.llama_backend_init()
        self._llama_cpp = lc = llama_cpp

        model_params = lc.llama_model_default_params()
        if cfg.n_gpu_layers and not lc.llama_supports_gpu_offload():
            log.warning("n_gpu_layers=%d ignored: this llama.cpp build has no GPU offload", cfg.n_gpu_layers)
        elif cfg.n_gpu_layers:
            model_params.n_gpu_layers = cfg.n_gpu_layers
        self._model = lc.llama_model_load_from_file(str(model_path).encode(), model_params)
        if not self._model:
            raise EngineError(f"llama.cpp could not load the model file {model_path} (corrupt or unsupported GGUF)")
        self._vocab = lc.llama_model_get_vocab(self._model)
        self.n_vocab = lc.llama_vocab_n_tokens(self._vocab)

        n_parallel = max(1, cfg.n_parallel)
        ctx_params = lc.llama_context_default_params()
        ctx_params.n_ctx = cfg.n_ctx * n_parallel  # each sequence gets n_ctx (the KV cache is split per sequence)
        batch_size = max(PROMPT_CHUNK, n_parallel)
        ctx_params.n_batch = ctx_params.n_ubatch = batch_size
        ctx_params.n_seq_max = n_parallel
        ctx_params.n_threads = ctx_params.n_threads_batch = cfg.threads()
        ctx_params.swa_full = True  # sliding-window layers keep the whole sequence, so prefixes can be reused
        ctx_params.no_perf = True
        self._ctx = lc.llama_init_from_model(self._model, ctx_params)
        if not self._ctx:
            lc.llama_model_free(self._model)
            raise EngineError(f"llama.cpp could not create a context of {ctx_params.n_ctx} tokens for {model_path}")
        self._memory = lc.llama_get_memory(self._ctx)

        if cfg.lora_path:
            self._lora = lc.llama_adapter_lora_init(self._model, str(cfg.lora_path).encode())
            if not self._lora:
                self.close()
                raise EngineError(f"llama.cpp could not load the LoRA adapter {cfg.lora_path} for {model_path}")
            adapters = (lc.llama_adapter_lora_p_ctypes * 1)(self._lora)
            scales = (ctypes.c_float * 1)(cfg.lora_scale)
            if lc.llama_set_adapters_lora(self._ctx, adapters, 1, scales):
                self.close()
                raise EngineError(f"the LoRA adapter {cfg.lora_path} does not fit the model {model_path}")

        self._slots = [_Slot(seq_id=i) for i in range(n_parallel)]
        if self.constraint is not None:
            for slot in self._slots:
                slot.grammar = lc.llama_sampler_init_grammar(self._vocab, self.constraint.grammar.encode(), b"root")
                if not slot.grammar:
                    self.close()
                    raise EngineError("llama.cpp rejected the answer grammar")
        self._batch = lc.llama_batch_init(batch_size, 0, 1)
        self._pad_token = max(0, lc.llama_vocab_bos(self._vocab))
        self._forced: dict[str, list[int]] = {}
        self._one = _Candidates(lc, 1)
        self._tiers = [_Candidates(lc, k) for k in FALLBACK_TIERS]
        self._all = _Candidates(lc, self.n_vocab)
        self._all_ids = np.arange(self.n_vocab, dtype=np.int32)
        self._pieces: dict[int, bytes] = {}
        self._probe = _probe_table(self.constraint.probe, self._tokenize) if self.constraint else None
        closers = self.constraint.list_closers if self.constraint else ()
        self._list_closers = np.array(
            sorted({t[0] for c in closers if len(t := self._tokenize(c, False, False)) == 1}), dtype=np.int32
        )
        self.model_path = model_path
        self._loaded = True
        self.load_seconds = time.perf_counter() - started
        log.info("model %s loaded in %.2f s (%d threads)", model_path, self.load_seconds, cfg.threads())

    def close(self) -> None:
        """Stop the decode worker (jobs still waiting fail), then free the native model, context,
        samplers and batch (the engine can load again afterwards)."""
        worker = self._worker
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if worker is not None and worker is not threading.current_thread():
            worker.join()
        self._worker = None
        lc = getattr(self, "_llama_cpp", None)
        if lc is None:
            return
        for slot in getattr(self, "_slots", []):
            if slot.grammar:
                lc.llama_sampler_free(slot.grammar)
        self._slots = []
        if getattr(self, "_batch", None) is not None:
            lc.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "_ctx", None):
            lc.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_lora", None):
            lc.llama_adapter_lora_free(self._lora)
            self._lora = None
        if getattr(self, "_model", None):
            lc.llama_model_free(self._model)
            self._model = None
        self._loaded = False

    # --- tokens --------------------------------------------------------------------------------

    def prompt_tokens(self, user_prompt: str) -> list[int]:
        """The tokens the model reads for `user_prompt`: `data.prompts.render_chat_prompt(user_prompt)`.

        Its three parts are tokenized apart: the chat turns with special tokens, the user's text
        without, so text inside a prompt ("<end_of_turn>") can never become a control token. For all
        364 training prompts this gives the very tokens of tokenizing the whole rendered text.
        """
        self.load()
        return self._prompt_tokens(user_prompt)

    def _prompt_tokens(self, user_prompt: str, close_turn: bool = True) -> list[int]:
        fmt = chat_format(self.config.chat_format)
        tokens = self._tokenize(fmt.user_start, add_bos=True, special=True)
        tokens += self._tokenize(user_prompt, add_bos=False, special=False)
        if close_turn:
            tokens += self._tokenize(fmt.user_end + fmt.assistant_start, add_bos=False, special=True)
        return tokens

    def _tokenize(self, text: str, add_bos: bool, special: bool) -> list[int]:
        lc, data = self._llama_cpp, text.encode("utf-8")
        room = len(data) + 8
        while True:
            buf = (lc.llama_token * room)()
            n = lc.llama_tokenize(self._vocab, data, len(data), buf, room, add_bos, special)
            if n >= 0:
                return list(buf[:n])
            room = -n

    def end_tokens(self, text: str) -> list[int]:
        """The end-of-generation token and `text`'s token when it is a single one (e.g. "<end_of_turn>")."""
        self.load()
        lc = self._llama_cpp
        ids = self._tokenize(text, add_bos=False, special=True)
        return [lc.llama_vocab_eos(self._vocab), *(ids if len(ids) == 1 else [])]

    def detokenize(self, tokens: Sequence[int]) -> str:
        self.load()
        return b"".join(self._piece(t) for t in tokens).decode("utf-8", errors="replace")

    def grammar_accepts(self, answer: str) -> bool:
        """Whether the answer grammar allows `answer` as a whole answer, token by token as the model
        would write it. Proves the grammar never fights the trained answer format."""
        self.load()
        if self.constraint is None:
            raise ValueError("this engine has no grammar (it was made without a constraint)")
        with self._lock:
            lc = self._llama_cpp
            grammar = lc.llama_sampler_init_grammar(self._vocab, self.constraint.grammar.encode(), b"root")
            try:
                end = lc.llama_vocab_eot(self._vocab)
                end = end if end >= 0 else lc.llama_vocab_eos(self._vocab)
                for token in [*self._tokenize(answer, add_bos=False, special=False), end]:
                    if not self._allowed(grammar, token):
                        return False
                    lc.llama_sampler_accept(grammar, token)
                return True
            finally:
                lc.llama_sampler_free(grammar)

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            buf = ctypes.create_string_buffer(128)
            n = self._llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            piece = buf.raw[: max(n, 0)]
            self._pieces[token] = piece
        return piece

    # --- generation ----------------------------------------------------------------------------

    def generate(
        self,
        prompts: Sequence[str | list[int]],
        *,
        grammar: str = "fast",
        max_tokens: int | None = None,
        on_done: Callable[[int, Generation], None] | None = None,
        shared_prefix: str | None = None,
        cancelled: Callable[[], bool] | None = None,
        choices: Sequence[str | None] | None = None,
    ) -> list[Generation]:
        """Answer each user prompt (greedy), in the chat turns of `config.chat_format`; results in prompt order.

        Calls from several threads share one batch: their jobs join the running decode loop as slots
        free up (round-robin between calls), so ten concurrent single-article calls cost about what
        one ten-item call costs. `cancelled()` is polled between steps: when it turns true (or when
        `on_done` raises), the call's remaining jobs are dropped and their slots freed.

        A prompt is a user prompt (text) or the tokens `prompt_tokens` made of one (a caller that
        counted them to fit the context hands them over instead of having them tokenized twice).

        `grammar`: "fast" (check the greedy token first), "full" (mask the whole vocabulary every step,
        as llama.cpp's samplers do) or "none" (unconstrained); all but "fast" exist for benchmarks.
        `on_done(i, gen)` is called as each answer finishes (in the caller's thread; out of order when
        prompts run in parallel).
        `shared_prefix`: text most user prompts start with (the template's head); its tokens become
        a chunk of their own, computed once per sequence and reused by every later prompt.
        `choices[i]`: what prompt i's probe writes (one of the constraint's probe choices; None: the
        probe's own rule), e.g. the relevance head's score.
        """
        budget = max_tokens or self.config.max_tokens
        if grammar not in GRAMMAR_MODES:
            raise ValueError(f"grammar must be one of {', '.join(GRAMMAR_MODES)}, not {grammar!r}")
        if grammar != "none" and self.constraint is None:
            raise ValueError("this engine has no grammar (it was made without a constraint): use grammar='none'")
        self.load()
        tokenized = [list(p) if isinstance(p, list) else self._prompt_tokens(p) for p in prompts]
        head = self._prompt_tokens(shared_prefix, close_turn=False) if shared_prefix else []
        for i, tokens in enumerate(tokenized):
            if len(tokens) + budget > self.config.n_ctx:
                raise EngineError(
                    f"prompt {i} has {len(tokens)} tokens; with {budget} answer tokens it exceeds "
                    f"the context of {self.config.n_ctx} (shorten the input or raise n_ctx)"
                )
        choices = list(choices) if choices is not None else [None] * len(tokenized)
        if len(choices) != len(tokenized):
            raise ValueError(f"{len(choices)} choices for {len(tokenized)} prompts")
        for choice in choices:
            if choice is not None and (self._probe is None or choice not in self._probe.tokens):
                raise ValueError(f"choice {choice!r} is not one of this engine's probe choices")
        request = _Request(cancelled=cancelled)
        for i, tokens in enumerate(tokenized):
            job = _Job(i, tokens, budget, 0.0, _boundaries(tokens, head), grammar, request, choice=choices[i])
            request.jobs.append(job)
        results: list[Generation | None] = [None] * len(tokenized)
        if not tokenized:
            return []
        self._submit(request)
        try:
            for _ in tokenized:
                kind, index, payload = request.events.get()
                if kind == "error":
                    raise payload
                results[index] = payload
                if on_done:
                    on_done(index, payload)
        except BaseException:
            request.abandoned = True  # the worker drops what is left of it and frees its slots
            raise
        return results  # type: ignore[return-value]

    # --- the decode worker: one thread owns the context; every caller's jobs share its batch -------

    def _submit(self, request: _Request) -> None:
        with self._cond:
            self._requests.append(request)
            if self._worker is None or not self._worker.is_alive():
                self._closing = False
                self._worker = threading.Thread(target=self._work, name="llama-decode", daemon=True)
                self._worker.start()
            self._cond.notify_all()

    def _work(self) -> None:
        """Wait for jobs; serve them until none are left; repeat. A failure fails every job in flight."""
        while True:
            with self._cond:
                while not self._requests and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
            with self._lock:
                try:
                    self._serve()
                except BaseException as exc:  # noqa: BLE001 - reported to every waiting caller
                    self._fail_all(exc)

    def _next_job(self) -> _Job | None:
        """Round-robin over the waiting requests, so a single article never waits for a whole newsletter."""
        with self._cond:
            while self._requests:
                request = self._requests.popleft()
                if request.is_cancelled():
                    request.cancel()
                    continue
                if not request.jobs:
                    continue
                job = request.jobs.popleft()
                if request.jobs:
                    self._requests.append(request)
                return job
        return None

    def _fail_all(self, exc: BaseException) -> None:
        error = exc if isinstance(exc, EngineError) else EngineError(f"generation failed: {exc!r}")
        failed = {id(s.job.request): s.job.request for s in self._slots if s.job and s.job.request}
        with self._cond:
            failed.update({id(r): r for r in self._requests})
            self._requests.clear()
        for request in failed.values():
            request.jobs.clear()
            request.events.put(("error", -1, error))
        self._reset_slots()

    def _serve(self) -> None:
        """Continuous batching: free slots take the next job; each round runs one (padded) step of every
        answering sequence, each jumping sequence's forced tokens, and the chunks of the prompts waiting
        (all of them with prefill_first), each in a decode call of its own (see PROMPT_CHUNK, pad_rows)."""
        while True:
            if self._closing:
                raise EngineError("the engine was closed while this generation ran")
            for slot in self._slots:
                if slot.job is not None and slot.job.request.is_cancelled():
                    self._drop(slot)
                if slot.job is None and (job := self._next_job()) is not None:
                    job.started = time.perf_counter()
                    self._assign(slot, job)
            if not any(s.job for s in self._slots):
                with self._cond:
                    if not self._requests:
                        return
                continue
            answering = [s for s in self._slots if s.job and s.job.generated and len(s.job.pending) == 1]
            jumping = [s for s in self._slots if s.job and s.job.generated and len(s.job.pending) > 1]
            prefilling = [s for s in self._slots if s.job and not s.job.generated]
            rounds = [[(s, s.job.pending[:1]) for s in answering]] if answering else []
            rounds += [[(s, list(s.job.pending))] for s in jumping]  # forced tokens: a call of their own
            for slot in prefilling if self.config.prefill_first else prefilling[:1]:
                # every chunk in a call of its own; with prefill_first all waiting prompts are read
                # before the next answering step, so no padded step runs half empty during the ramp
                start, offset = len(slot.cached), 0
                for end in (b for b in slot.job.boundaries if b > start):
                    size = end - start - offset
                    rounds.append([(slot, slot.job.pending[offset : offset + size])])
                    offset += size
                    if not self.config.prefill_first:
                        break
            for number, parts in enumerate(rounds):
                self._decode(parts, pad=number == 0 and bool(answering))
                probing = []
                for slot, _ in parts:
                    job = slot.job
                    if job.logits_row < 0:
                        continue
                    reason = self._step(slot, job, job.grammar)
                    if job.probe_first is not None:
                        probing.append(slot)  # its step ends after the scratch decodes below
                    elif reason:
                        self._deliver(slot, job, reason)
                for slot in probing:  # after every row of this round was read: scratch decodes reuse the logits
                    job = slot.job
                    reason = self._commit(slot, job, self._probe_choice(slot, job), job.grammar)
                    if reason:
                        self._deliver(slot, job, reason)

    def _deliver(self, slot: _Slot, job: _Job, reason: str) -> None:
        gen = self._finish(slot, job, reason)
        job.request.events.put(("done", job.index, gen))

    def _drop(self, slot: _Slot) -> None:
        """Free the slot of a cancelled job; its KV cache keeps only the prompt chunks (reusable)."""
        job, slot.job = slot.job, None
        job.request.cancel()
        keep = max((b for b in (0, *job.boundaries) if b <= min(len(slot.cached), len(job.prompt))), default=0)
        if keep < len(slot.cached):
            self._llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, keep, -1)
            del slot.cached[keep:]
        slot.prompt_len = min(slot.prompt_len, keep)

    def forced_logits(self, user_prompt: str | list[int], continuation: Sequence[int]) -> np.ndarray:
        """Logits predicting each token of `continuation` after `user_prompt`, fed one token per decode call.

        The served decode shape exactly: the prompt in the same fixed chunks as `generate`, then one
        token per step, in sequence 0 from an empty cache. Export's parity check compares these rows
        with transformers', so it certifies the path that serves the model.
        """
        with self._lock:
            if not self._loaded:
                self._load()
            prompt = list(user_prompt) if isinstance(user_prompt, list) else self._prompt_tokens(user_prompt)
            if len(prompt) + len(continuation) > self.config.n_ctx:
                raise EngineError(f"prompt + continuation ({len(prompt)} + {len(continuation)}) exceed n_ctx")
            slot = self._slots[0]
            self._reset_slots()
            job = _Job(0, prompt, len(continuation), time.perf_counter(), _boundaries(prompt, []))
            slot.job, job.pending = job, list(prompt)
            rows = []
            try:
                while job.pending:
                    end = next(b for b in job.boundaries if b > len(slot.cached))
                    self._decode([(slot, job.pending[: end - len(slot.cached)])])
                rows.append(self._logits(job))
                for token in list(continuation)[:-1]:
                    job.pending = [token]
                    self._decode([(slot, job.pending[:1])], pad=True)  # the served step shape
                    rows.append(self._logits(job))
            finally:
                self._reset_slots()
            return np.stack(rows) if rows else np.zeros((0, self.n_vocab), dtype=np.float32)

    def _logits(self, job: _Job) -> np.ndarray:
        row = self._llama_cpp.llama_get_logits_ith(self._ctx, job.logits_row)
        job.logits_row = -1
        return np.ctypeslib.as_array(row, shape=(self.n_vocab,)).copy()

    def _reset_slots(self) -> None:
        for slot in self._slots:
            slot.job, slot.prompt_len = None, 0
            slot.cached.clear()
            self._llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, 0, -1)

    def _assign(self, slot: _Slot, job: _Job) -> None:
        """Start `job` in `slot`, keeping the cached prompt chunks it shares with the slot's last prompt."""
        lc = self._llama_cpp
        keep = 0
        limit = min(slot.prompt_len, len(job.prompt) - 1)  # the last prompt token must run for fresh logits
        while keep < limit and slot.cached[keep] == job.prompt[keep]:
            keep += 1
        keep = max(
            b for b in (0, *job.boundaries) if b <= keep
        )  # whole chunks only: the rest computes as without reuse
        if not lc.llama_memory_seq_rm(self._memory, slot.seq_id, keep, -1):
            lc.llama_memory_seq_rm(self._memory, slot.seq_id, 0, -1)
            keep = 0
        del slot.cached[keep:]
        slot.prompt_len = len(job.prompt)
        job.reused, job.pending = keep, job.prompt[keep:]
        if slot.grammar:
            lc.llama_sampler_reset(slot.grammar)
        slot.job = job

    def _decode(self, parts: list[tuple[_Slot, list[int] | None]], pad: bool = False) -> None:
        """One llama_decode over the given tokens of each slot; logits for the last token of a prompt or answer.

        `pad` (answering steps): one row per slot, in slot order, every idle slot given a padding row
        on a scratch position that is removed right after; so every answering step has the same shape
        and every slot the same row, whatever else runs (see EngineConfig.pad_rows)."""
        batch, n = self._batch, 0
        padded: list[tuple[_Slot, int]] = []
        if pad and self.config.pad_rows and len(self._slots) > 3:
            given = {slot.seq_id: tokens for slot, tokens in parts}
            parts = [(slot, given.get(slot.seq_id)) for slot in self._slots]
        for slot, tokens in parts:
            job = slot.job
            if tokens is None:  # an idle slot's padding row
                batch.token[n], batch.pos[n], batch.n_seq_id[n] = self._pad_token, len(slot.cached), 1
                batch.seq_id[n][0], batch.logits[n] = slot.seq_id, 0
                padded.append((slot, len(slot.cached)))
                n += 1
                continue
            for token in tokens:
                batch.token[n] = token
                batch.pos[n] = len(slot.cached)
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = slot.seq_id
                batch.logits[n] = 0
                slot.cached.append(token)
                n += 1
            del job.pending[: len(tokens)]
            if not job.pending:
                batch.logits[n - 1] = 1
                job.logits_row = n - 1
        batch.n_tokens = n
        status = self._llama_cpp.llama_decode(self._ctx, batch)
        for slot, pos in padded:
            self._llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, pos, -1)
        if status != 0:
            raise EngineError(f"llama_decode failed with status {status}")

    def _step(self, slot: _Slot, job: _Job, grammar: str) -> str | None:
        """Choose the next token of one sequence; returns a finish reason when its answer is complete."""
        lc = self._llama_cpp
        logits = np.ctypeslib.as_array(lc.llama_get_logits_ith(self._ctx, job.logits_row), shape=(self.n_vocab,))
        job.logits_row = -1
        if job.banned:  # the token after a one-token probe choice must not extend it ("1" into "10")
            logits = logits.copy()
            logits[job.banned] = -np.inf
            job.banned = []
        token = int(np.argmax(logits))
        if not job.generated:
            job.first_token = time.perf_counter()
        if grammar != "none":
            started = time.perf_counter()
            closer = self._list_closer(slot.grammar, logits) if job.close_list else None
            job.close_list = False
            forced = job.forced.pop(0) if job.forced else None
            if forced is not None and self._allowed(slot.grammar, forced):
                token = forced
            elif closer is not None:  # the list just repeated an item: end it (Constraint.repeats_itself)
                token = closer
            elif grammar == "fast":
                token = self._grammar_choice(slot.grammar, logits, token, job)
            else:
                token = self._all.best_allowed(slot.grammar, self._all_ids, logits)
            job.grammar_seconds += time.perf_counter() - started
            if self._probe and job.choice is not None and self._probe_fires(job, token):
                choice, job.choice = job.choice, None  # written once
                token = self._write_choice(slot, job, choice, token)
            elif self._probe and job.probe is None and self._probe_fires(job, token):
                job.probe_first = _probabilities(logits, self._probe.first)
                job.pending = [token]  # the greedy choice, kept in case the probe chooses none
                return None
        return self._commit(slot, job, token, grammar)

    def _commit(self, slot: _Slot, job: _Job, token: int, grammar: str) -> str | None:
        """Write the chosen token: advance the grammar, extend the answer, check the stop rules."""
        lc = self._llama_cpp
        if grammar != "none":
            started = time.perf_counter()
            lc.llama_sampler_accept(slot.grammar, token)
            job.grammar_seconds += time.perf_counter() - started
        if lc.llama_vocab_is_eog(self._vocab, token):
            job.stop_token = token
            return "stop"
        job.generated.append(token)
        piece = self._piece(token)
        job.text += piece
        rules = self.constraint
        if grammar != "none" and any(c in piece for c in rules.stop_chars) and rules.is_complete(_text(job.text)):
            return "stop"
        if grammar != "none" and any(c in piece for c in rules.list_chars):
            job.close_list = rules.repeats_itself(_text(job.text))
        if len(job.generated) >= job.max_tokens:
            return "length"
        job.pending = [token]
        if grammar != "none" and self.config.jump_forward and rules.forced:
            return self._jump_forward(slot, job)
        return None

    def _jump_forward(self, slot: _Slot, job: _Job) -> str | None:
        """Append the tokens the grammar forces now (each checked against it) to the pending token."""
        literal = self.constraint.forced(_text(job.text))
        if not literal:
            return None
        tokens = self._forced.get(literal)
        if tokens is None:
            tokens = self._forced[literal] = self._tokenize(literal, add_bos=False, special=False)
        lc = self._llama_cpp
        for token in tokens:
            if not self._allowed(slot.grammar, token):
                break  # the grammar disagrees with this tokenization: sample from here on
            lc.llama_sampler_accept(slot.grammar, token)
            job.generated.append(token)
            job.text += self._piece(token)
            job.pending.append(token)
            job.forced_count += 1
            if len(job.generated) >= job.max_tokens:
                return "length"
        return None

    def _allowed(self, grammar: Any, token: int) -> bool:
        """Whether the grammar, in its current state, accepts `token` next (one candidate, no masking)."""
        ids = np.array([token], dtype=np.int32)
        return self._one.best_allowed(grammar, ids, np.zeros(1, dtype=np.float32)) is not None

    def _probe_fires(self, job: _Job, token: int) -> bool:
        return token in self._probe.first and bool(self._probe.spec.after.search(_text(job.text)))

    def _probe_choice(self, slot: _Slot, job: _Job) -> int:
        """Finish the probe of `job`: exact P(choice) (scratch decodes for two-token choices), the
        choice written (its first token returned, the rest forced next), the distribution kept."""
        table, first = self._probe, job.probe_first
        greedy = job.pending[0]
        job.probe_first = None
        probabilities: dict[str, float] = {}
        for head, choices in table.tree.items():
            p_head = first.get(head, 0.0)
            rest = {tokens[1]: name for name, tokens in choices.items() if len(tokens) == 2}
            second = self._scratch_probabilities(slot, head, list(rest)) if rest and p_head > 0 else {}
            for t, name in rest.items():
                probabilities[name] = p_head * second.get(t, 0.0)
            for name, tokens in choices.items():
                if len(tokens) == 1:
                    probabilities[name] = p_head * (1.0 - sum(second.values()))
        total = sum(probabilities.values()) or 1.0
        job.probe = {name: probabilities.get(name, 0.0) / total for name in table.spec.choices}
        if table.spec.choose is None:
            return greedy
        return self._write_choice(slot, job, table.spec.choose(dict(job.probe)), greedy)

    def _write_choice(self, slot: _Slot, job: _Job, choice: str, fallback: int) -> int:
        """The first token of probe `choice` (the rest forced next, its extensions banned for one
        step), or `fallback` where the grammar refuses it (cannot happen for digits at a score)."""
        tokens = self._probe.tokens[choice]
        if not self._allowed(slot.grammar, tokens[0]):
            return fallback
        job.forced, job.banned = list(tokens[1:]), _extensions(self._probe, tokens)
        return tokens[0]

    def _scratch_probabilities(self, slot: _Slot, token: int, targets: list[int]) -> dict[int, float]:
        """P(target | answer so far + token), decoding `token` on a scratch position removed afterwards."""
        lc, batch, pos = self._llama_cpp, self._batch, len(slot.cached)
        batch.token[0], batch.pos[0], batch.n_seq_id[0] = token, pos, 1
        batch.seq_id[0][0], batch.logits[0], batch.n_tokens = slot.seq_id, 1, 1
        status = lc.llama_decode(self._ctx, batch)
        if status != 0:
            raise EngineError(f"llama_decode failed with status {status}")
        logits = np.ctypeslib.as_array(lc.llama_get_logits_ith(self._ctx, 0), shape=(self.n_vocab,))
        probabilities = _probabilities(logits, set(targets))
        lc.llama_memory_seq_rm(self._memory, slot.seq_id, pos, -1)
        return probabilities

    def _list_closer(self, grammar: Any, logits: np.ndarray) -> int | None:
        """The best single token that ends the open list (e.g. "]" or "\\n  ]"), if the grammar allows one."""
        ids = self._list_closers
        return self._tiers[0].best_allowed(grammar, ids, logits[ids]) if len(ids) else None

    def _grammar_choice(self, grammar: Any, logits: np.ndarray, greedy: int, job: _Job) -> int:
        """The greedy token if the grammar allows it, else the best token it allows."""
        if self._allowed(grammar, greedy):
            return greedy
        job.fallbacks += 1
        for k, candidates in zip(FALLBACK_TIERS, self._tiers, strict=True):
            top = np.sort(np.argpartition(logits, -k)[-k:]).astype(np.int32)
            token = candidates.best_allowed(grammar, top, logits[top])
            if token is not None:
                return token
        token = self._all.best_allowed(grammar, self._all_ids, logits)
        if token is None:
            raise EngineError("the grammar allows no token here (grammar and vocabulary disagree)")
        return token

    def _finish(self, slot: _Slot, job: _Job, reason: str) -> Generation:
        slot.job = None
        return Generation(
            text=job.text.decode("utf-8", errors="replace"),
            prompt_tokens=len(job.prompt),
            completion_tokens=len(job.generated),
            seconds=time.perf_counter() - job.started,
            prompt_seconds=(job.first_token or time.perf_counter()) - job.started,
            finish_reason=reason,
            reused_tokens=job.reused,
            grammar_fallbacks=job.fallbacks,
            grammar_seconds=job.grammar_seconds,
            tokens=list(job.generated),
            stop_token=job.stop_token,
            probe=job.probe,
            forced_tokens=job.forced_count,
        )


def _boundaries(prompt: list[int], head: list[int]) -> list[int]:
    """Chunk ends of a prompt: after the shared head (when the prompt starts with it), every
    PROMPT_CHUNK positions, and at the end. They depend on the prompt alone, never on history."""
    shared = 0
    while shared < min(len(head), len(prompt) - 1) and head[shared] == prompt[shared]:
        shared += 1
    ends = {shared, *range(PROMPT_CHUNK, len(prompt), PROMPT_CHUNK), len(prompt)}
    return sorted(e for e in ends if e > 0)


@dataclass(frozen=True)
class _ProbeTable:
    spec: Probe
    tokens: dict[str, list[int]]
    """choice -> its tokens (one or two)."""
    tree: dict[int, dict[str, list[int]]]
    """first token -> the choices that start with it."""
    first: set[int]


def _probe_table(spec: Probe | None, tokenize: Callable[[str, bool, bool], list[int]]) -> _ProbeTable | None:
    if spec is None:
        return None
    tokens = {choice: tokenize(choice, False, False) for choice in spec.choices}
    if any(not 1 <= len(t) <= 2 for t in tokens.values()):
        raise EngineError(f"probe choices must be one or two tokens each: {tokens}")
    tree: dict[int, dict[str, list[int]]] = {}
    for choice, ids in tokens.items():
        tree.setdefault(ids[0], {})[choice] = ids
    return _ProbeTable(spec, tokens, tree, set(tree))


def _extensions(table: _ProbeTable, tokens: list[int]) -> list[int]:
    """Second tokens of the longer choices a one-token choice is the start of ("0" after "1": 10)."""
    if len(tokens) != 1:
        return []
    return sorted({ids[1] for ids in table.tree[tokens[0]].values() if len(ids) == 2})


def _probabilities(logits: np.ndarray, ids: set[int]) -> dict[int, float]:
    """Softmax probabilities of `ids` over the whole vocabulary."""
    top = float(np.max(logits))
    norm = float(np.sum(np.exp(logits - top, dtype=np.float64)))
    return {t: float(np.exp(float(logits[t]) - top) / norm) for t in ids}


def _text(data: bytearray) -> str:
    return data.decode("utf-8", errors="replace")


def _embedded_model() -> Path:
    from inference.models import embedded_base_model

    return embedded_base_model()


_log_callback: Any = None


def _route_llama_logs(llama_cpp: Any) -> None:
    """Send llama.cpp's C-level log lines to Python logging (stderr), never to stdout."""
    global _log_callback
    if _log_callback is not None:
        return
    logger = logging.getLogger("llama_cpp")
    last = [logging.DEBUG]

    def forward(level: int, text: bytes, _user_data: Any) -> None:
        if level != 5:
            last[0] = LLAMA_LOG_LEVELS.get(level, logging.DEBUG)
        message = text.decode("utf-8", errors="replace").rstrip()
        if message:
            logger.log(last[0], "%s", message)

    _log_callback = llama_cpp.llama_log_callback(forward)  # kept referenced: C holds the pointer
    llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
