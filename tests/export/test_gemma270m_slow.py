"""The real thing, kept short: train a few steps on Gemma 3 270M, export both ways, check parity, serve."""

from __future__ import annotations

import json

import pytest

from export.manifest import manifest_path_for
from inference.models import embedded_base_model
from news_enhancer.cli import main as news_enhancer
from schemas import validate
from tests.export.conftest import TRAIN_SAMPLE


@pytest.fixture(scope="module")
def trained_adapter(tmp_path_factory):
    """An adapter from `news-enhancer train`: the 3 fixture items, learned well enough to answer with
    confident JSON (a high learning rate and a few steps), so greedy answers are meaningful to compare."""
    run = tmp_path_factory.mktemp("train") / "run"
    argv = ["train", "--backend", "hf", "--data", str(TRAIN_SAMPLE), "-o", str(run), "--max-steps", "6"]
    argv += ["--batch-size", "3", "--lr", "2e-3", "--num-threads", "1", "--set", "warmup_ratio=0"]
    assert news_enhancer(argv) == 0
    return run / "adapter"


def _export(adapter, out, *extra):
    argv = ["export", "--adapter", str(adapter), "--out", str(out), "--parity-data", str(TRAIN_SAMPLE)]
    assert news_enhancer([*argv, "--parity-k", "2", "--parity-max-tokens", "64", *extra]) == 0
    return json.loads(manifest_path_for(out).read_text())


@pytest.mark.slow
def test_trained_gemma_adapter_exports_passes_parity_and_serves(trained_adapter, tmp_path):
    from inference.analyzer import Analyzer
    from inference.engine import EngineConfig

    lora = tmp_path / "news-lora.gguf"
    manifest = _export(trained_adapter, lora)
    parity = manifest["metrics"]["parity"]
    assert parity["passed"], parity
    lora_result = parity["variants"][0]
    assert lora_result["greedy_agreement"] == 1.0  # identical, or parted only at a near tie
    assert lora_result["top1_agreement"] >= 0.95
    assert lora_result["relative_error"] < 0.3
    assert manifest["base_model"]["gguf"] == str(embedded_base_model())
    assert manifest["extra"]["adapter"]["training_manifest"]["kind"] == "adapter"

    merged = tmp_path / "news-q8_0.gguf"
    manifest = _export(trained_adapter, merged, "--merge", "--quant", "q8_0")
    assert manifest["metrics"]["parity"]["passed"], manifest["metrics"]["parity"]
    assert 250e6 < merged.stat().st_size < 320e6
    assert not (tmp_path / "news-q8_0.f16.gguf").exists()

    # The serving engine takes either form.
    item = TRAIN_SAMPLE.read_text().splitlines()[0]
    title = json.loads(item)["metadata"]["article_title"]
    content = json.loads(item)["metadata"]["original_content"]
    for config in (
        EngineConfig(model_path=str(embedded_base_model()), lora_path=str(lora), n_threads=1),
        EngineConfig(model_path=str(merged), n_threads=1),
    ):
        result = Analyzer(config).analyze_item(title, content)
        validate("article_result", result)
