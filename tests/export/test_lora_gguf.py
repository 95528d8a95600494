"""PEFT LoRA -> llama.cpp GGUF adapter: metadata, names, shapes, scaling, and loud refusals."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from gguf import GGUFReader
from safetensors.numpy import load_file, save_file

from export.gguf_file import read_gguf
from export.lora_gguf import AdapterExportError, convert_adapter, export_lora_gguf, read_peft_adapter
from tests.export.conftest import TARGETS

GGUF_KINDS = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}


def test_adapter_file_has_llama_cpp_metadata_names_and_shapes(gemma_setup, tmp_path):
    path, lora = export_lora_gguf(gemma_setup.adapter_dir, gemma_setup.base_gguf, tmp_path / "a.gguf")
    reader = GGUFReader(path)
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    assert reader.fields["general.architecture"].contents() == "gemma3"
    assert reader.fields["adapter.lora.alpha"].contents() == pytest.approx(8.0)

    expected = {f"blk.{i}.{GGUF_KINDS[m]}.weight.lora_{ab}" for i in range(2) for m in TARGETS for ab in "ab"}
    assert {t.name for t in reader.tensors} == expected
    base = read_gguf(gemma_setup.base_gguf)
    peft = load_file(str(gemma_setup.adapter_dir / "adapter_model.safetensors"))
    for tensor in reader.tensors:
        out_features, in_features = base.tensor_shapes[tensor.name.rsplit(".", 1)[0]]
        shape = tuple(int(d) for d in reversed(tensor.shape))
        assert shape == ((4, in_features) if tensor.name.endswith("lora_a") else (out_features, 4))
    # A and B travel unchanged for plain LoRA (alpha/r is llama.cpp's scale too)
    peft_b = peft["base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"]
    ours = next(t for t in reader.tensors if t.name == "blk.1.ffn_down.weight.lora_b")
    np.testing.assert_array_equal(np.asarray(ours.data).reshape(peft_b.shape), peft_b)
    assert lora.folded_scales == 0


def test_rslora_and_alpha_pattern_scales_match_peft(llama_setup):
    adapter = read_peft_adapter(llama_setup.adapter_dir)
    lora = convert_adapter(adapter, read_gguf(llama_setup.base_gguf))
    # rsLoRA: scale = alpha / sqrt(r) = 8 / 2 = 4; llama.cpp's is alpha_file / r, so alpha_file = 16
    assert lora.alpha == pytest.approx(8 / math.sqrt(4) * 4)
    # down_proj has alpha 2 (scale 1): its B is folded by 1/4 to keep PEFT's effect under the file's alpha
    assert lora.folded_scales == 2
    peft_b = adapter.lora_b["model.layers.0.mlp.down_proj"]
    np.testing.assert_allclose(lora.tensors["blk.0.ffn_down.weight.lora_b"], peft_b * 0.25, rtol=1e-6)


def _rewrite_adapter(src, dst, edit_tensors=None, edit_config=None):
    shutil.copytree(src, dst)
    if edit_tensors:
        tensors = load_file(str(dst / "adapter_model.safetensors"))
        save_file(edit_tensors(tensors), str(dst / "adapter_model.safetensors"))
    if edit_config:
        config = json.loads((dst / "adapter_config.json").read_text())
        edit_config(config)
        (dst / "adapter_config.json").write_text(json.dumps(config))
    return dst


def test_swapped_a_and_b_are_refused(gemma_setup, tmp_path):
    def swap(tensors):
        out = {}
        for key, value in tensors.items():
            other = key.replace("lora_A", "lora_X").replace("lora_B", "lora_A").replace("lora_X", "lora_B")
            out[other] = value
        return out

    bad = _rewrite_adapter(gemma_setup.adapter_dir, tmp_path / "swapped", edit_tensors=swap)
    with pytest.raises(AdapterExportError, match="do not fit the base weight"):
        export_lora_gguf(bad, gemma_setup.base_gguf, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_transposed_matrices_are_refused(gemma_setup, tmp_path):
    bad = _rewrite_adapter(
        gemma_setup.adapter_dir,
        tmp_path / "transposed",
        edit_tensors=lambda t: {k: np.ascontiguousarray(v.T) for k, v in t.items()},
    )
    with pytest.raises(AdapterExportError, match="do not fit"):
        export_lora_gguf(bad, gemma_setup.base_gguf, tmp_path / "x.gguf")


def test_module_beyond_the_base_layers_is_refused(gemma_setup, tmp_path):
    def add_layer(tensors):
        for key in list(tensors):
            if ".layers.1." in key:
                tensors[key.replace(".layers.1.", ".layers.7.")] = tensors[key]
        return tensors

    bad = _rewrite_adapter(gemma_setup.adapter_dir, tmp_path / "deeper", edit_tensors=add_layer)
    with pytest.raises(AdapterExportError, match=r"no llama.cpp tensor .*layers\.7"):
        export_lora_gguf(bad, gemma_setup.base_gguf, tmp_path / "x.gguf")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.update(use_dora=True), "DoRA"),
        (lambda c: c.update(modules_to_save=["lm_head"]), "modules_to_save"),
        (lambda c: c.update(peft_type="IA3"), "not a LoRA"),
    ],
)
def test_what_llama_cpp_cannot_apply_is_refused(gemma_setup, tmp_path, edit, message):
    bad = _rewrite_adapter(gemma_setup.adapter_dir, tmp_path / "bad", edit_config=edit)
    with pytest.raises(AdapterExportError, match=message):
        export_lora_gguf(bad, gemma_setup.base_gguf, tmp_path / "x.gguf")


def test_lora_on_tied_output_head_points_to_merge(gemma_setup, tmp_path):
    def add_head(tensors):
        tensors["base_model.model.lm_head.lora_A.weight"] = np.zeros((4, 64), np.float32)
        tensors["base_model.model.lm_head.lora_B.weight"] = np.zeros((262144, 4), np.float32)
        return tensors

    bad = _rewrite_adapter(gemma_setup.adapter_dir, tmp_path / "head", edit_tensors=add_head)
    with pytest.raises(AdapterExportError, match="--merge"):
        export_lora_gguf(bad, gemma_setup.base_gguf, tmp_path / "x.gguf")


def test_missing_adapter_is_a_clear_error(tmp_path, gemma_setup):
    with pytest.raises(FileNotFoundError, match="not a PEFT adapter directory"):
        export_lora_gguf(tmp_path, gemma_setup.base_gguf, tmp_path / "x.gguf")
