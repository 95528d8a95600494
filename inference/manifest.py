"""A small JSON record written beside every artifact: what made it and how well it did.

Generic on purpose: training writes kind="adapter"; export and evaluation add their own `kind` and put
what they need in `extra`, so one reader understands every artifact in the project.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"


def code_version(repo: Path | None = None) -> str:
    """`git describe --always --dirty` of the project checkout, or the package version outside git."""
    repo = repo or Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return "news-enhancer " + version("news-enhancer")
        except PackageNotFoundError:
            return "unknown"


@dataclass
class Manifest:
    kind: str
    """What the artifact is: adapter, gguf, evaluation, ..."""
    config: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    """path, sha256, items (and the same for dev data when there is one)."""
    base_model: dict[str, Any] = field(default_factory=dict)
    """id as configured, resolved path, source file and its sha256."""
    metrics: dict[str, Any] = field(default_factory=dict)
    code_version: str = field(default_factory=code_version)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def write(self, directory: str | Path, name: str = MANIFEST_NAME) -> Path:
        path = Path(directory) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: str | Path) -> Manifest:
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_NAME
        raw = json.loads(path.read_text(encoding="utf-8"))
        known = {f.name for f in dataclasses.fields(cls)}
        extra = {k: v for k, v in raw.items() if k not in known}
        manifest = cls(**{k: v for k, v in raw.items() if k in known})
        manifest.extra.update(extra)
        return manifest
