"""The MCP server: tools `analyze_article` and `analyze_newsletter`, the schemas as resources, over stdio.

Thin over `inference.analyzer`. Start-up stays fast (MCP clients give a server 1-10 s): nothing here
imports llama_cpp or numpy; the model loads in a background thread once the server runs, and a
tool call that arrives earlier waits for it. Tool failures (empty input, a broken model file)
come back as tool errors with a readable message; the server keeps serving.
"""

from __future__ import annotations

import inspect
import json
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
import anyio.from_thread
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resources import TextResource
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from schemas import SCHEMA_FILES, load_schema
from schemas.models import ArticleResult, NewsletterReport

if TYPE_CHECKING:
    from inference.analyzer import Analyzer
    from inference.engine import EngineConfig

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Analyzes AI/tech newsletter items with a small local model: a relevance score (1-10), a one-line "
    "summary, topic tags (key_insights) and company names. Use analyze_article for one article and "
    "analyze_newsletter for a whole email (TLDR-style HTML, other HTML, Markdown or plain text)."
)
SCHEMA_URI = "schema://news-enhancer/{name}"


class AnalyzerService:
    """Creates the analyzer and loads the model off the request path; shared by all tool calls."""

    def __init__(
        self,
        config: Callable[[], EngineConfig] | EngineConfig | None = None,
        max_items: int | None = None,
        engine: Callable[[EngineConfig | None], Any] | None = None,
    ):
        """`config`: a callable defers building the EngineConfig (its module imports numpy: not at start-up).
        `engine`: makes the engine from the config (default: the llama.cpp one; protocol tests pass a fake)."""
        self._config, self._max_items, self._engine = config, max_items, engine
        self._analyzer: Analyzer | None = None
        self._created = threading.Lock()

    def analyzer(self) -> Analyzer:
        with self._created:
            if self._analyzer is None:
                from inference.analyzer import MAX_ITEMS, Analyzer  # numpy and friends: not at start-up

                config = self._config() if callable(self._config) else self._config
                engine = self._engine(config) if self._engine else None
                self._analyzer = Analyzer(config, engine=engine, max_items=self._max_items or MAX_ITEMS)
            return self._analyzer

    def warm_up(self) -> None:
        """Load the model now (run in a background thread); a failure is logged and reported on first use."""
        try:
            self.analyzer().engine.load()
        except Exception as exc:  # the tool call that needs the model reports it to the client
            log.error("model not loaded: %s", exc)


async def _in_thread(work: Callable[[], Any], cancel: threading.Event) -> Any:
    """Run `work` on a worker thread; when the call is cancelled (the client sent notifications/cancelled,
    or went away), set `cancel` so the engine drops its items and frees their slots, and return at once."""
    try:
        return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        cancel.set()
        raise


def _tool_error(exc: Exception) -> ToolError:
    return ToolError(str(exc))


def build_server(service: AnalyzerService, warm_up: bool = True) -> MCPServer:
    """The MCPServer with both tools and the schema resources; `warm_up` loads the model in the background."""

    async def analyze_article(
        title: Annotated[str, Field(description="The article's headline.")],
        content: Annotated[str, Field(description="The article's text: plain text, Markdown or HTML.")],
        url: Annotated[str | None, Field(description="Where the article lives (returned as given).")] = None,
    ) -> Annotated[CallToolResult, ArticleResult]:
        """Analyze one article: relevance to tech professionals (1-10), a summary, topic tags and companies.

        Long content is cut to what the model was trained on (its first sentence, unless sponsored);
        `truncated` says when that happened.
        """
        cancel = threading.Event()
        try:
            result = await _in_thread(
                lambda: service.analyzer().analyze_item(title, content, url, cancelled=cancel.is_set), cancel
            )
        except (ValueError, TypeError, RuntimeError) as exc:
            raise _tool_error(exc) from exc
        return CallToolResult(
            content=[TextContent(type="text", text=json.dumps(result, ensure_ascii=False, indent=2))],
            structured_content=result,
        )

    async def analyze_newsletter(
        text: Annotated[str, Field(description="The whole newsletter: an email (HTML or text), Markdown or text.")],
        format: Annotated[
            Literal["auto", "tldr", "html", "markdown", "text"],
            Field(description="How the newsletter is written; auto detects it."),
        ] = "auto",
        source: Annotated[str | None, Field(description="Newsletter name, when the text does not say.")] = None,
        *,
        ctx: Context,
    ) -> Annotated[CallToolResult, NewsletterReport]:
        """Split a newsletter into its items and analyze each (at most 40; the rest are listed in `notes`).

        The structured result holds every item; the text result is a Markdown report, items by relevance.
        """

        def progress(done: int, total: int, result: dict[str, Any], _seconds: float) -> None:
            anyio.from_thread.run(ctx.report_progress, done, total, f"analyzed {result['title'][:80]}")

        cancel = threading.Event()

        def run() -> dict[str, Any]:
            return service.analyzer().analyze_newsletter(
                text, format, source, on_item=progress, cancelled=cancel.is_set
            )

        try:
            report = await _in_thread(run, cancel)
        except (ValueError, TypeError, RuntimeError) as exc:
            raise _tool_error(exc) from exc
        return CallToolResult(content=[TextContent(type="text", text=report["markdown"])], structured_content=report)

    tools = []
    for fn, schema, title in (
        (analyze_article, "article_result", "Analyze an article"),
        (analyze_newsletter, "newsletter_report", "Analyze a newsletter"),
    ):
        # Both tools only read their arguments and run the local model: no side effects, the same
        # answer for the same input (greedy decoding), nothing fetched (a url is returned as given).
        hints = ToolAnnotations(
            title=title, read_only_hint=True, idempotent_hint=True, open_world_hint=False, destructive_hint=False
        )
        tool = Tool.from_function(
            fn, title=title, description=inspect.cleandoc(fn.__doc__ or ""), annotations=hints, structured_output=True
        )
        # Publish our JSON Schema file (the contract), not pydantic's rendering of its mirror model;
        # results are still validated against the pydantic mirror (a test proves the two agree).
        tool.fn_metadata.output_schema = load_schema(schema)
        tools.append(tool)

    resources = [
        TextResource(
            uri=SCHEMA_URI.format(name=name),
            name=name,
            description=f"JSON Schema {file}",
            mime_type="application/schema+json",
            text=json.dumps(load_schema(name), indent=2),
        )
        for name, file in SCHEMA_FILES.items()
    ]

    lifespan = None
    if warm_up:
        from contextlib import asynccontextmanager

        @asynccontextmanager
        async def lifespan(_server: MCPServer):
            threading.Thread(target=service.warm_up, name="model-load", daemon=True).start()
            yield {}

    return MCPServer(
        name="news-enhancer",
        instructions=INSTRUCTIONS,
        version=_version(),
        tools=tools,
        resources=resources,
        lifespan=lifespan,
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("news-enhancer")
    except PackageNotFoundError:
        return "0"
