"""End to end on tiny real models: export -> llama.cpp loads -> parity holds; corrupted exports fail it."""

from __future__ import annotations

import json

import pytest

from export.gguf_file import read_gguf
from export.lora_gguf import convert_adapter, export_lora_gguf, read_peft_adapter, write_gguf_lora
from export.merged_gguf import merge_adapter, write_model_gguf
from export.parity import ParityError, Variant, check_parity
from tests.export.conftest import TINY_MAX_TOKENS, TINY_THRESHOLDS, build_setup, tiny_gemma2, tiny_qwen2


def _parity(setup, prompts, variants):
    return check_parity(setup.peft_model, prompts, variants, max_new_tokens=TINY_MAX_TOKENS, thresholds=TINY_THRESHOLDS)


def test_gemma_lora_and_merged_gguf_match_transformers(gemma_setup, prompts, tmp_path):
    lora, _ = export_lora_gguf(gemma_setup.adapter_dir, gemma_setup.base_gguf, tmp_path / "lora.gguf")
    merged = merge_adapter(gemma_setup.hf_dir, gemma_setup.adapter_dir)
    merged_path = write_model_gguf(merged, tmp_path / "merged.gguf", "f32", base_gguf=gemma_setup.base_gguf).path
    report = _parity(
        gemma_setup,
        prompts,
        [Variant("lora", str(gemma_setup.base_gguf), str(lora)), Variant("merged", str(merged_path))],
    )
    assert report.passed, report.summary()
    assert report.prompts == 2 and report.positions > 0
    assert report.adapter_effect_mean > 0.1  # the random adapter really changes the model
    for variant in report.variants:
        assert variant.top1_agreement >= 0.95
        assert variant.relative_error < 0.05
        assert variant.max_logit_diff < 0.1
    json.dumps(report.to_dict())  # goes into the manifest as is


def test_llama_lora_with_rslora_alpha_pattern_and_qk_permutation_matches(llama_setup, prompts, tmp_path):
    lora, _ = export_lora_gguf(llama_setup.adapter_dir, llama_setup.base_gguf, tmp_path / "lora.gguf")
    merged = merge_adapter(llama_setup.hf_dir, llama_setup.adapter_dir)
    merged_path = write_model_gguf(merged, tmp_path / "merged.gguf", "f16", base_gguf=llama_setup.base_gguf).path
    report = _parity(
        llama_setup,
        prompts,
        [Variant("lora", str(llama_setup.base_gguf), str(lora)), Variant("merged", str(merged_path))],
    )
    assert report.passed, report.summary()


@pytest.mark.parametrize("make_model", [tiny_gemma2, tiny_qwen2], ids=["gemma2", "qwen2"])
def test_other_architectures_in_the_table_export_with_parity(make_model, prompts, tmp_path):
    setup = build_setup(tmp_path, make_model())
    lora, _ = export_lora_gguf(setup.adapter_dir, setup.base_gguf, tmp_path / "lora.gguf")
    merged = merge_adapter(setup.hf_dir, setup.adapter_dir)
    merged_path = write_model_gguf(merged, tmp_path / "merged.gguf", "f32", base_gguf=setup.base_gguf).path
    report = _parity(
        setup, prompts[:1], [Variant("lora", str(setup.base_gguf), str(lora)), Variant("merged", str(merged_path))]
    )
    assert report.passed, report.summary()
    assert all(v.relative_error < 0.05 for v in report.variants)


def _corrupt(setup, tmp_path, name, edit):
    adapter = read_peft_adapter(setup.adapter_dir)
    lora = convert_adapter(adapter, read_gguf(setup.base_gguf))
    edit(lora, adapter)
    return Variant(name, str(setup.base_gguf), str(write_gguf_lora(lora, tmp_path / f"{name}.gguf")))


def _swap_layers(lora, adapter):
    swap = {"blk.0.": "blk.1.", "blk.1.": "blk.0."}
    lora.tensors = {swap[k[:6]] + k[6:]: v for k, v in lora.tensors.items()}


def _halve_alpha(lora, adapter):
    lora.alpha /= 2


def _drop_q_permutation(lora, adapter):
    """B of q_proj as PEFT stores it, without llama.cpp's rotary row order."""
    for layer in range(2):
        lora.tensors[f"blk.{layer}.attn_q.weight.lora_b"] = adapter.lora_b[f"model.layers.{layer}.self_attn.q_proj"]


@pytest.mark.parametrize("edit", [_swap_layers, _halve_alpha], ids=["wrong-layer-mapping", "lost-alpha-scaling"])
def test_corrupted_gemma_export_fails_parity(gemma_setup, prompts, tmp_path, edit):
    variant = _corrupt(gemma_setup, tmp_path, edit.__name__.strip("_"), edit)
    report = _parity(gemma_setup, prompts[:1], [variant])
    assert not report.passed
    result = report.variants[0]
    assert result.relative_error > 0.3
    assert any("adapter's own effect" in f for f in result.failures)
    message = str(ParityError(report))  # what `export` prints before it renames the file
    assert message.startswith("parity check FAILED") and f"{result.name:<8} FAIL" in message
    assert all(f in message for f in result.failures)


@pytest.mark.parametrize("std", [0.5, 0.002], ids=["strong-adapter", "weak-adapter"])
def test_a_variant_that_drops_the_adapter_fails_parity_through_the_served_path(tmp_path, prompts, std):
    """The base GGUF alone, run by the serving engine, against the trained PEFT model: llama.cpp answers
    like the base, so parity must fail on the relative error, however weak the adapter (std 0.002: an
    effect below the 0.02 the check used to need, where the base-only variant passed)."""
    from tests.export.conftest import tiny_gemma3

    setup = build_setup(tmp_path, tiny_gemma3(), std=std)
    report = _parity(setup, prompts[:1], [Variant("base-only", str(setup.base_gguf))])
    result = report.variants[0]
    assert report.adapter_effect_mean > 0
    if std < 0.1:
        assert report.adapter_effect_mean < 0.02  # the case the old threshold let through
    assert result.relative_error is not None and result.relative_error > 0.5, report.summary()
    assert not report.passed


def test_llama_export_without_q_permutation_fails_parity(llama_setup, prompts, tmp_path):
    variant = _corrupt(llama_setup, tmp_path, "unpermuted", _drop_q_permutation)
    report = _parity(llama_setup, prompts[:1], [variant])
    assert not report.passed, report.summary()


def test_prompts_are_spread_over_the_dataset_and_bad_input_is_refused(gemma_setup):
    from data.dataset import load_dataset
    from export.parity import load_prompts
    from tests.export.conftest import TRAIN_SAMPLE

    records = load_dataset(TRAIN_SAMPLE)
    assert load_prompts(TRAIN_SAMPLE, 2) == [records[0].prompt, records[-1].prompt]
    assert load_prompts(TRAIN_SAMPLE, 50) == [r.prompt for r in records]
    with pytest.raises(ValueError, match="at least 1"):
        load_prompts(TRAIN_SAMPLE, 0)
    with pytest.raises(ValueError, match="at least one prompt"):
        check_parity(gemma_setup.peft_model, [], [Variant("x", str(gemma_setup.base_gguf))])


def test_greedy_answers_parting_at_a_near_tie_still_agree():
    import numpy as np

    from export.parity import ParityThresholds, VariantParity, _divergence_margin, _failures

    reference = np.zeros((3, 5), dtype=np.float32)
    reference[1, 2], reference[1, 3] = 4.0, 3.6  # transformers barely prefers token 2 over 3 at position 1
    assert _divergence_margin([1, 3, 0], [1, 2, 4], reference) == pytest.approx(0.4)
    reference[1, 3] = -2.0  # now it was sure
    assert _divergence_margin([1, 3, 0], [1, 2, 4], reference) == pytest.approx(6.0)

    thresholds = ParityThresholds()
    tied = VariantParity("v", "m", None, prompts=4, greedy_identical=2, greedy_near_tie=1, top1_agreement=1.0)
    assert tied.greedy_agreement == 0.75 and _failures(tied, thresholds) == []
    apart = VariantParity("v", "m", None, prompts=4, greedy_identical=2, greedy_near_tie=0, top1_agreement=1.0)
    assert "greedy answers agree on 2/4" in _failures(apart, thresholds)[0]
