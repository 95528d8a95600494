"""Test-wide settings (nothing may reach a model hub, plots render headless) and the shared fixtures.

The real-model fixture: one Gemma 3 270M analyzer for the whole session (loading costs ~2 s). One
thread (the machine is shared), three sequences in parallel, a short answer budget: the base model
writes long answers, and what the tests check (validity, determinism, cut-offs, capping) does not
need long ones.
"""

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FIXTURES = Path(__file__).parent / "fixtures"
NEWSLETTERS = FIXTURES / "newsletters"
TRAIN_ROWS = [json.loads(line) for line in (FIXTURES / "train_sample.jsonl").read_text(encoding="utf-8").splitlines()]

TEST_CONFIG = dict(n_threads=1, n_parallel=3, max_tokens=64)


@pytest.fixture(scope="session")
def analyzer():
    from inference.analyzer import Analyzer
    from inference.engine import EngineConfig

    a = Analyzer(EngineConfig(**TEST_CONFIG), max_items=3)
    yield a
    a.engine.close()


@pytest.fixture(autouse=True)
def _fast_tests_load_no_real_model(request, monkeypatch):
    """`pytest -m "not slow"` must never load the real Gemma model: a test that does fails here
    (mark it slow). Tiny test GGUFs and the fake engine are fine; reading a GGUF's header is too."""
    if request.node.get_closest_marker("slow"):
        return
    from inference import engine
    from inference.models import EMBEDDED_BASE_SIZE

    load = engine.Engine._load

    def guarded(self):
        path = Path(self.config.model_path) if self.config.model_path else None
        lora = self.config.lora_path
        refused = lora is not None and not Path(lora).is_file()  # the engine refuses before loading anything
        if not refused and (path is None or (path.is_file() and path.stat().st_size == EMBEDDED_BASE_SIZE)):
            pytest.fail("a fast test loaded the real Gemma 3 270M: mark it @pytest.mark.slow")
        load(self)

    monkeypatch.setattr(engine.Engine, "_load", guarded)

    from inference import relevance_head

    embed_load = relevance_head.Embedder._load

    def guarded_embedder(self):
        path = Path(self.model_path)
        if path.is_file() and path.stat().st_size == EMBEDDED_BASE_SIZE:
            pytest.fail("a fast test embedded with the real Gemma 3 270M: mark it @pytest.mark.slow")
        return embed_load(self)

    monkeypatch.setattr(relevance_head.Embedder, "_load", guarded_embedder)
