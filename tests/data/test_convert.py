"""Converters to each backend's input, all through data/prompts.py."""

import json

from data.convert import convert_records, to_chat_text, to_prompt_completion, to_tinker_conversation, write_jsonl
from data.dataset import load_dataset

from .helpers import FIXTURE


def test_prompt_completion_uses_the_gemma_turns_and_ends_the_turn():
    record = load_dataset(FIXTURE)[0]
    pair = to_prompt_completion(record, "gemma")
    assert pair["prompt"] == f"<start_of_turn>user\n{record.prompt}<end_of_turn>\n<start_of_turn>model\n"
    assert pair["completion"] == record.answer + "<end_of_turn>"
    assert json.loads(pair["completion"].removesuffix("<end_of_turn>")) == record.analysis


def test_llama3_format_is_selectable():
    record = load_dataset(FIXTURE)[0]
    pair = to_prompt_completion(record, "llama3")
    assert pair["prompt"].startswith("<|start_header_id|>user<|end_header_id|>\n\n")
    assert pair["completion"].endswith("<|eot_id|>")


def test_answer_is_rerendered_canonically():
    record = load_dataset(FIXTURE)[0]
    record.answer = json.dumps(record.analysis)  # compact, as a sloppy file might hold it
    assert to_prompt_completion(record)["completion"].startswith('{\n  "relevance_score": 10,\n')


def test_tinker_conversation_and_chat_text():
    record = load_dataset(FIXTURE)[1]
    conversation = to_tinker_conversation(record)
    assert conversation == {
        "messages": [
            {"role": "user", "content": record.prompt},
            {"role": "assistant", "content": record.answer},
        ]
    }
    pair = to_prompt_completion(record)
    assert to_chat_text(record) == {"text": pair["prompt"] + pair["completion"]}
    assert not to_chat_text(record)["text"].startswith("<bos>")  # the tokenizer adds BOS


def test_convert_records_writes_jsonl(tmp_path):
    records = load_dataset(FIXTURE)
    rows = convert_records(records, "tinker")
    assert write_jsonl(rows, tmp_path / "out.jsonl") == 3
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == rows
