"""company_names keeps organisations: places, people and generic phrases are dropped, real companies never."""

import pytest

from evaluation.scoring import served_record
from inference.analyzer import Analyzer
from inference.companies import kind, organisations
from inference.engine import EngineConfig
from tests.fakes import FakeEngine


@pytest.mark.parametrize(
    "name, what",
    [
        ("China", "place"),
        ("Saudi Arabia", "place"),
        ("U.S.", "place"),
        ("Silicon Valley", "place"),
        ("Andrew Ng", "person"),
        ("Sam Altman", "person"),
        ("Elon Musk", "person"),
        ("Top AI Companies", "generic"),
        ("AI startups", "generic"),
        ("Big Tech", "generic"),
        ("the government", "generic"),
        ("  ", "generic"),
    ],
)
def test_non_organisations_are_recognised(name, what):
    assert kind(name) == what


@pytest.mark.parametrize(
    "name",
    [
        "OpenAI",
        "xAI",
        "Google Deepmind",
        "Eleven Labs",  # "Labs" is not a generic plural
        "Jasper AI",  # starts with a given name, but "AI" makes it an organisation
        "Scale AI",
        "The Boring Company",
        "Amazon Web Services",
        "Federal Trade Commission",
        "Bank of America",
        "Washington Post",
        "Red Rabbit Robotics",
        "Figure",
        "Hugging Face",
    ],
)
def test_organisations_are_kept(name):
    assert kind(name) is None


def test_organisations_keeps_order_and_reports_what_it_dropped():
    kept, dropped = organisations(["OpenAI", "China", "Andrew Ng", "Anthropic", "Top AI Companies"])
    assert kept == ["OpenAI", "Anthropic"]
    assert dropped == [("China", "place"), ("Andrew Ng", "person"), ("Top AI Companies", "generic")]


def test_the_analyzer_drops_a_place_the_model_listed_as_a_company():
    # the fake engine lists the title's first capitalized word as the company
    analyzer = Analyzer(engine=FakeEngine(EngineConfig(chat_format="gemma", relevance_rule="greedy")))
    assert analyzer.analyze_item("China bans exports of AI chips", "Text.")["company_names"] == []
    assert analyzer.analyze_item("Nvidia ships Blackwell chips", "Text.")["company_names"] == ["Nvidia"]


def test_evaluation_scores_what_the_analyzer_returned_and_judges_validity_on_the_raw_text():
    raw = '{"relevance_score": 9, "summary": "", "key_insights": [], "company_names": ["OpenAI", "China"]}'
    served = {"relevance_score": 3, "summary": "", "key_insights": [], "company_names": ["OpenAI"]}
    parsed = served_record({"output": raw, "analysis": served})
    assert parsed.valid and parsed.record["company_names"] == ["OpenAI"] and parsed.record["relevance_score"] == 3
    assert served_record({"output": raw}).record["company_names"] == ["OpenAI", "China"]  # a plain predictions file
    invalid = served_record({"output": "not json", "analysis": served})
    assert not invalid.valid and invalid.record["company_names"] == []
