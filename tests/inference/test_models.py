"""The model resolver: the chat format comes from the model files unless named, and never contradicts them."""

from __future__ import annotations

import json

import pytest

from inference.files import ModelFileError, gguf_metadata
from inference.models import detect_chat_format, embedded_base_model, resolve_chat_format


def gguf_with(path, arch: str, **strings: str):
    """A metadata-only GGUF (no tensors): enough for the header reader."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    for key, value in strings.items():
        writer.add_string(key.replace("__", "."), value)
    writer.add_array("tokenizer.ggml.tokens", ["a", "bb", "ccc"])  # an array of strings before the template
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_the_embedded_base_is_gemma_by_its_architecture():
    assert detect_chat_format(None).name == "gemma"
    assert gguf_metadata(embedded_base_model(), ("general.architecture",)) == {"general.architecture": "gemma3"}


@pytest.mark.parametrize(
    ("arch", "strings", "expected", "source"),
    [
        ("llama", {"tokenizer__chat_template": "{{ '<|start_header_id|>' + role }}"}, "llama3", "chat template"),
        ("llama", {"tokenizer__ggml__pre": "llama-bpe"}, "llama3", "pre-tokenizer"),
        ("llama", {"tokenizer__chat_template": "<start_of_turn>user"}, "gemma", "chat template"),
        ("gemma2", {}, "gemma", "architecture"),
    ],
)
def test_the_format_is_read_from_the_gguf(tmp_path, arch, strings, expected, source):
    choice = detect_chat_format(gguf_with(tmp_path / "m.gguf", arch, **strings))
    assert (choice.name, choice.source) == (expected, source)


def test_a_model_that_does_not_say_needs_a_named_format(tmp_path):
    model = gguf_with(tmp_path / "m.gguf", "llama")  # Llama 2 or 3? the file does not tell
    with pytest.raises(ValueError, match="cannot tell the chat format"):
        resolve_chat_format(None, model)
    assert resolve_chat_format("llama3", model).name == "llama3"


def test_a_named_format_that_contradicts_the_model_is_an_error(tmp_path):
    model = gguf_with(tmp_path / "m.gguf", "llama", tokenizer__ggml__pre="llama-bpe")
    with pytest.raises(ValueError, match="--chat-format gemma contradicts the model: its pre-tokenizer says 'llama3'"):
        resolve_chat_format("gemma", model)
    with pytest.raises(ValueError, match="unknown chat format 'chatml'"):
        resolve_chat_format("chatml", model)


def test_the_adapter_manifest_names_the_format_it_was_trained_in(tmp_path):
    lora = tmp_path / "news.lora.gguf"
    lora.write_bytes(b"GGUF")
    (tmp_path / "news.lora.manifest.json").write_text(json.dumps({"config": {"chat_format": "llama3"}}))
    choice = detect_chat_format(None, lora)
    assert (choice.name, choice.source) == ("llama3", "adapter manifest")


def test_an_unreadable_model_is_left_to_the_engine_to_report(tmp_path):
    assert resolve_chat_format(None, tmp_path / "missing.gguf").name == "gemma"
    with pytest.raises(ModelFileError, match="not a GGUF file"):
        gguf_metadata(tmp_path.joinpath("x.gguf").write_bytes(b"nope") and tmp_path / "x.gguf", ("a",))
