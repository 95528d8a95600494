"""The packages stand in one line and data flows one way: no package imports one that stands after it.

The order is the README's pipeline picture. Read with `ast` (every import, at any depth, lazy ones
included), so the picture stays true as the code changes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LAYERS: tuple[tuple[str, ...], ...] = (
    ("schemas",),
    ("data",),
    ("ingest",),
    ("inference",),
    ("trainers",),
    ("export",),
    ("evaluation",),
    ("mcp_server", "workflows"),
    ("news_enhancer",),
)
"""Bottom first. A package may import its own layer's package only if it is itself (mcp_server and
workflows are two top stages side by side and must not import each other)."""

RANK = {package: rank for rank, layer in enumerate(LAYERS) for package in layer}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & RANK.keys()


def modules() -> list[Path]:
    return sorted(p for package in RANK for p in (ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_package_imports_one_that_stands_after_it(path):
    package = path.relative_to(ROOT).parts[0]
    wrong = sorted(q for q in imported_packages(path) if q != package and RANK[q] >= RANK[package])
    assert not wrong, f"{path.relative_to(ROOT)} ({package}) imports {wrong}, which stand at or after it"


def test_the_check_sees_lazy_and_nested_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from mcp_server.server import build_server\n    import evaluation.gate\n")
    assert imported_packages(module) == {"mcp_server", "evaluation"}


def test_mcp_server_holds_only_the_mcp_layer():
    assert sorted(p.name for p in (ROOT / "mcp_server").glob("*.py")) == ["__init__.py", "commands.py", "server.py"]
