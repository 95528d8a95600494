"""Shared real-model fixtures: one Gemma 3 270M analyzer for the whole session (loading costs ~2 s).

One thread (the machine is shared), three sequences in parallel, a short answer budget: the base
model writes long answers, and what the tests check (validity, determinism, cut-offs, capping)
does not need long ones.
"""

import json
from pathlib import Path

import pytest

from mcp_server.analyzer import Analyzer
from mcp_server.engine import EngineConfig

FIXTURES = Path(__file__).parents[1] / "fixtures"
NEWSLETTERS = FIXTURES / "newsletters"
TRAIN_ROWS = [json.loads(line) for line in (FIXTURES / "train_sample.jsonl").read_text(encoding="utf-8").splitlines()]

TEST_CONFIG = dict(n_threads=1, n_parallel=3, max_tokens=64)


@pytest.fixture(scope="session")
def analyzer() -> Analyzer:
    a = Analyzer(EngineConfig(**TEST_CONFIG), max_items=3)
    yield a
    a.engine.close()
