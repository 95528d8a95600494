"""Test doubles at the Tinker SDK boundary (the service itself is not reachable from tests or CI).

`FakeServiceClient` implements the ServiceClient / TrainingClient / RestClient methods that
trainers/tinker_backend.py calls, answers with the SDK's real response types, records every call, and
"exports" an adapter in Tinker's layout (tensor names `base_model.model.model....lora_A.weight`, the
output head as `model.unembed_tokens`, a config with only `r` and `lora_alpha`) for a tiny Gemma 3, so
the download + conversion path runs for real on `file://` URLs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from tinker import types
from transformers import Gemma3ForCausalLM, Gemma3TextConfig

TINY_VOCAB = 320
TINKER_ALPHA = 32
SPECIAL_TOKENS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def tiny_gemma3_config() -> Gemma3TextConfig:
    return Gemma3TextConfig(
        vocab_size=TINY_VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=128,
        sliding_window=8,
        layer_types=["sliding_attention", "full_attention"],
    )


def make_tiny_model() -> Gemma3ForCausalLM:
    """A randomly initialised two-layer Gemma 3 (tied embeddings, like the real 270M)."""
    torch.manual_seed(0)
    return Gemma3ForCausalLM(tiny_gemma3_config()).eval()


def llama3_style_tokenizer(texts: list[str]) -> Any:
    """A real byte-level BPE tokenizer trained on `texts`, with Llama 3's chat special tokens and BOS.

    Tinker's Llama tokenizer comes from the Hub, which tests may not reach; this one has the properties
    the loop relies on (BOS added to the prompt, the chat markers as single special tokens).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(texts, trainer)
    bos = SPECIAL_TOKENS[0]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tokenizer.token_to_id(bos))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=bos, eos_token=SPECIAL_TOKENS[1])


class Done:
    """An already-finished future (the SDK's APIFuture offers `.result()`)."""

    def __init__(self, value: Any):
        self.value = value

    def result(self, timeout: float | None = None) -> Any:
        return self.value


@dataclass
class Calls:
    """Everything the loop asked the fake service to do, in order."""

    create: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: list[str] = field(default_factory=list)
    forward_backward: list[tuple[list[types.Datum], str]] = field(default_factory=list)
    optim_step: list[types.AdamParams] = field(default_factory=list)
    forward: list[list[types.Datum]] = field(default_factory=list)
    saved_states: list[str] = field(default_factory=list)
    sampler_saves: list[str] = field(default_factory=list)
    external_saves: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)


def fake_loss(step: int) -> float:
    """The mean answer-token loss the fake reports before optimizer step `step` (0-based)."""
    return 2.0 / (1 + step)


def logprobs_for(datum: types.Datum, step: int) -> types.TensorData:
    """Answer positions get -fake_loss(step); prompt positions get -50, which would show in the loss if the
    loop ignored the weights."""
    weights = datum.loss_fn_inputs["weights"].tolist()
    return types.TensorData(data=[-fake_loss(step) if w else -50.0 for w in weights], dtype="float32")


class FakeTrainingClient:
    def __init__(self, service: FakeServiceClient, flags: dict[str, bool], rank: int):
        self.service, self.flags, self.rank = service, flags, rank

    @property
    def calls(self) -> Calls:
        return self.service.calls

    def get_tokenizer(self) -> Any:
        return self.service.tokenizer

    def forward_backward(self, data: list[types.Datum], loss_fn: str) -> Done:
        step = len(self.calls.optim_step)
        if self.service.fail_at_step is not None and step + 1 == self.service.fail_at_step:
            raise ConnectionError("fake Tinker service went away")
        self.calls.forward_backward.append((list(data), loss_fn))
        outputs = [{"logprobs": logprobs_for(d, step)} for d in data]
        return Done(types.ForwardBackwardOutput(loss_fn_output_type="ArrayRecord", loss_fn_outputs=outputs))

    def optim_step(self, params: types.AdamParams) -> Done:
        self.calls.optim_step.append(params)
        return Done(types.OptimStepResponse(metrics={"grad_norm": 0.25}))

    def forward(self, data: list[types.Datum], loss_fn: str) -> Done:
        self.calls.forward.append(list(data))
        step = len(self.calls.optim_step)
        outputs = [{"logprobs": logprobs_for(d, step)} for d in data]
        return Done(types.ForwardBackwardOutput(loss_fn_output_type="ArrayRecord", loss_fn_outputs=outputs))

    def save_state(self, name: str, ttl_seconds: int | None = None, overwrite: bool = False) -> Done:
        path = f"tinker://fake-run/weights/{name}"
        self.calls.saved_states.append(path)
        return Done(types.SaveWeightsResponse(path=path))

    def save_weights_for_sampler(self, name: str) -> Done:
        path = f"tinker://fake-run/sampler_weights/{name}"
        self.calls.sampler_saves.append(path)
        return Done(types.SaveWeightsForSamplerResponse(path=path))

    def save_weights_external(self, name: str) -> Done:
        """Write the adapter the way Tinker's export lays it out, into the fake's storage."""
        folder = self.service.storage / name
        folder.mkdir(parents=True)
        config = tiny_gemma3_config()
        dims = {  # module -> (in_features, out_features) in the tiny Gemma 3
            "self_attn.q_proj": (32, 2 * 16),
            "self_attn.k_proj": (32, 16),
            "self_attn.v_proj": (32, 16),
            "self_attn.o_proj": (2 * 16, 32),
            "mlp.gate_proj": (32, 64),
            "mlp.up_proj": (32, 64),
            "mlp.down_proj": (64, 32),
        }
        wanted = [
            m for m in dims if (self.flags["train_attn"] and "attn" in m) or (self.flags["train_mlp"] and "mlp" in m)
        ]
        generator = torch.Generator().manual_seed(7)
        tensors = {}
        for layer in range(config.num_hidden_layers):
            for module in wanted:
                n_in, n_out = dims[module]
                prefix = f"base_model.model.model.layers.{layer}.{module}"
                tensors[f"{prefix}.lora_A.weight"] = torch.randn(self.rank, n_in, generator=generator)
                tensors[f"{prefix}.lora_B.weight"] = torch.randn(n_out, self.rank, generator=generator)
        if self.flags["train_unembed"]:
            tensors["base_model.model.model.unembed_tokens.lora_A.weight"] = torch.randn(
                self.rank, 32, generator=generator
            )
            tensors["base_model.model.model.unembed_tokens.lora_B.weight"] = torch.randn(
                TINY_VOCAB, self.rank, generator=generator
            )
        save_file(tensors, str(folder / "adapter_model.safetensors"))
        (folder / "adapter_config.json").write_text(json.dumps({"r": self.rank, "lora_alpha": TINKER_ALPHA}))
        (folder / "checkpoint_complete").write_text("")
        path = f"tinker://fake-run/external_weights/{name}"
        self.calls.external_saves.append(path)
        return Done(types.SaveWeightsExternalResponse(path=path))


class FakeRestClient:
    def __init__(self, service: FakeServiceClient):
        self.service = service

    def get_external_weights_urls(self, tinker_path: str) -> Done:
        folder = self.service.storage / tinker_path.rsplit("/", 1)[-1]
        urls = {p.name: p.resolve().as_uri() for p in sorted(folder.iterdir())}
        expires = datetime.now(timezone.utc) + timedelta(hours=1)
        return Done(types.ExternalWeightsUrlsResponse(urls=urls, expires=expires))


class FakeServiceClient:
    """Stands in for `tinker.ServiceClient`; `calls` records what the loop did."""

    def __init__(self, tokenizer: Any, storage: Path, fail_at_step: int | None = None, calls: Calls | None = None):
        self.tokenizer = tokenizer
        self.storage = Path(storage)
        self.storage.mkdir(parents=True, exist_ok=True)
        self.fail_at_step = fail_at_step
        self.calls = calls or Calls()
        self.rank = 4
        self.flags: dict[str, bool] = {}

    def create_lora_training_client(
        self, base_model: str, rank: int = 32, seed: int | None = None, **flags: bool
    ) -> Done:
        self.calls.create.append({"base_model": base_model, "rank": rank, "seed": seed, **flags})
        self.flags, self.rank = flags, rank
        return Done(FakeTrainingClient(self, flags, rank))

    def create_training_client_from_state_with_optimizer(self, path: str) -> Done:
        self.calls.resumed_from.append(path)
        return Done(FakeTrainingClient(self, self.flags, self.rank))

    def create_rest_client(self) -> FakeRestClient:
        return FakeRestClient(self)

    def close(self, status: str) -> Done:
        self.calls.closed.append(status)
        return Done(None)
