"""The one table of model options: every command that runs the model builds its flags from it.

`serve`, `analyze`, `eval run`, the Gmail workflow and `bench/` call `add_model_options(parser)` and
`engine_config(args)`, so a flag exists everywhere with the same name, environment variable, default
and help, and no command can forget one (`eval run` once had no `--chat-format`, and evaluated a
Llama 3 model in Gemma turns).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ENV_PREFIX = "NEWS_ENHANCER_"


@dataclass(frozen=True)
class Option:
    flag: str
    type: type
    help: str
    default: Any = None
    field: str | None = None
    """The EngineConfig field it sets (None: not an engine setting)."""
    aliases: tuple[str, ...] = ()

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.flag.lstrip("-").replace("-", "_").upper()

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


MODEL_OPTIONS: tuple[Option, ...] = (
    Option("--model", str, "GGUF model file (default: the embedded Gemma 3 270M)", field="model_path"),
    Option("--lora", str, "GGUF LoRA adapter applied on top of --model", field="lora_path"),
    Option("--lora-scale", float, "LoRA strength", 1.0, field="lora_scale"),
    Option("--threads", int, "CPU threads (default: min(2, CPUs))", field="n_threads", aliases=("--n-threads",)),
    Option("--gpu-layers", int, "layers offloaded to a GPU build (-1: all)", 0, field="n_gpu_layers"),
    Option("--ctx", int, "context tokens per item (prompt + answer)", 2048, field="n_ctx"),
    Option(
        "--chat-format",
        str,
        "chat turns of the model family: gemma, llama3 (default: read from the model)",
        field="chat_format",
    ),
    Option("--max-tokens", int, "answer token budget per item", 320, field="max_tokens"),
    Option(
        "--content-chars",
        int,
        "characters of an item's text the prompt shows (0: its first sentence; default: what the adapter "
        "was trained with, from its manifest)",
        field="content_chars",
    ),
    Option(
        "--relevance-rule",
        str,
        "how the score is chosen: auto (the relevance head where it fits the model, else median), head, "
        "or from the adapter's own score distribution: median, mean, greedy",
        "auto",
        field="relevance_rule",
    ),
    Option(
        "--relevance-head", str, "relevance head file (default: models/relevance-head.json)", field="relevance_head"
    ),
    Option("--parallel", int, "sequence slots decoded together (items, concurrent calls)", 8, field="n_parallel"),
    Option("--max-items", int, "items analyzed per newsletter", 40),
    Option(
        "--engine",
        str,
        "MODULE:CALLABLE making the engine from the EngineConfig (default: the llama.cpp engine; "
        "tests use tests.fakes:FakeEngine)",
    ),
    Option(
        "--backend",
        str,
        "where the model runs: local (llama.cpp in this process) or openai (an OpenAI-compatible server: "
        "llama-server, vLLM, llama_cpp.server; see --server-url)",
        "local",
    ),
    Option(
        "--server-url",
        str,
        "the server's OpenAI base URL, e.g. http://host:8080/v1 (--backend openai; its API key is read from "
        "the environment variable NEWS_ENHANCER_API_KEY only)",
    ),
    Option("--server-model", str, "model name sent to the server (default: the first model it lists)"),
    Option(
        "--server-structured",
        str,
        "how the article schema is sent: grammar (llama-server, llama_cpp.server), json_schema (llama-server), "
        "response_format, structured_outputs (vLLM), guided_json (vLLM < 0.12)",
        "grammar",
    ),
    Option("--server-timeout", float, "seconds to wait for one answer from the server", 120.0),
    Option("--server-retries", int, "retries after a transient server failure (connection, timeout, 429, 5xx)", 3),
    Option("--server-logprobs", int, "top log-probabilities asked per answer token (0: none)", 0),
)
"""flag (and environment variable NEWS_ENHANCER_<FLAG>), type, help, default, EngineConfig field."""

NO_DEFAULT_LORA = Option(
    "--no-default-lora",
    bool,
    "the plain embedded base model, without the shipped news adapter "
    "(which applies only when neither --model nor --lora is given)",
    False,
)


def _env_default(opt: Option, parser: argparse.ArgumentParser) -> Any:
    raw = os.environ.get(opt.env)
    if raw in (None, ""):
        return opt.default
    if opt.type is bool:
        return raw.lower() not in ("0", "false", "no")
    try:
        return opt.type(raw)
    except ValueError:
        parser.error(f"{opt.env}={raw!r} is not a valid {opt.type.__name__}")


def add_model_options(parser: argparse.ArgumentParser, options: Sequence[Option] = MODEL_OPTIONS) -> None:
    """Add every model option (and --no-default-lora) to `parser`; an environment variable sets each default."""
    group = parser.add_argument_group("model options (each also an environment variable)")
    for opt in options:
        group.add_argument(
            opt.flag,
            *opt.aliases,
            dest=opt.dest,
            type=opt.type,
            default=_env_default(opt, parser),
            help=f"{opt.help} [env {opt.env}]",
        )
    group.add_argument(
        NO_DEFAULT_LORA.flag,
        action="store_true",
        default=_env_default(NO_DEFAULT_LORA, parser),
        help=f"{NO_DEFAULT_LORA.help} [env {NO_DEFAULT_LORA.env}=1]",
    )


def engine_config(args: argparse.Namespace):
    """The EngineConfig the options name: files resolved (shipped adapter), chat format read from the model.

    Raises ValueError when a named chat format contradicts the model.
    """
    from inference.engine import EngineConfig
    from inference.models import content_chars, resolve_chat_format, resolve_model_files

    values = {opt.field: getattr(args, opt.dest) for opt in MODEL_OPTIONS if opt.field}
    values = {k: v for k, v in values.items() if v is not None}
    model, lora = resolve_model_files(
        values.pop("model_path", None), values.pop("lora_path", None), not args.no_default_lora
    )
    if not (getattr(args, "backend", None) == "openai" and values.get("chat_format")):
        # (a format named for a served model is taken as given: that model is not in the local files)
        values["chat_format"] = resolve_chat_format(values.get("chat_format"), model, lora).name
    values["content_chars"] = content_chars(values.get("content_chars"), lora)
    return EngineConfig(model_path=model, lora_path=lora, **values)


def add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        default=os.environ.get(ENV_PREFIX + "LOG_LEVEL") or None,
        help=f"DEBUG, INFO, WARNING or ERROR [env {ENV_PREFIX}LOG_LEVEL]",
    )


def setup_logging(level: str) -> None:
    """Logs to stderr, never stdout (it carries the protocol or the result)."""
    logging.basicConfig(
        stream=sys.stderr, level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if level.upper() != "DEBUG":
        logging.getLogger("llama_cpp").setLevel(logging.ERROR)  # llama.cpp's load chatter is noise here


def engine_factory(args: argparse.Namespace):
    """The callable making the engine from the EngineConfig, or None for the default (local llama.cpp):
    `inference.remote.RemoteEngine` for `--backend openai`, else what `--engine MODULE:CALLABLE` names.

    Raises ValueError for a bad --engine, --backend or --server-* option (before any model or server is used).
    """
    spec = getattr(args, "engine", None)
    backend = getattr(args, "backend", None) or "local"
    if backend not in ("local", "openai"):
        raise ValueError(f"--backend must be local or openai, not {backend!r}")
    if backend == "openai":
        if spec:
            raise ValueError("--engine and --backend openai both name the engine: give one")
        return remote_factory(args)
    if not spec:
        return None
    import importlib

    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"--engine expects MODULE:CALLABLE, got {spec!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"--engine {spec}: {exc}") from exc


def remote_factory(args: argparse.Namespace):
    """`RemoteEngine(config)` with the --server-* options (the API key from the environment)."""
    import functools

    from inference.remote import RemoteEngine, ServerSettings

    given = {name: getattr(args, f"server_{name}", None) for name in ("url", "model", "structured", "timeout")}
    given.update(retries=getattr(args, "server_retries", None), logprobs=getattr(args, "server_logprobs", None))
    settings = ServerSettings.from_env(**{k: v for k, v in given.items() if v is not None})
    return functools.partial(RemoteEngine, settings=settings)
