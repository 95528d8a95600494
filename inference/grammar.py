"""A llama.cpp grammar (GBNF) from the answer's JSON Schema, and a closer for answers cut off mid-way.

Why our own converter rather than `llama_cpp.LlamaGrammar.from_json_schema`: that one allows only a
single space between tokens (the trained answers are `json.dumps(indent=2)`, with newlines), ignores
integer bounds (1-10), and lets raw control characters into strings (invalid JSON). The schema
subset our answers use is small, so the converter below covers exactly it and refuses the rest.

Every answer decoded under this grammar parses as JSON and fits the schema, provided generation
runs to the closing brace. When the token budget ends first, `close_json_prefix` turns the valid
prefix into a valid object (strings closed, lists ended, missing keys given empty values).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

WHITESPACE = r'ws ::= | " " | "\n" " "{0,8}'
"""Between tokens: nothing, a space, or a newline and an indent (bounded, so it cannot run on)."""

JSON_CHAR = r'char ::= [^"\\\x00-\x1F\x7F] | "\\" ["\\/bfnrt]'
"""One character of a JSON string. No \\u escapes: lone surrogates would break UTF-8 output later."""

SMALL_RANGE = 100
"""Integer ranges up to this width are spelled out as alternatives ("1" | "2" | ... | "10")."""


def json_schema_to_gbnf(schema: dict[str, Any]) -> str:
    """GBNF text whose root rule accepts exactly the JSON objects the schema allows (our subset)."""
    rules: dict[str, str] = {}
    rules["root"] = _visit(schema, "value", rules)
    lines = [f"{name} ::= {body}" for name, body in rules.items()]
    return "\n".join([*lines, WHITESPACE, JSON_CHAR]) + "\n"


def _rule_name(path: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", path).strip("-").lower() or "value"


def _literal(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is also a valid GBNF literal for our plain key names


def _visit(schema: dict[str, Any], path: str, rules: dict[str, str]) -> str:
    """The GBNF expression for one schema node; nested nodes become named rules."""
    kind = schema.get("type")
    if kind == "object":
        return _object(schema, path, rules)
    if kind == "array":
        return _array(schema, path, rules)
    if kind == "string":
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        if high is None:
            raise ValueError(f"{path}: strings need maxLength so a greedy decoder cannot run on forever")
        return f'"\\"" char{{{low},{high}}} "\\""'
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is None or high is None or high - low > SMALL_RANGE:
            raise ValueError(f"{path}: integers need a minimum and maximum at most {SMALL_RANGE} apart")
        return "(" + " | ".join(_literal(str(n)) for n in range(low, high + 1)) + ")"
    raise ValueError(f"{path}: schema type {kind!r} is not supported by the grammar converter")


def _object(schema: dict[str, Any], path: str, rules: dict[str, str]) -> str:
    properties: dict[str, Any] = schema.get("properties", {})
    if schema.get("additionalProperties", True) is not False or set(schema.get("required", [])) != set(properties):
        raise ValueError(f"{path}: objects must list every property as required and forbid additional ones")
    members = []
    for key, sub in properties.items():
        name = _rule_name(f"{path}-{key}" if path != "value" else key)
        rules[name] = _visit(sub, name, rules)
        members.append(f'{_literal(_literal(key))} ":" ws {name}')
    return '"{" ws ' + ' "," ws '.join(members) + ' ws "}"'


def _array(schema: dict[str, Any], path: str, rules: dict[str, str]) -> str:
    low, high = schema.get("minItems", 0), schema.get("maxItems")
    if high is None:
        raise ValueError(f"{path}: arrays need maxItems so a greedy decoder cannot repeat an item forever")
    item = _rule_name(f"{path}-item")
    rules[item] = _visit(schema["items"], item, rules)
    more = f'("," ws {item}){{{max(low - 1, 0)},{high - 1}}}'
    items = f"ws {item} {more}"
    if low == 0:
        items = f"({items})?"
    return f'"[" {items} ws "]"'


# --- closing an answer cut off by the token budget -------------------------------------------------


def _structure(prefix: str) -> tuple[list[tuple[int, str]], bool, bool]:
    """The structural characters of a JSON prefix, outside strings: [(index, char)], where a string
    shows as '"' at its opening quote and as "'" at its closing one; then whether the prefix ends
    inside a string, and right after a backslash there. The one scanner the functions below share."""
    events: list[tuple[int, str]] = []
    in_string = escaped = False
    for i, ch in enumerate(prefix):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
                events.append((i, "'"))
        elif ch == '"':
            in_string = True
            events.append((i, '"'))
        elif not ch.isspace():
            events.append((i, ch))
    return events, in_string, escaped


def close_json_prefix(prefix: str) -> str:
    """Close a JSON prefix (as the grammar produces) at the last point where it can end cleanly.

    A string value in progress is kept and closed; a key in progress, or a value not yet started, is
    dropped together with its comma. Open lists and objects are then closed in order.
    """
    stack: list[str] = []  # open containers, "{" or "["
    expecting_key: list[bool] = []  # per open object: is the next string a key?
    safe_end, safe_stack = 0, []  # the longest prefix that can be closed by brackets alone
    string_is_key = False
    events, in_string, escaped = _structure(prefix)
    for i, ch in events:
        if ch == "'":
            if not string_is_key:
                safe_end, safe_stack = i + 1, list(stack)
        elif ch == '"':
            string_is_key = bool(stack and stack[-1] == "{" and expecting_key[-1])
        elif ch in "{[":
            stack.append(ch)
            expecting_key.append(ch == "{")
            safe_end, safe_stack = i + 1, list(stack)
        elif ch in "}]":
            stack.pop()
            expecting_key.pop()
            safe_end, safe_stack = i + 1, list(stack)
        elif ch == ",":
            if stack and stack[-1] == "{":
                expecting_key[-1] = True
        elif ch == ":":
            expecting_key[-1] = False
        elif ch.isdigit():
            safe_end, safe_stack = i + 1, list(stack)
    if in_string and not string_is_key:
        body = prefix[:-1] if escaped else prefix
        opening = body.rfind('"')
        if len(body) - opening > 1:  # keep a started value string (not an empty one: items have minLength 1)
            return body + '"' + _closers(stack)
    return prefix[:safe_end] + _closers(safe_stack)


def _closers(stack: list[str]) -> str:
    return "".join("}" if c == "{" else "]" for c in reversed(stack))


def fill_missing(obj: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Give every required key that a cut-off answer never reached the smallest value its schema allows."""
    empty = {"string": "", "array": [], "object": {}}
    filled = {}
    for key, sub in schema.get("properties", {}).items():
        if key in obj:
            filled[key] = obj[key]
        elif sub.get("type") == "integer":
            filled[key] = sub.get("minimum", 0)
        else:
            filled[key] = empty[sub["type"]]
    return filled


def open_list_items(prefix: str) -> list[str] | None:
    """The finished string items of the innermost list still open at the end of `prefix`, or None
    when the prefix ends inside a string or outside any list. (Used to notice a list repeating itself.)"""
    stack: list[list[str] | None] = []  # per open container: its items when a list, None for an object
    start = 0
    events, in_string, _ = _structure(prefix)
    for i, ch in events:
        if ch == '"':
            start = i
        elif ch == "'":
            if stack and stack[-1] is not None:
                stack[-1].append(json.loads(prefix[start : i + 1]))
        elif ch == "[":
            stack.append([])
        elif ch == "{":
            stack.append(None)
        elif ch in "]}":
            stack.pop()
    if in_string or not stack or stack[-1] is None:
        return None
    return stack[-1]


@dataclass(frozen=True)
class Probe:
    """Read the model's probabilities over a few answers at one position, and optionally choose one.

    Where the answer so far matches `after` and the next token starts one of `choices` (e.g. the
    scores "1".."10"), the engine computes P(choice) for every choice from the logits, exactly:
    a choice of two tokens ("10" = "1","0") costs one extra decode step on a scratch position, and
    P("1") is what is left of the "1" branch. `choose(probabilities) -> choice` (None: keep the
    greedy answer) picks what is written; its tokens are then forced, under the grammar.
    """

    after: re.Pattern[str]
    choices: tuple[str, ...]
    choose: Callable[[dict[str, float]], str] | None = None


@dataclass(frozen=True)
class Constraint:
    """What an answer must look like, handed to the engine (which knows nothing about news or JSON).

    `grammar`: GBNF text; `is_complete(text)`: the answer is whole and generation stops (asked when a
    token ends in `stop_chars`); `repeats_itself(text)`: the open list just repeated an item, so the
    engine offers only list-closing tokens next (asked when a token ends in `list_chars`).
    """

    grammar: str
    is_complete: Callable[[str], bool]
    repeats_itself: Callable[[str], bool]
    stop_chars: bytes = b"}"
    list_chars: bytes = b'"'
    list_closers: tuple[str, ...] = ("]", " ]", "\n]", "\n  ]", "\n    ]")
    """Texts that end a list; those that are single tokens are offered when a list repeats itself."""
    probe: Probe | None = None
    forced: Callable[[str], str | None] | None = None
    """Text the grammar allows in one way only after the answer so far (e.g. the rest of a key):
    the engine writes its tokens without a sampling step, in one decode call (jump-forward)."""


def is_complete_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def repeats_itself(text: str) -> bool:
    """True right after a list item that the same list already holds: a small model that repeats an
    item once usually repeats it until the list is full (maxItems), so the list is ended instead."""
    items = open_list_items(text)
    return bool(items) and items[-1] in items[:-1]


def next_key_forcer(keys: tuple[str, ...]) -> Callable[[str], str | None]:
    """Jump-forward for an object whose keys come in a fixed order (as the grammar writes them): once
    the opening quote of a top-level key is written, the key's name and `":` are forced."""
    literals = tuple(f'"{key}":' for key in keys)

    def forced(text: str) -> str | None:
        if not text.endswith('"') or not _opens_top_level_key(text):
            return None
        done = sum(literal in text for literal in literals)  # an unescaped `"key":` cannot sit inside a string
        return literals[done][1:] if done < len(literals) else None

    return forced


def _opens_top_level_key(text: str) -> bool:
    """Whether the last character of `text` is a quote opening a key of the outermost object."""
    events, in_string, _ = _structure(text)
    if not in_string or len(events) < 2 or events[-1] != (len(text) - 1, '"'):
        return False
    depth = sum(1 if ch in "{[" else -1 if ch in "}]" else 0 for _, ch in events)
    return depth == 1 and events[-2][1] in ("{", ",")


def json_constraint(schema: dict[str, Any], probe: Probe | None = None) -> Constraint:
    """The constraint for answers that are JSON objects following `schema` (keys in its order)."""
    forced = next_key_forcer(tuple(schema.get("properties", {})))
    return Constraint(json_schema_to_gbnf(schema), is_complete_json, repeats_itself, probe=probe, forced=forced)
