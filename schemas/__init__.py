"""The output contract shared by training, serving and evaluation.

The JSON Schema files beside this module are the source of truth; `models.py` mirrors them in
pydantic and a test proves the two agree. Everything that checks or constrains an answer (the
decoding grammar, the MCP output schemas, the trainers' answer check, the evaluation parser)
loads its schema from here.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jsonschema

ANALYSIS_KEYS = ("relevance_score", "summary", "key_insights", "company_names")
"""The model's answer keys, in the order the training answers write them."""

SCHEMA_FILES = {
    "article_analysis": "article_analysis.schema.json",
    "article_result": "article_result.schema.json",
    "newsletter_report": "newsletter_report.schema.json",
}


@cache
def _load(name: str) -> dict[str, Any]:
    return json.loads(files(__name__).joinpath(SCHEMA_FILES[name]).read_text(encoding="utf-8"))


def _bundle(node: Any) -> Any:
    """Inline `{"$ref": "<file>.schema.json"}` so that a schema stands alone (MCP clients don't resolve refs)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.endswith(".schema.json"):
            name = next(k for k, v in SCHEMA_FILES.items() if v == ref)
            inner = {k: v for k, v in _load(name).items() if k not in ("$schema", "$id")}
            return _bundle(inner)
        return {k: _bundle(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_bundle(v) for v in node]
    return node


def load_schema(name: str) -> dict[str, Any]:
    """A self-contained copy of the named schema (`article_analysis`, `article_result`, `newsletter_report`)."""
    return copy.deepcopy(_bundle(_load(name)))


@cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    # Imported here, not at the top: the MCP server imports this package on its start-up path, where
    # jsonschema's ~0.15 s would delay `tools/list`; validation only happens once a tool runs.
    import jsonschema

    return jsonschema.Draft202012Validator(load_schema(name))


def validate(name: str, instance: Any) -> None:
    """Raise `jsonschema.ValidationError` when `instance` breaks the named schema."""
    _validator(name).validate(instance)


def errors(name: str, instance: Any) -> list[str]:
    """Every violation of the named schema, as readable lines (empty when valid)."""
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in _validator(name).iter_errors(instance)
    ]
