"""Fit the relevance head (inference.relevance_head): L2-regularized softmax regression on embeddings.

The objective is scikit-learn's multinomial LogisticRegression's: C * sum(-log p(y)) + ||W||^2 / 2,
bias unpenalized, solved by L-BFGS (scipy). Features are standardized on the items it is fitted on;
the sponsored flag is not standardized but multiplied by `sponsor_scale`, so the penalty barely
holds its weight back (18 ads in 364 items are too few for a standardized column to matter).

`HeadConfig` beside `fit_head`, as trl keeps a config dataclass beside each trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.relevance_head import RelevanceHead


@dataclass
class HeadConfig:
    C: float = 0.01
    """Inverse regularization strength (larger: a closer fit)."""
    sponsor_scale: float = 30.0
    """Value of the sponsored feature for an ad (0 for other items)."""
    keyword_scale: float = 0.0
    """Value of the keyword feature per unit of `ai_terms` (0: off); unstandardized, like the sponsored flag."""
    smoothing: float = 0.0
    """Ordinal label smoothing: an item's target spreads over the scores near its own, in proportion to
    exp(-|score - annotated| / smoothing) (0: one-hot). Neighbouring scores are near misses, not errors."""
    max_iter: int = 2000


SMOOTHING_GRID: tuple[float, ...] = (0.0, 0.5, 1.0)
"""Smoothing values cross-validation chooses from (with C and sponsor_scale)."""


def soft_targets(y: np.ndarray, classes: list[int], smoothing: float) -> np.ndarray:
    """(n, k) target distributions: one-hot, or spread to neighbouring scores (HeadConfig.smoothing)."""
    y = np.asarray(y, dtype=float)
    if smoothing <= 0:
        targets = np.zeros((len(y), len(classes)))
        targets[np.arange(len(y)), [classes.index(int(v)) for v in y]] = 1.0
        return targets
    weights = np.exp(-np.abs(np.asarray(classes, dtype=float)[None, :] - y[:, None]) / smoothing)
    return weights / weights.sum(axis=1, keepdims=True)


def fit_softmax(x: np.ndarray, targets: np.ndarray, C: float, max_iter: int = 2000):
    """(weights (k, d), bias (k,)) minimizing C * cross-entropy(targets, p) + ||W||^2 / 2."""
    from scipy.optimize import minimize

    n, d = x.shape
    k = targets.shape[1]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: k * d].reshape(k, d), theta[k * d :]
        logits = x @ w.T + b
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        p = np.exp(log_p)
        value = -C * float((targets * log_p).sum()) + 0.5 * float((w * w).sum())
        residual = C * (p - targets)
        grad_w = residual.T @ x + w
        grad_b = residual.sum(axis=0)
        return value, np.concatenate([grad_w.ravel(), grad_b])

    result = minimize(loss, np.zeros(k * d + k), jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    theta = result.x
    return theta[: k * d].reshape(k, d), theta[k * d :]


def fit_head(
    embeddings: np.ndarray,
    sponsored: np.ndarray,
    scores: np.ndarray,
    config: HeadConfig,
    base_model: dict[str, Any],
    fitted: dict[str, Any] | None = None,
    keywords: np.ndarray | None = None,
) -> RelevanceHead:
    """A head fitted on these items (one row each); `keywords` is `ai_terms` of each item's head text
    (needed when `config.keyword_scale` is not 0); `fitted` is provenance recorded in the file."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    mean = embeddings.mean(axis=0)
    scale = embeddings.std(axis=0) + 1e-6
    classes = sorted({int(s) for s in scores})
    head = RelevanceHead(classes, np.zeros((0, 0)), np.zeros(0), mean, scale, config.sponsor_scale, base_model)
    head.keyword_scale = config.keyword_scale
    x = head.features(embeddings, sponsored, keywords)
    targets = soft_targets(np.asarray(scores), classes, config.smoothing)
    head.weights, head.bias = fit_softmax(x, targets, config.C, config.max_iter)
    head.fitted = {
        "C": config.C,
        "sponsor_scale": config.sponsor_scale,
        "keyword_scale": config.keyword_scale,
        "smoothing": config.smoothing,
    }
    head.fitted |= {"items": len(scores), **(fitted or {})}
    return head
