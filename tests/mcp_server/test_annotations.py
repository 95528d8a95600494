"""The MCP conventions clients and registries expect: what a real MCP client sees of the tools' annotations
(both tools read-only, idempotent, closed-world and non-destructive, with a human-readable title), and a
`server.json` for the MCP Registry that agrees with the package it describes.

The server is the real `news-enhancer serve` process over stdio, on the fake engine (as in test_protocol.py).
"""

import json
import re

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import pytest

from inference.options import MODEL_OPTIONS
from news_enhancer.cli import COMMANDS
from tests.mcp_client import FAKE, ROOT, mcp_session

TITLES = {"analyze_article": "Analyze an article", "analyze_newsletter": "Analyze a newsletter"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with mcp_session(tmp_path_factory.mktemp("server") / "stderr.log", *FAKE, legacy=False) as client:
        yield client


def test_both_tools_carry_read_only_idempotent_closed_world_annotations(server):
    # The client parses the wire's camelCase names (readOnlyHint, ...) and ignores unknown keys, so a
    # server that sent other names would show None here.
    tools = {tool.name: tool for tool in server.list_tools().tools}
    assert set(tools) == set(TITLES)
    for name, title in TITLES.items():
        tool = tools[name]
        assert tool.title == title
        hints = tool.annotations
        assert hints is not None, f"{name} has no annotations"
        assert hints.title == title
        assert hints.read_only_hint is True
        assert hints.idempotent_hint is True
        assert hints.open_world_hint is False
        assert hints.destructive_hint is False


# --- server.json for the MCP Registry -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_json():
    return json.loads((ROOT / "server.json").read_text(encoding="utf-8"))


def test_server_json_describes_the_pypi_package_over_stdio(server_json):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert server_json["$schema"] == "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
    assert re.fullmatch(r"[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+", server_json["name"])
    assert 1 <= len(server_json["description"]) <= 100  # the registry's limit
    (package,) = server_json["packages"]
    assert package["registryType"] == "pypi" and package["registryBaseUrl"] == "https://pypi.org"
    assert package["identifier"] == project["name"]
    assert server_json["version"] == package["version"] == project["version"]  # published together
    assert package["transport"] == {"type": "stdio"}
    assert [arg["value"] for arg in package["packageArguments"]] == ["serve"]
    assert "serve" in COMMANDS and project["scripts"]["news-enhancer"] == "news_enhancer.cli:main"
    known = {opt.env for opt in MODEL_OPTIONS}
    assert {var["name"] for var in package["environmentVariables"]} <= known


def test_the_readme_carries_the_registry_ownership_marker(server_json):
    # The registry proves that the PyPI package is the publisher's by finding this line in its README.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"mcp-name: {server_json['name']}" in readme
