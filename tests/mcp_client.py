"""Real MCP clients for the tests: the SDK's client over stdio, and raw JSON-RPC lines on a subprocess.

One copy for every test module that talks to `news-enhancer serve` (the protocol tests on the fake
engine, the real-model server tests, the annotations, the remote backend).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from anyio.from_thread import start_blocking_portal
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

import schemas

ROOT = Path(__file__).resolve().parents[1]
SERVE = [sys.executable, "-m", "news_enhancer.cli", "serve"]
FAKE = ["--engine", "tests.fakes:FakeEngine"]
"""The fake engine, selected as a user selects an engine: protocol checks without a model."""


class SyncClient:
    """The SDK's async Client, called from sync tests through an anyio portal."""

    def __init__(self, portal, client):
        self.portal, self.client = portal, client

    def __getattr__(self, name):
        method = getattr(self.client, name)
        return lambda *args, **kwargs: self.portal.call(lambda: method(*args, **kwargs))


@contextlib.contextmanager
def mcp_session(log_path: Path, *options: str, legacy: bool = True, clean_env: bool = False) -> Iterator[SyncClient]:
    """`news-enhancer serve OPTIONS` as a subprocess with the SDK's client on its stdio; stderr to `log_path`.

    `legacy`: the SDK's legacy protocol mode (what most clients speak); `clean_env`: no NEWS_ENHANCER_*
    variables from the test's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWS_ENHANCER_")} if clean_env else None
    params = StdioServerParameters(command=SERVE[0], args=[*SERVE[1:], *options], cwd=str(ROOT), env=env)
    kwargs = {"mode": "legacy"} if legacy else {}
    with log_path.open("w") as log, start_blocking_portal() as portal:
        client = Client(stdio_client(params, errlog=log), read_timeout_seconds=600, **kwargs)
        with portal.wrap_async_context_manager(client) as connected:
            yield SyncClient(portal, connected)


def check_newsletter_tool(server: SyncClient, text: str, items: int) -> dict:
    """Call analyze_newsletter (source "TLDR AI") with a progress callback and check the contract every
    engine must keep: one progress notification per item, a schema-valid report, the Markdown as text."""
    progress = []

    async def on_progress(done, total, message):
        progress.append((done, total, message))

    result = server.call_tool("analyze_newsletter", {"text": text, "source": "TLDR AI"}, progress_callback=on_progress)
    report = structured(result, "newsletter_report")
    assert [(done, total) for done, total, _ in progress] == [(i, items) for i in range(1, items + 1)]
    assert all(message.startswith("analyzed ") for _, _, message in progress)
    assert report["source"] == "TLDR AI" and report["format"] == "tldr"
    assert len(report["items"]) == items and report["items_found"] > items
    assert result.content[0].text == report["markdown"]
    return report


def structured(result, schema: str) -> dict:
    """The tool result's structured content, checked against `schema`."""
    assert not result.is_error, result.content
    schemas.validate(schema, result.structured_content)
    return result.structured_content


class RawServer:
    """The server as a plain subprocess: JSON-RPC lines in, every stdout line collected."""

    def __init__(self, *options: str, log_level: str = "DEBUG"):
        env = {**os.environ, "NEWS_ENHANCER_LOG_LEVEL": log_level}
        self.proc = subprocess.Popen(
            [*SERVE, *options], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.stdout: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.stderr_chunks: list[bytes] = []
        threading.Thread(target=lambda: self.stderr_chunks.extend(self.proc.stderr), daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.stdout.append(line)
            self.lines.put(line)

    def send(self, message: dict) -> None:
        self.proc.stdin.write(json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n")
        self.proc.stdin.flush()

    def response(self, request_id: int, timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.lines.get(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == request_id:
                return message

    def handshake(self) -> dict:
        self.send(
            {
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "0"},
                },
            }
        )
        init = self.response(1)
        self.send({"method": "notifications/initialized"})
        return init

    def close(self) -> str:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        return b"".join(self.stderr_chunks).decode("utf-8", errors="replace")
