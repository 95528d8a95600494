"""The MCP layer over real stdio with real clients (the SDK's client, raw JSON-RPC lines), on a fake engine.

The server is the real `news-enhancer serve` process; only the engine is `tests.fakes:FakeEngine`
(selected with --engine, as a user selects one), so these protocol checks need no model and run in
seconds. What the real model answers is checked in test_server.py.
"""

import json
import os
import subprocess
import time

import pytest

import schemas
from tests.conftest import NEWSLETTERS
from tests.mcp_client import FAKE as FAKE_ENGINE
from tests.mcp_client import ROOT, SERVE, RawServer, check_newsletter_tool, mcp_session, structured

FAKE = [*FAKE_ENGINE, "--max-items", "2"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with mcp_session(tmp_path_factory.mktemp("server") / "stderr.log", *FAKE) as client:
        yield client


# --- protocol surface -----------------------------------------------------------------------------------


def test_initialize_and_tools_with_input_and_output_schemas(server):
    assert server.client.server_info.name == "news-enhancer"
    tools = {tool.name: tool for tool in server.list_tools().tools}
    assert set(tools) == {"analyze_article", "analyze_newsletter"}
    article, newsletter = tools["analyze_article"], tools["analyze_newsletter"]
    assert article.input_schema["required"] == ["title", "content"]
    assert set(article.input_schema["properties"]) == {"title", "content", "url"}
    assert newsletter.input_schema["required"] == ["text"]
    assert newsletter.input_schema["properties"]["format"]["enum"] == ["auto", "tldr", "html", "markdown", "text"]
    assert "ctx" not in newsletter.input_schema["properties"]
    assert article.output_schema == schemas.load_schema("article_result")
    assert newsletter.output_schema == schemas.load_schema("newsletter_report")


def test_the_schemas_are_resources(server):
    uris = {str(r.uri) for r in server.list_resources().resources}
    assert uris == {f"schema://news-enhancer/{name}" for name in schemas.SCHEMA_FILES}
    content = server.read_resource("schema://news-enhancer/article_analysis").contents[0]
    assert json.loads(content.text) == schemas.load_schema("article_analysis")


def test_a_client_on_the_newest_protocol_also_gets_the_tools(tmp_path):
    with mcp_session(tmp_path / "stderr.log", *FAKE, legacy=False) as client:
        names = [tool.name for tool in client.list_tools().tools]
        version = client.client.protocol_version
    assert names == ["analyze_article", "analyze_newsletter"]
    assert version >= "2025-06-18"


# --- the tools' contract: structured results, progress, errors, caps ---------------------------------------


def test_both_tools_return_schema_valid_structured_results_and_text(server):
    result = server.call_tool("analyze_article", {"title": "Nvidia and Foxconn build a hub", "content": "They spend."})
    article = structured(result, "article_result")
    assert article["title"] == "Nvidia and Foxconn build a hub"
    assert json.loads(result.content[0].text) == article
    text = (NEWSLETTERS / "tldr_ai.html").read_text(encoding="utf-8")
    check_newsletter_tool(server, text, items=2)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"title": "", "content": ""}, "title and the content are both empty"),
        ({"title": "\x00\x01\x02", "content": "\u200b\ufeff \x7f"}, "title and the content are both empty"),
        ({"title": "No content given"}, "content"),  # the SDK's argument validation
        ({"title": 42, "content": ["not", "text"]}, "content"),
    ],
)
def test_bad_article_arguments_are_tool_errors(server, arguments, message):
    result = server.call_tool("analyze_article", arguments)
    assert result.is_error
    assert message in result.content[0].text


def test_bad_newsletter_arguments_are_tool_errors(server):
    for arguments, message in (
        ({"text": " \n "}, "newsletter text is empty"),
        ({"text": "x", "format": "pdf"}, "format\n  Input should be 'auto', 'tldr', 'html', 'markdown' or 'text'"),
    ):
        result = server.call_tool("analyze_newsletter", arguments)
        assert result.is_error and message in result.content[0].text


def test_an_answer_cut_at_the_token_budget_says_so(server):
    cut = structured(
        server.call_tool("analyze_article", {"title": "FAKE_CUT", "content": "a long answer"}), "article_result"
    )
    assert cut["complete"] is False and cut["incomplete_reason"] == "max_tokens"
    assert cut["summary"] == "" and cut["key_insights"] == []  # the filler the closed answer got
    whole = structured(server.call_tool("analyze_article", {"title": "Whole", "content": "Short."}), "article_result")
    assert whole["complete"] is True and whole["incomplete_reason"] is None


def test_an_engine_failure_is_a_tool_error_and_the_server_keeps_serving(server):
    result = server.call_tool("analyze_article", {"title": "FAKE_FAIL", "content": "the engine raises"})
    assert result.is_error and "told to fail" in result.content[0].text
    structured(server.call_tool("analyze_article", {"title": "Fine", "content": "Again."}), "article_result")


HOSTILE = {
    "binary junk": ("Firmware dump", bytes(range(256)).decode("latin-1") * 8),
    "control characters": ("Open\x00AI\x07 ships\x1b[31m GPT-5", "It\x0c reasons\x08 better.\r\nMore\x00 soon."),
    "html": (
        "<b>Big</b> news",
        "<html><body><p>OpenAI <b>launched</b> GPT-5.</p><script>alert(1)</script></body></html>",
    ),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_articles_are_cleaned_before_the_engine_sees_them(server, case):
    title, content = HOSTILE[case]
    article = structured(server.call_tool("analyze_article", {"title": title, "content": content}), "article_result")
    assert "<" not in article["title"] and "\x00" not in article["title"] and "\x1b" not in article["title"]


@pytest.mark.timeout(300)
def test_a_1mb_newsletter_is_capped_not_hung(server):
    one = (NEWSLETTERS / "tldr_ai.html").read_text(encoding="utf-8")
    text = one * (1_000_000 // len(one) + 1)
    assert len(text.encode()) >= 1_000_000
    report = structured(server.call_tool("analyze_newsletter", {"text": text}), "newsletter_report")
    assert len(report["items"]) == 2
    assert report["items_found"] > 100
    assert any("analyzed the first 2" in note for note in report["notes"])


def test_the_server_still_serves_after_all_that(server):
    assert len(server.list_tools().tools) == 2


# --- raw stdio: nothing but JSON-RPC on stdout; tools/list before (and without) a model -------------------


def test_stdout_carries_only_json_rpc_while_the_server_logs():
    raw = RawServer(*FAKE)
    try:
        assert raw.handshake()["result"]["serverInfo"]["name"] == "news-enhancer"
        raw.send({"id": 2, "method": "tools/list"})
        assert len(raw.response(2, timeout=60)["result"]["tools"]) == 2
        call = {"name": "analyze_article", "arguments": {"title": "Meta opens Llama 5", "content": "Weights are out."}}
        raw.send({"id": 3, "method": "tools/call", "params": call})
        result = raw.response(3, timeout=60)["result"]
        assert not result.get("isError")
        schemas.validate("article_result", result["structuredContent"])
    finally:
        stderr = raw.close()
    assert raw.stdout and all(json.loads(line)["jsonrpc"] == "2.0" for line in raw.stdout)
    assert "DEBUG" in stderr  # the server logged, to stderr


def test_tools_list_answers_without_a_model_and_the_call_names_the_missing_file(tmp_path):
    missing = tmp_path / "missing.gguf"
    raw = RawServer("--model", str(missing), log_level="INFO")
    try:
        raw.handshake()
        raw.send({"id": 2, "method": "tools/list"})
        assert len(raw.response(2, timeout=60)["result"]["tools"]) == 2
        raw.send(
            {
                "id": 3,
                "method": "tools/call",
                "params": {"name": "analyze_article", "arguments": {"title": "t", "content": "c"}},
            }
        )
        result = raw.response(3, timeout=60)["result"]
        assert result["isError"] and str(missing) in result["content"][0]["text"]
        raw.send({"id": 4, "method": "tools/list"})  # still serving
        assert len(raw.response(4, timeout=60)["result"]["tools"]) == 2
    finally:
        raw.close()
    assert all(json.loads(line)["jsonrpc"] == "2.0" for line in raw.stdout)


# --- a client people use ---------------------------------------------------------------------------------

INSPECTOR = ROOT / "tools" / "mcp-inspector" / "node_modules" / ".bin" / "mcp-inspector"
"""Installed, pinned, from the project's own tools/mcp-inspector/package.json + lock by scripts/setup.sh."""


def test_the_mcp_inspector_cli_lists_the_tools():
    if not INSPECTOR.exists():
        message = f"the MCP Inspector is not installed at {INSPECTOR} (scripts/setup.sh installs it with npm)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)  # CI installs it: missing there is a broken setup, never a quiet skip
        pytest.skip(message)
    command = [str(INSPECTOR), "--cli", *SERVE, *FAKE, "--method", "tools/list"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    names = [tool["name"] for tool in json.loads(done.stdout)["tools"]]
    assert names == ["analyze_article", "analyze_newsletter"]


def test_a_cancelled_tool_call_stops_the_engine_and_the_server_keeps_serving(tmp_path):
    """notifications/cancelled reaches the engine: the fake engine, told to be slow, sees `cancelled()`."""
    raw = RawServer(*FAKE, "--max-items", "40")
    try:
        raw.handshake()
        text = (NEWSLETTERS / "tldr_ai.html").read_text(encoding="utf-8").replace("Mistral", "FAKE_SLOW Mistral")
        raw.send(
            {"id": 2, "method": "tools/call", "params": {"name": "analyze_newsletter", "arguments": {"text": text}}}
        )
        time.sleep(1.0)
        raw.send({"method": "notifications/cancelled", "params": {"requestId": 2, "reason": "test"}})
        call = {"name": "analyze_article", "arguments": {"title": "After", "content": "Still serving."}}
        raw.send({"id": 3, "method": "tools/call", "params": call})
        result = raw.response(3, timeout=60)["result"]
        assert not result.get("isError")
    finally:
        stderr = raw.close()
    assert "fake engine: cancelled" in stderr
