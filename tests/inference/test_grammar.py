"""The schema -> GBNF converter and the closer for answers cut off by the token budget (no model needed)."""

import json

import pytest

import schemas
from inference.grammar import close_json_prefix, fill_missing, json_schema_to_gbnf, layout_forcer, open_list_items

ANALYSIS = schemas.load_schema("article_analysis")


def rules(gbnf: str) -> dict[str, str]:
    return dict(line.split(" ::= ", 1) for line in gbnf.strip().splitlines())


def test_grammar_follows_the_schema_keys_bounds_and_caps():
    r = rules(json_schema_to_gbnf(ANALYSIS))
    # keys in the schema's (= training answer's) order, each once, nothing else allowed
    root = r["root"]
    positions = [root.index(f'"\\"{key}\\""') for key in schemas.ANALYSIS_KEYS]
    assert positions == sorted(positions)
    assert r["relevance-score"] == "(" + " | ".join(f'"{n}"' for n in range(1, 11)) + ")"
    assert r["summary"] == '"\\"" char{0,300} "\\""'
    assert r["key-insights-item"] == '"\\"" char{1,60} "\\""'
    assert "{0,9}" in r["key-insights"] and "{0,9}" in r["company-names"]  # maxItems 10
    # whitespace allows the trained indent=2 layout but is bounded; strings refuse raw control characters
    assert '"\\n"' in r["ws"] and "{0,8}" in r["ws"]
    assert "\\x00-\\x1F" in r["char"] and '"u"' not in r["char"]


@pytest.mark.parametrize(
    "schema, message",
    [
        ({"type": "object", "properties": {"a": {"type": "string", "maxLength": 3}}}, "required"),
        ({"type": "string"}, "maxLength"),
        ({"type": "array", "items": {"type": "string", "maxLength": 5}}, "maxItems"),
        ({"type": "integer", "minimum": 0}, "maximum"),
        ({"type": "number"}, "not supported"),
    ],
)
def test_unsupported_schemas_are_refused_with_a_reason(schema, message):
    with pytest.raises(ValueError, match=message):
        json_schema_to_gbnf(schema)


@pytest.mark.parametrize(
    "prefix, expected",
    [
        ('{\n  "relevance_score": 7', {"relevance_score": 7}),
        ('{\n  "relevance_score": 7,\n  "summ', {"relevance_score": 7}),
        ('{"relevance_score": 7, "summary": ', {"relevance_score": 7}),
        ('{"relevance_score": 7, "summary": "Half a sent', {"relevance_score": 7, "summary": "Half a sent"}),
        (
            '{"relevance_score": 7, "summary": "ends in an escape \\',
            {"relevance_score": 7, "summary": "ends in an escape "},
        ),
        (
            '{"relevance_score": 2, "summary": "", "key_insights": ["AI", "Ro',
            {"relevance_score": 2, "summary": "", "key_insights": ["AI", "Ro"]},
        ),
        (
            '{"relevance_score": 2, "summary": "", "key_insights": ["AI", "',
            {"relevance_score": 2, "summary": "", "key_insights": ["AI"]},
        ),
        (
            '{"relevance_score": 2, "summary": "a \\"quoted\\" word", "key_insights": [',
            {"relevance_score": 2, "summary": 'a "quoted" word', "key_insights": []},
        ),
    ],
)
def test_a_cut_off_answer_closes_at_its_last_complete_value(prefix, expected):
    assert json.loads(close_json_prefix(prefix)) == expected


def test_closed_and_filled_answers_are_schema_valid():
    cut = '{"relevance_score": 9, "summary": "Nvidia and Foxconn build a hub", "key_insights": ["Robotics", "'
    analysis = fill_missing(json.loads(close_json_prefix(cut)), ANALYSIS)
    assert analysis == {
        "relevance_score": 9,
        "summary": "Nvidia and Foxconn build a hub",
        "key_insights": ["Robotics"],
        "company_names": [],
    }
    assert list(analysis) == list(schemas.ANALYSIS_KEYS)
    schemas.validate("article_analysis", analysis)
    # nothing but the opening brace: the smallest valid answer
    assert fill_missing(json.loads(close_json_prefix("{")), ANALYSIS) == {
        "relevance_score": 1,
        "summary": "",
        "key_insights": [],
        "company_names": [],
    }


@pytest.mark.parametrize(
    "prefix, items",
    [
        ('{"relevance_score": 3, "summary": "a [b", "key_insights": ["AI", "Chips \\" x"', ["AI", 'Chips " x']),
        ('{"relevance_score": 3, "summary": "", "key_insights": ["AI", "Chi', None),  # inside a string
        ('{"relevance_score": 3, "summary": "", "key_insights": ["AI"], "company_names": [', []),
        ('{"relevance_score": 3, "summary": "", "key_insights": ["AI"]', None),  # no list open
        ('{"relevance_score": 3, "summary": "[not a list]"', None),
    ],
)
def test_open_list_items_sees_through_strings_and_escapes(prefix, items):
    assert open_list_items(prefix) == items


KEYS = ("relevance_score", "summary", "key_insights", "company_names")


@pytest.mark.parametrize(
    ("prefix", "forced"),
    [
        ('{\n  "', 'relevance_score":'),
        ('{\n  "relevance_score": 10,\n  "', 'summary":'),
        ('{\n  "relevance_score": 10,\n  "summary": "a \\" b",\n  "', 'key_insights":'),
        ('{\n  "relevance_score": 10,\n  "summary": "', None),  # a value string, not a key
        ('{\n  "relevance_score": 1,\n  "summary": "",\n  "key_insights": [\n    "', None),  # a list item
        ('{\n  "relevance_score": 1,\n  "summary": "x",\n  "key_insights": [],\n  "company_names": [], "', None),
        ('{"relevance_score": 2, "summary": "', None),
    ],
)
def test_jump_forward_forces_the_next_key_only_where_a_key_starts(prefix, forced):
    from inference.grammar import next_key_forcer

    assert next_key_forcer(KEYS)(prefix) == forced


# --- the strict layout and its forcer (jump-forward over everything the model has no choice about) ---


def test_the_strict_grammar_allows_only_the_trained_indent_2_layout():
    r = rules(json_schema_to_gbnf(ANALYSIS, indent=2))
    assert "ws" not in r  # no free whitespace anywhere
    assert r["root"].startswith('"{" "\\n  " "\\"relevance_score\\": " relevance-score "," "\\n  "')
    assert r["root"].endswith('"\\n" "}"')
    # items at 4 spaces, "]" at 2 (an empty list is "[]")
    assert r["key-insights"] == '"[" ("\\n    " key-insights-item ("," "\\n    " key-insights-item){0,9} "\\n  ")? "]"'


@pytest.mark.parametrize(
    ("prefix", "forced"),
    [
        ("", '{\n  "relevance_score":'),  # the space after a colon is the model's: Gemma merges ' "' etc.
        ('{\n  "relevance_score": 7', ',\n  "summary":'),
        ('{\n  "relevance_score": 1', None),  # "1" or "10"
        ('{\n  "relevance_score": 10', ',\n  "summary":'),
        ('{\n  "relevance_score": 10,\n  "summary": "a \\" b', None),  # inside the string: the model's
        ('{\n  "relevance_score": 10,\n  "summary": "a \\" b"', ',\n  "key_insights":'),
        ('{\n  "relevance_score": 3,\n  "summary": "",\n  "key_insights": [', None),  # "]" or an item
        ('{\n  "relevance_score": 3,\n  "summary": "",\n  "key_insights": [\n', '    "'),
        ('{\n  "relevance_score": 3,\n  "summary": "",\n  "key_insights": [\n    "AI"', None),  # "," or "]"
        ('{\n  "relevance_score": 3,\n  "summary": "",\n  "key_insights": [\n    "AI",', '\n    "'),
        ('{\n  "relevance_score": 3,\n  "summary": "",\n  "key_insights": [],', '\n  "company_names":'),
        ('{\n  "relevance_score": 3,\n  "summary": "",\n  "key_insights": [],\n  "company_names": []', "\n}"),
        ('{\n  "relevance_score": 3,\n  "summary": "",\n  "key_insights": [],\n  "company_names": []\n}', None),
        ('{"relevance_score": 3, "summary": "', None),  # not the layout: nothing forced
    ],
)
def test_the_layout_forcer_writes_what_can_only_go_one_way(prefix, forced):
    assert layout_forcer(ANALYSIS)(prefix) == forced


ANSWERS = [
    {"relevance_score": 10, "summary": "", "key_insights": [], "company_names": []},
    {"relevance_score": 1, "summary": 'He said "hi"\nthen left', "key_insights": ["AI"], "company_names": ["Ünï"]},
    {"relevance_score": 7, "summary": "x" * 300, "key_insights": ["t"] * 10, "company_names": ["A", "B"]},
]


@pytest.mark.parametrize("analysis", ANSWERS)
def test_the_forced_text_is_always_what_the_trained_layout_writes_next(analysis):
    """At every character of a training-layout answer, what the forcer writes is the answer's own
    continuation; walking the answer, most of its punctuation and whitespace is forced."""
    from data.prompts import render_answer

    answer, forcer = render_answer(analysis), layout_forcer(ANALYSIS)
    for cut in range(len(answer) + 1):
        forced = forcer(answer[:cut])
        assert forced is None or answer[cut:].startswith(forced), (answer[:cut], forced)
    structure = json.dumps(
        {k: ([""] * len(v) if isinstance(v, list) else "" if isinstance(v, str) else v) for k, v in analysis.items()},
        indent=2,
    )
    written, cut = 0, 0
    while cut < len(answer):
        forced = forcer(answer[:cut])
        if forced:
            written, cut = written + len(forced), cut + len(forced)
        else:
            cut += 1
    assert written >= 0.6 * len(structure)  # most of the layout is forced, not sampled
