"""HF model -> full GGUF: llama.cpp's names and conversions, copied metadata, chat template, quantization."""

from __future__ import annotations

import numpy as np
import pytest
from llama_cpp import Llama
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from data.prompts import render_chat_prompt
from export.gguf_file import read_gguf
from export.merged_gguf import MergedExportError, chat_template, merge_adapter, write_model_gguf
from export.parity import Variant, check_parity
from export.quantize import quantize_gguf
from inference.models import embedded_base_model
from tests.export.conftest import TINY_MAX_TOKENS, TINY_THRESHOLDS, random_lora, tiny_gemma3, tiny_llama


def test_tiny_gemma_gguf_uses_llama_cpp_names_and_norm_shift(gemma_setup):
    ours = read_gguf(gemma_setup.base_gguf)
    real = read_gguf(embedded_base_model())
    # Same tensor names as llama.cpp's own converter produced for Gemma 3 270M (restricted to our 2 layers).
    expected = {n for n in real.tensors if not n.startswith("blk.") or n.split(".")[1] in ("0", "1")}
    assert set(ours.tensors) == expected
    assert "output.weight" not in ours.tensors  # tied head: llama.cpp reuses token_embd

    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(gemma_setup.hf_dir)
    hf_norm = hf.model.layers[1].post_feedforward_layernorm.weight.detach().numpy()
    np.testing.assert_allclose(ours.tensor_f32("blk.1.post_ffw_norm.weight"), hf_norm + 1.0, rtol=1e-6)
    np.testing.assert_array_equal(
        ours.tensor_f32("blk.0.attn_q.weight"), hf.model.layers[0].self_attn.q_proj.weight.detach().numpy()
    )

    assert ours.value("gemma3.block_count") == 2
    assert ours.value("gemma3.embedding_length") == 64
    assert ours.value("gemma3.attention.head_count_kv") == 1
    assert ours.value("gemma3.attention.key_length") == 32
    assert ours.value("gemma3.attention.sliding_window") == 512
    assert ours.value("gemma3.rope.freq_base") == pytest.approx(1e6)
    assert ours.value("tokenizer.ggml.tokens") == real.value("tokenizer.ggml.tokens")
    assert ours.value("tokenizer.ggml.bos_token_id") == 2
    assert ours.value("general.file_type") == 0  # all f32


def test_llama_q_and_k_rows_are_permuted_like_llama_cpp(llama_setup):
    from transformers import AutoModelForCausalLM

    from export.architectures import permute_rows

    hf = AutoModelForCausalLM.from_pretrained(llama_setup.hf_dir)
    ours = read_gguf(llama_setup.base_gguf)
    q = hf.model.layers[0].self_attn.q_proj.weight.detach().numpy()
    k = hf.model.layers[0].self_attn.k_proj.weight.detach().numpy()
    np.testing.assert_array_equal(ours.tensor_f32("blk.0.attn_q.weight"), permute_rows(q, 4))
    np.testing.assert_array_equal(ours.tensor_f32("blk.0.attn_k.weight"), permute_rows(k, 2))
    assert not np.array_equal(permute_rows(q, 4), q)


def test_chat_template_renders_exactly_the_training_prompt():
    prompt = "Analyze this newsletter item:\n\nTitle: **A 'quoted' \\ title**\nContent: Body."
    formatter = Jinja2ChatFormatter(chat_template("gemma"), eos_token="<eos>", bos_token="<bos>")
    rendered = formatter(messages=[{"role": "user", "content": prompt}]).prompt
    assert rendered == "<bos>" + render_chat_prompt(prompt, "gemma")
    llama3 = Jinja2ChatFormatter(chat_template("llama3"), eos_token="", bos_token="<|begin_of_text|>")
    assert llama3(messages=[{"role": "user", "content": prompt}]).prompt == "<|begin_of_text|>" + render_chat_prompt(
        prompt, "llama3"
    )


def test_merged_gguf_copies_base_metadata_and_embeds_the_template(gemma_setup, tmp_path):
    merged = merge_adapter(gemma_setup.hf_dir, gemma_setup.adapter_dir)
    result = write_model_gguf(merged, tmp_path / "merged.gguf", "f16", base_gguf=gemma_setup.base_gguf)
    assert result.metadata_from == "base GGUF"
    ours, base = read_gguf(result.path), read_gguf(gemma_setup.base_gguf)
    for key, item in base.kv.items():
        if key.startswith(("gemma3.", "tokenizer.ggml.")):
            assert ours.kv[key].value == item.value, key
    assert ours.value("tokenizer.chat_template") == chat_template("gemma")
    assert ours.value("general.file_type") == 1  # mostly f16
    assert ours.tensors["blk.0.attn_q.weight"].type.name == "F16"
    assert ours.tensors["blk.0.attn_norm.weight"].type.name == "F32"
    # the merge changed the weights the adapter targets, and only those
    assert not np.allclose(ours.tensor_f32("blk.0.attn_q.weight"), base.tensor_f32("blk.0.attn_q.weight"), atol=1e-3)
    np.testing.assert_array_equal(ours.tensor_f32("blk.0.attn_norm.weight"), base.tensor_f32("blk.0.attn_norm.weight"))


def test_model_that_does_not_fit_the_base_is_refused(gemma_setup, tmp_path):
    other = tiny_llama()
    with pytest.raises(MergedExportError, match="is llama but the base GGUF"):
        write_model_gguf(other, tmp_path / "x.gguf", base_gguf=gemma_setup.base_gguf)
    wider = tiny_gemma3()
    wider.model.layers = wider.model.layers[:1]
    wider.config.num_hidden_layers = 1
    with pytest.raises(MergedExportError, match="missing tensors the base has: blk.1"):
        write_model_gguf(wider, tmp_path / "x.gguf", base_gguf=gemma_setup.base_gguf)
    assert not (tmp_path / "x.gguf").exists()


def test_vocabulary_mismatch_with_tokenizer_is_refused(tmp_path):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=1000,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=32,
    )
    with pytest.raises(MergedExportError, match="262144 tokens but the model's vocabulary is 1000"):
        write_model_gguf(Gemma3ForCausalLM(config), tmp_path / "x.gguf", tokenizer_gguf=embedded_base_model())


@pytest.mark.parametrize(("quant", "file_type"), [("q8_0", 7), ("q4_k_m", 15)])
def test_quantized_merged_model_loads_and_stays_close(gemma_setup, prompts, tmp_path, quant, file_type):
    merged = merge_adapter(gemma_setup.hf_dir, gemma_setup.adapter_dir)
    full = write_model_gguf(merged, tmp_path / "merged-f16.gguf", "f16", base_gguf=gemma_setup.base_gguf).path
    small = quantize_gguf(full, tmp_path / f"merged-{quant}.gguf", quant, threads=1)
    info = read_gguf(small)
    assert info.value("general.file_type") == file_type
    assert small.stat().st_size < full.stat().st_size
    assert info.value("tokenizer.chat_template") == chat_template("gemma")
    report = check_parity(
        gemma_setup.peft_model, prompts[:1], [Variant(quant, str(small))], max_new_tokens=TINY_MAX_TOKENS
    )
    # Quantization noise only: a small fraction of the adapter's own effect (a broken export is ~1).
    assert report.variants[0].relative_error < 0.25


def test_lora_on_tied_output_head_merges_into_a_separate_output(tmp_path, prompts):
    model = tiny_gemma3(seed=3)
    model.save_pretrained(tmp_path / "hf")
    base = write_model_gguf(model, tmp_path / "base.gguf", "f32", tokenizer_gguf=embedded_base_model()).path
    peft_model = random_lora(model, target_modules=["q_proj", "lm_head"], std=0.05)
    peft_model.save_pretrained(tmp_path / "adapter")
    merged = merge_adapter(tmp_path / "hf", tmp_path / "adapter")
    out = write_model_gguf(merged, tmp_path / "merged.gguf", "f32", base_gguf=base).path
    info = read_gguf(out)
    assert "output.weight" in info.tensors
    # the input embedding is the base's, untouched by the head's LoRA
    np.testing.assert_array_equal(info.tensor_f32("token_embd.weight"), read_gguf(base).tensor_f32("token_embd.weight"))
    report = check_parity(
        peft_model,
        prompts[:1],
        [Variant("merged", str(out))],
        max_new_tokens=TINY_MAX_TOKENS,
        thresholds=TINY_THRESHOLDS,
    )
    assert report.passed, report.summary()


def test_llama_cpp_loads_the_merged_model_and_uses_its_template(gemma_setup, tmp_path):
    merged = merge_adapter(gemma_setup.hf_dir, gemma_setup.adapter_dir)
    out = write_model_gguf(merged, tmp_path / "merged.gguf", "f16", base_gguf=gemma_setup.base_gguf).path
    llm = Llama(model_path=str(out), n_ctx=256, n_threads=1, n_threads_batch=1, verbose=False)
    try:
        assert llm.metadata["tokenizer.chat_template"] == chat_template("gemma")
        reply = llm.create_chat_completion(messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0)
        assert reply["usage"]["prompt_tokens"] == len(
            llm.tokenize(("<bos>" + render_chat_prompt("Hi")).encode(), add_bos=False, special=True)
        )
    finally:
        llm.close()
