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


def json_schema_to_gbnf(schema: dict[str, Any], indent: int | None = None) -> str:
    """GBNF text whose root rule accepts exactly the JSON objects the schema allows (our subset).

    `indent`: None allows any whitespace between tokens (`WHITESPACE`); a number allows only the
    layout `json.dumps(indent=indent)` writes, the one the model was trained on. Then nearly all
    punctuation and whitespace is forced, and `layout_forcer` writes it without sampling steps."""
    rules: dict[str, str] = {}
    rules["root"] = _visit(schema, "value", rules, _Layout(indent))
    lines = [f"{name} ::= {body}" for name, body in rules.items()]
    extra = [WHITESPACE] if indent is None else []
    return "\n".join([*lines, *extra, JSON_CHAR]) + "\n"


@dataclass(frozen=True)
class _Layout:
    """Where the grammar puts whitespace: anywhere (`ws`, indent None) or exactly as json.dumps does."""

    indent: int | None
    depth: int = 0

    def deeper(self) -> _Layout:
        return _Layout(self.indent, self.depth + 1)

    def open(self) -> str:
        """After an opening bracket, before the first member (and after each comma)."""
        return "ws" if self.indent is None else _literal("\n" + " " * (self.indent * (self.depth + 1)))

    def close(self) -> str:
        """After the last member, before the closing bracket."""
        return "ws" if self.indent is None else _literal("\n" + " " * (self.indent * self.depth))

    def key(self, key: str) -> str:
        """A member's key and colon, up to its value."""
        if self.indent is None:
            return f'{_literal(_literal(key))} ":" ws'
        return _literal(_literal(key) + ": ")

    def inside(self) -> tuple[str, str]:
        """What closes a non-empty list inside its optional part, and what closes any list outside it."""
        return ("", "ws ") if self.indent is None else (" " + self.close(), "")


def _rule_name(path: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", path).strip("-").lower() or "value"


def _literal(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is also a valid GBNF literal for our plain key names


def _visit(schema: dict[str, Any], path: str, rules: dict[str, str], layout: _Layout) -> str:
    """The GBNF expression for one schema node; nested nodes become named rules."""
    kind = schema.get("type")
    if kind == "object":
        return _object(schema, path, rules, layout)
    if kind == "array":
        return _array(schema, path, rules, layout)
    if kind == "string":
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        if high is None:
            raise ValueError(f"{path}: strings need maxLength so a greedy decoder cannot run on forever")
        return f'"\\"" char{{{low},{high}}} "\\""'
    if kind == "integer":
        low, high = _int_range(schema, path)
        return "(" + " | ".join(_literal(str(n)) for n in range(low, high + 1)) + ")"
    raise ValueError(f"{path}: schema type {kind!r} is not supported by the grammar converter")


def _int_range(schema: dict[str, Any], path: str) -> tuple[int, int]:
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is None or high is None or high - low > SMALL_RANGE:
        raise ValueError(f"{path}: integers need a minimum and maximum at most {SMALL_RANGE} apart")
    return low, high


def _object(schema: dict[str, Any], path: str, rules: dict[str, str], layout: _Layout) -> str:
    properties: dict[str, Any] = schema.get("properties", {})
    if schema.get("additionalProperties", True) is not False or set(schema.get("required", [])) != set(properties):
        raise ValueError(f"{path}: objects must list every property as required and forbid additional ones")
    members = []
    for key, sub in properties.items():
        name = _rule_name(f"{path}-{key}" if path != "value" else key)
        rules[name] = _visit(sub, name, rules, layout.deeper())
        members.append(f"{layout.key(key)} {name}")
    between = f' "," {layout.open()} '
    return f'"{{" {layout.open()} ' + between.join(members) + f' {layout.close()} "}}"'


def _array(schema: dict[str, Any], path: str, rules: dict[str, str], layout: _Layout) -> str:
    low, high = schema.get("minItems", 0), schema.get("maxItems")
    if high is None:
        raise ValueError(f"{path}: arrays need maxItems so a greedy decoder cannot repeat an item forever")
    item = _rule_name(f"{path}-item")
    rules[item] = _visit(schema["items"], item, rules, layout.deeper())
    more = f'("," {layout.open()} {item}){{{max(low - 1, 0)},{high - 1}}}'
    inner, outer = layout.inside()
    items = f"{layout.open()} {item} {more}{inner}"
    if low == 0:
        items = f"({items})?"
    return f'"[" {items} {outer}"]"'


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


class _Open(Exception):
    """The text ends inside a node: `forced` is what the layout allows next in one way only ("" if several)."""

    def __init__(self, forced: str):
        self.forced = forced


class _Mismatch(Exception):
    """The text does not follow the layout (it was not written under the strict grammar)."""


Node = tuple
"""A layout node: ("lit", text) forced; ("soft", text) and ("open", text) the layout's but written by the
model (forced only once it has begun); ("int", low, high); ("str", opening node); ("seq", nodes);
("list", item, min_items, max_items, item_indent, close_indent)."""


def _layout_node(schema: dict[str, Any], indent: int, depth: int = 0) -> Node:
    """The answer's exact layout (json.dumps(indent=indent)) as nodes, for `layout_forcer`."""
    kind, pad = schema.get("type"), " " * (indent * (depth + 1))
    if kind == "object":
        parts: list[Node] = [("lit", "{\n" + pad)]
        for i, (key, sub) in enumerate(schema.get("properties", {}).items()):
            key_text = (",\n" + pad if i else "") + json.dumps(key) + ":"
            parts += [("lit", key_text), ("soft", " "), _layout_node(sub, indent, depth + 1)]
        return ("seq", [*parts, ("lit", "\n" + " " * (indent * depth) + "}")])
    if kind == "array":
        item = _layout_node(schema["items"], indent, depth + 1)
        return ("list", item, schema.get("minItems", 0), schema["maxItems"], pad, " " * (indent * depth))
    if kind == "integer":
        return ("int", *_int_range(schema, "value"))
    return ("str", ("open", '"') if depth <= 1 else ("lit", '"'))


def _match(node: Node, text: str, pos: int) -> int:
    """Where `node` ends when it starts at `pos`; raises _Open when the text ends inside it."""
    kind, rest = node[0], text[pos:]
    if kind in ("soft", "open") and not rest:
        raise _Open("")  # the model writes it: its token may merge with what follows (' "",', ' []')
    if kind in ("lit", "soft", "open"):
        if rest.startswith(node[1]):
            return pos + len(node[1])
        if node[1].startswith(rest):
            raise _Open(node[1][len(rest) :])
        raise _Mismatch
    if kind == "seq":
        for sub in node[1]:
            pos = _match(sub, text, pos)
        return pos
    if kind == "int":
        digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
        values = [str(n) for n in range(node[1], node[2] + 1)]
        if len(digits) == len(rest):  # the number may go on
            longer = [v for v in values if v.startswith(digits) and v != digits]
            if not (digits in values and not longer):
                raise _Open(longer[0][len(digits) :] if len(longer) == 1 and digits not in values else "")
        elif digits not in values:
            raise _Mismatch
        return pos + len(digits)
    if kind == "str":
        start = _match(node[1], text, pos)
        escaped = False
        for i in range(start, len(text)):
            if escaped:
                escaped = False
            elif text[i] == "\\":
                escaped = True
            elif text[i] == '"':
                return i + 1
        raise _Open("")  # inside the string: its text is the model's
    _, item, low, high, pad, close = node
    pos = _match(("open", "["), text, pos)
    if text[pos:].startswith("]") and low == 0:
        return pos + 1
    if pos == len(text) and low == 0:
        raise _Open("")  # "]" or the first item
    count = 0
    while True:
        pos = _match(("lit", ("\n" if count == 0 else ",\n") + pad), text, pos)
        pos = _match(item, text, pos)
        count += 1
        if count < high and pos == len(text):
            raise _Open("" if count >= low else ",\n" + pad)
        if count >= high or not text[pos:].startswith(","):
            return _match(("lit", "\n" + close + "]"), text, pos)


def layout_forcer(schema: dict[str, Any], indent: int = 2) -> Callable[[str], str | None]:
    """Jump-forward for answers in json.dumps(indent=indent) layout (the strict grammar's): after the
    answer so far, the text that can only go one way, e.g. `,\n  "summary": "` after a score of 7 or
    `\n    "` after a list's comma. Strings' contents, their ends, a list's length are the model's."""
    root = _layout_node(schema, indent)

    def forced(text: str) -> str | None:
        total = ""
        while True:
            try:
                _match(root, text + total, 0)
                return total or None  # the answer is complete
            except _Open as open_:
                if not open_.forced:
                    return total or None
                total += open_.forced
            except _Mismatch:
                return total or None

    return forced


ANSWER_INDENT = 2
"""The answers' layout: json.dumps(indent=2), as the training data writes them (data.prompts.render_answer).
The grammar allows that layout only, so its punctuation and whitespace are forced (`layout_forcer`)."""


def json_constraint(
    schema: dict[str, Any], probe: Probe | None = None, indent: int | None = ANSWER_INDENT
) -> Constraint:
    """The constraint for answers that are JSON objects following `schema` (keys in its order), in the
    layout json.dumps(indent=indent) writes (None: any whitespace, only the keys forced)."""
    keys = tuple(schema.get("properties", {}))
    forced = next_key_forcer(keys) if indent is None else layout_forcer(schema, indent)
    grammar = json_schema_to_gbnf(schema, indent)
    return Constraint(grammar, is_complete_json, repeats_itself, probe=probe, forced=forced)
