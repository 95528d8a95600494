"""A Hugging Face model (optionally with a LoRA merged in) -> a complete llama.cpp GGUF (f32, f16 or bf16).

Weights: every tensor of the model's state dict under llama.cpp's name, with the architecture's
conversions from `export.architectures` (Gemma norms +1, Llama q/k row order); the output head is left out
when it is tied to the embedding (llama.cpp then reuses `token_embd`). 1-D tensors stay f32, as in
llama.cpp's converter.

Metadata: when the model came from a GGUF (the project's default base), that GGUF's tokenizer and
`{arch}.*` hyperparameters are copied verbatim, so the merged model tokenizes and runs exactly like
its base; otherwise the hyperparameters are computed from the HF config and the tokenizer is copied
from `tokenizer_gguf`. The chat template (`tokenizer.chat_template`) is generated from
`data.prompts.CHAT_FORMATS`, so llama.cpp's chat handler renders the same text the model was trained on.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType, GGUFType, GGUFWriter, LlamaFileType, get_tensor_name_map
from gguf.quants import quantize

from data.prompts import chat_format as get_chat_format
from export.architectures import (
    ArchSpec,
    arch_for_model_type,
    hparams_from_config,
    normalize_hf_name,
    permute_rows,
    qk_permutation_heads,
)
from export.gguf_file import GgufModel, copy_fields, read_gguf

OUT_TYPES: dict[str, tuple[GGMLQuantizationType, LlamaFileType]] = {
    "f32": (GGMLQuantizationType.F32, LlamaFileType.ALL_F32),
    "f16": (GGMLQuantizationType.F16, LlamaFileType.MOSTLY_F16),
    "bf16": (GGMLQuantizationType.BF16, LlamaFileType.MOSTLY_BF16),
}
GENERAL_COPIED = ("general.license", "general.basename", "general.size_label", "general.tags")
GENERATED_TENSORS = ("rope_freqs.weight",)
"""Tensors llama.cpp's converter computes (not in the HF state dict); copied from the base GGUF when it has them."""
OPTIONAL_TENSORS = ("output.weight",)
"""May be written although the base has none: an output head that a LoRA made differ from the tied embedding."""


class MergedExportError(ValueError):
    """The model cannot be written as a GGUF for this base (the message says why)."""


@dataclass
class MergedExport:
    path: Path
    architecture: str
    out_type: str
    tensors: int
    parameters: int
    metadata_from: str
    """"base GGUF" (tokenizer and hyperparameters copied) or "config" (hyperparameters computed)."""
    seconds: float


def chat_template(fmt: str) -> str:
    """A Jinja chat template that renders exactly `bos + render_chat_prompt(prompt, fmt)` for one user turn.

    Multi-turn conversations repeat the same turn markers; a system message is put in front of the first
    user message (Gemma has no system role; the model was not trained with one either way).
    """
    f = get_chat_format(fmt)

    def lit(text: str) -> str:
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"

    return (
        "{{ bos_token }}"
        "{% set system = namespace(text='') %}"
        "{% for message in messages %}"
        "{% if message['role'] == 'system' %}{% set system.text = message['content'] + '\\n\\n' %}"
        f"{{% elif message['role'] == 'user' %}}{{{{ {lit(f.user_start)} + system.text + message['content'] + "
        f"{lit(f.user_end)} }}}}{{% set system.text = '' %}}"
        f"{{% else %}}{{{{ {lit(f.assistant_start)} + message['content'] + {lit(f.assistant_end)} + '\\n' }}}}"
        "{% endif %}"
        "{% endfor %}"
        f"{{% if add_generation_prompt %}}{{{{ {lit(f.assistant_start)} }}}}{{% endif %}}"
    )


def merge_adapter(base_model_dir: str | Path, adapter_dir: str | Path) -> Any:
    """Load the dense base, apply the PEFT adapter and fold it into the weights (float32 throughout).

    A LoRA on a tied output head (Tinker's `train_unembed`) would, merged in place, also change the input
    embedding that shares its storage; the head is untied first, and the writer then emits `output.weight`.
    """
    import json

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(base_model_dir), dtype=torch.float32)
    targets = json.loads((Path(adapter_dir) / "adapter_config.json").read_text()).get("target_modules") or []
    head = base.get_output_embeddings()
    if "lm_head" in targets and head is not None and head.weight is base.get_input_embeddings().weight:
        head.weight = torch.nn.Parameter(head.weight.detach().clone())
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    return model.merge_and_unload()


def gguf_tensors(model: Any, spec: ArchSpec, head_count: int, head_count_kv: int) -> dict[str, np.ndarray]:
    """The model's weights under llama.cpp's names, converted as llama.cpp's converter does (float32)."""
    config = model.config
    name_map = get_tensor_name_map(spec.gguf_arch, config.num_hidden_layers)
    state = model.state_dict()
    embedding = model.get_input_embeddings().weight
    out: dict[str, np.ndarray] = {}
    unknown = []
    for hf_name, tensor in state.items():
        name = normalize_hf_name(hf_name)
        if name == "lm_head.weight" and (tensor is embedding or tensor.equal(embedding)):
            continue  # tied head: llama.cpp reuses token_embd
        if "rotary_emb" in name:  # buffers recomputed by llama.cpp
            continue
        target = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        if target is None:
            unknown.append(hf_name)
            continue
        data = tensor.detach().to("cpu").float().numpy()
        if spec.norm_shift and name.endswith("norm.weight"):
            data = data + np.float32(spec.norm_shift)
        if spec.permute_qk:
            heads = qk_permutation_heads(target, head_count, head_count_kv)
            if heads is not None:
                data = permute_rows(data, heads)
        out[target] = np.ascontiguousarray(data, dtype=np.float32)
    if unknown:
        raise MergedExportError(f"no llama.cpp tensor name for: {', '.join(unknown[:8])}")
    return out


def write_model_gguf(
    model: Any,
    out_path: str | Path,
    out_type: str = "f16",
    base_gguf: str | Path | None = None,
    tokenizer_gguf: str | Path | None = None,
    chat_format: str | None = None,
    name: str | None = None,
) -> MergedExport:
    """Write `model` (a plain HF causal LM, e.g. after `merge_adapter`) as a GGUF llama.cpp can load.

    base_gguf: the GGUF the model was made from; its tokenizer and hyperparameters are copied and every
        tensor is checked against it (names and shapes). tokenizer_gguf: where the tokenizer comes from when
        there is no base_gguf. chat_format: key of data.prompts.CHAT_FORMATS for the embedded template.
    """
    started = time.monotonic()
    if out_type not in OUT_TYPES:
        raise ValueError(f"unknown output type {out_type!r}; known: {', '.join(OUT_TYPES)}")
    qtype, file_type = OUT_TYPES[out_type]
    config = model.config
    spec = arch_for_model_type(config.model_type)
    base: GgufModel | None = read_gguf(base_gguf) if base_gguf else None
    if base is not None and base.architecture != spec.name:
        raise MergedExportError(f"model is {spec.name} but the base GGUF {base.path} is {base.architecture}")
    tokenizer_source = base if base is not None else (read_gguf(tokenizer_gguf) if tokenizer_gguf else None)
    if tokenizer_source is None:
        raise MergedExportError("a GGUF to copy the tokenizer from is needed (base_gguf or tokenizer_gguf)")
    if tokenizer_source.vocab_size != config.vocab_size:
        raise MergedExportError(
            f"tokenizer in {tokenizer_source.path} has {tokenizer_source.vocab_size} tokens but the model's "
            f"vocabulary is {config.vocab_size}"
        )

    head_count = config.num_attention_heads
    head_count_kv = getattr(config, "num_key_value_heads", None) or head_count
    tensors = gguf_tensors(model, spec, head_count, head_count_kv)
    if base is not None:
        for name in GENERATED_TENSORS:
            if name in base.tensors and name not in tensors:
                tensors[name] = base.tensor_f32(name)
        _check_against_base(tensors, base)

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(out_path, spec.name)
    writer.add_type(GGUFType.MODEL)
    writer.add_name(name or out_path.stem)
    if base is not None:
        copy_fields(base, writer, (f"{spec.name}.", *GENERAL_COPIED))
        metadata_from = "base GGUF"
    else:
        for key, vtype, value in hparams_from_config(spec, config):
            writer.add_key_value(key, value, vtype)
        metadata_from = "config"
    copy_fields(tokenizer_source, writer, ("tokenizer.",))
    fmt = chat_format or spec.chat_format
    if fmt:
        writer.add_chat_template(chat_template(fmt))
    writer.add_file_type(int(file_type))
    writer.add_quantization_version(2)

    parameters = 0
    for target, data in tensors.items():
        parameters += data.size
        tensor_type = GGMLQuantizationType.F32 if data.ndim == 1 or target in GENERATED_TENSORS else qtype
        writer.add_tensor(target, quantize(data, tensor_type), raw_dtype=tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    seconds = time.monotonic() - started
    print(
        f"export: {out_type} GGUF {out_path} ({len(tensors)} tensors, {parameters / 1e6:.1f}M parameters, "
        f"{out_path.stat().st_size / 1e6:.1f} MB, {seconds:.1f} s)",
        file=sys.stderr,
        flush=True,
    )
    return MergedExport(out_path, spec.name, out_type, len(tensors), parameters, metadata_from, seconds)


def _check_against_base(tensors: dict[str, np.ndarray], base: GgufModel) -> None:
    """Same tensor names and shapes as the base GGUF, or a loud error (a wrong mapping never loads quietly)."""
    ours, theirs = set(tensors) - set(OPTIONAL_TENSORS), set(base.tensor_shapes)
    problems = []
    if theirs - ours:
        problems.append(f"missing tensors the base has: {', '.join(sorted(theirs - ours)[:8])}")
    if ours - theirs:
        problems.append(f"tensors the base does not have: {', '.join(sorted(ours - theirs)[:8])}")
    for name in sorted(ours & theirs):
        if tuple(tensors[name].shape) != base.tensor_shapes[name]:
            problems.append(f"{name}: shape {tuple(tensors[name].shape)} vs base {base.tensor_shapes[name]}")
    if problems:
        raise MergedExportError(f"merged model does not match the base GGUF {base.path}:\n  " + "\n  ".join(problems))
