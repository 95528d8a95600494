"""The content lever: how much of an item the prompt shows, cut alike in training, evaluation and serving."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from data.convert import to_prompt_completion
from data.dataset import load_dataset
from data.prompts import prepare_content, shown_prompt
from evaluation.runner import RunnerError, generate, prompt_hash, read_predictions
from evaluation.scoring import load_references
from inference.analyzer import Analyzer
from inference.engine import EngineConfig
from inference.models import content_chars
from tests.fakes import FakeEngine

FIXTURES = Path(__file__).parent / "fixtures"
STORY = "First sentence here. Second sentence is longer than the first. Third one ends it."


def test_zero_keeps_the_training_datas_cut_and_n_keeps_whole_sentences_up_to_n():
    assert prepare_content(STORY) == ("First sentence here.", True)
    assert prepare_content(STORY, chars=63) == ("First sentence here. Second sentence is longer than the first.", True)
    assert prepare_content(STORY, chars=500) == (STORY, False)
    assert prepare_content("One very long sentence without an end", chars=8) == ("One very", True)
    assert prepare_content(STORY, is_sponsored=True, chars=10) == (STORY, False)  # ads stay whole, as in the data


def test_a_records_prompt_is_the_datas_own_at_zero_and_shows_more_text_at_n():
    record = load_dataset(FIXTURES / "train_sample.jsonl")[0]
    assert record.shown_prompt(0) == record.prompt  # byte for byte: the shipped adapter's training prompt
    longer = record.shown_prompt(1000)
    assert "It beats larger models on a new benchmark" in longer and "It beats" not in record.prompt
    assert longer.split("\nContent:")[0] == record.prompt.split("\nContent:")[0]  # the title as the data has it
    assert to_prompt_completion(record, content_chars=1000)["prompt"].count("It beats larger models") == 1


def _manifest(tmp_path: Path, chars: int) -> Path:
    lora = tmp_path / "adapter.lora.gguf"
    lora.write_bytes(b"")
    training = {"kind": "adapter", "config": {"chat_format": "gemma", "content_chars": chars}}
    manifest = {"kind": "gguf", "config": {"mode": "lora"}, "extra": {"adapter": {"training_manifest": training}}}
    (tmp_path / "adapter.lora.manifest.json").write_text(json.dumps(manifest))
    return lora


def test_serving_reads_the_setting_from_the_adapters_manifest_unless_named(tmp_path):
    lora = _manifest(tmp_path, 600)
    assert content_chars(None, lora) == 600
    assert content_chars(0, lora) == 0  # named wins
    assert content_chars(None, None) == 0 and content_chars(None, tmp_path / "other.gguf") == 0
    shipped = Path(__file__).parents[1] / "models" / "news-gemma3-270m.lora.gguf"
    assert content_chars(None, shipped) == 0  # trained before the lever existed: the first sentence


@pytest.mark.parametrize("chars, shows_second", [(0, False), (300, True)])
def test_the_analyzer_shows_as_much_of_an_item_as_the_adapter_was_trained_on(chars, shows_second):
    engine = FakeEngine(EngineConfig(chat_format="gemma", relevance_rule="greedy", content_chars=chars))
    result = Analyzer(engine=engine).analyze_item("A title", STORY)
    prompt = engine.calls[-1][0]
    assert ("Second sentence" in prompt) is shows_second
    assert result["truncated"] is not shows_second


def test_evaluation_feeds_the_same_cut_and_keeps_the_references_identity(tmp_path):
    refs = load_references(FIXTURES / "train_sample.jsonl")
    config = EngineConfig(chat_format="gemma", relevance_rule="greedy", content_chars=1000)
    engine = FakeEngine(config)
    generate(refs, tmp_path / "run", config, analyzer=Analyzer(engine=engine), progress=False)
    sent = [prompt for call in engine.calls for prompt in call]
    assert any("It beats larger models" in p for p in sent)
    assert sent == [shown_prompt(r.prompt, r.head_input.content, r.head_input.is_sponsored, 1000) for r in refs]
    rows = read_predictions(tmp_path / "run" / "predictions.jsonl")
    assert [row["prompt_sha256"] for row in rows] == [prompt_hash(r.prompt) for r in refs]
    other = replace(config, content_chars=0)  # a cache made with another cut is not reused
    with pytest.raises(RunnerError, match="content_chars"):
        generate(refs, tmp_path / "run", other, analyzer=Analyzer(engine=FakeEngine(other)), progress=False)
