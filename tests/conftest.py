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
