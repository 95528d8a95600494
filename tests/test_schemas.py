"""The JSON Schema files and the pydantic models must accept and reject the same things."""

import json

import jsonschema
import pydantic
import pytest

import schemas
from schemas.models import ArticleAnalysis, ArticleResult, NewsletterReport

GOOD = {"relevance_score": 9, "summary": "", "key_insights": ["AI Model", "GitHub Repo"], "company_names": ["OpenAI"]}
RESULT = {
    **GOOD,
    "title": "T",
    "url": None,
    "content": "The item's text.",
    "is_sponsored": False,
    "truncated": False,
    "complete": True,
    "incomplete_reason": None,
    "relevance": None,
}

BAD_ANALYSES = [
    {**GOOD, "relevance_score": 0},
    {**GOOD, "relevance_score": 11},
    {**GOOD, "relevance_score": "9"},
    {**GOOD, "summary": "x" * 301},
    {**GOOD, "key_insights": ["t"] * 11},
    {**GOOD, "key_insights": [""]},
    {**GOOD, "key_insights": ["x" * 61]},
    {**GOOD, "company_names": [3]},
    {**GOOD, "extra": 1},
    {k: v for k, v in GOOD.items() if k != "summary"},
]


def pydantic_accepts(model: type[pydantic.BaseModel], instance: dict) -> bool:
    try:
        model.model_validate_json(json.dumps(instance))  # JSON mode: no lax str->int coercion surprises
    except pydantic.ValidationError:
        return False
    return True


def schema_accepts(name: str, instance: dict) -> bool:
    return not schemas.errors(name, instance)


@pytest.mark.parametrize("instance", [GOOD, *BAD_ANALYSES])
def test_analysis_schema_and_model_agree(instance):
    assert schema_accepts("article_analysis", instance) == pydantic_accepts(ArticleAnalysis, instance)


def test_good_answer_is_valid_and_bad_ones_are_not():
    assert schema_accepts("article_analysis", GOOD)
    assert not any(schema_accepts("article_analysis", bad) for bad in BAD_ANALYSES)


@pytest.mark.parametrize("bad", BAD_ANALYSES[:-2])
def test_result_schema_and_model_agree(bad):
    for instance in (RESULT, {**RESULT, **bad}):
        assert schema_accepts("article_result", instance) == pydantic_accepts(ArticleResult, instance)


DISTRIBUTION = {"expected": 7.4, "confidence": 0.6, "probabilities": [0.0] * 6 + [0.2, 0.6, 0.1, 0.1], "rule": "median"}
RESULT_CASES = [
    ({"relevance": DISTRIBUTION}, True),
    ({"complete": False, "incomplete_reason": "max_tokens"}, True),
    ({"complete": "yes"}, False),
    ({"incomplete_reason": "tired"}, False),
    ({"content": "x" * 2001}, False),
    ({"relevance": {**DISTRIBUTION, "probabilities": [0.1] * 9}}, False),
    ({"relevance": {**DISTRIBUTION, "expected": 0.5}}, False),
    ({"relevance": {**DISTRIBUTION, "extra": 1}}, False),
    ({"relevance": {k: v for k, v in DISTRIBUTION.items() if k != "rule"}}, False),
]


@pytest.mark.parametrize(("change", "valid"), RESULT_CASES)
def test_result_completeness_and_relevance_fields(change, valid):
    instance = {**RESULT, **change}
    assert schema_accepts("article_result", instance) is valid
    assert pydantic_accepts(ArticleResult, instance) is valid


def test_result_repeats_the_analysis_constraints_exactly():
    analysis = schemas.load_schema("article_analysis")["properties"]
    result = schemas.load_schema("article_result")["properties"]
    for key, spec in analysis.items():
        assert {k: v for k, v in spec.items() if k != "description"} == result[key]


def test_newsletter_schema_is_self_contained_and_matches_model():
    schema = schemas.load_schema("newsletter_report")
    assert "$ref" not in json.dumps(schema)
    jsonschema.Draft202012Validator.check_schema(schema)
    report = {
        "source": "TLDR AI",
        "subject": "s",
        "date": None,
        "format": "tldr",
        "items_found": 1,
        "notes": [],
        "items": [RESULT],
        "markdown": "# r",
    }
    assert schema_accepts("newsletter_report", report) and pydantic_accepts(NewsletterReport, report)
    broken = {**report, "items": [{**RESULT, "relevance_score": 42}]}
    assert not schema_accepts("newsletter_report", broken)
    assert not pydantic_accepts(NewsletterReport, broken)


def test_key_order_matches_training_answers():
    assert tuple(schemas.load_schema("article_analysis")["properties"]) == schemas.ANALYSIS_KEYS
