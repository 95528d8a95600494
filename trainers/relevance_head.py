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
    max_iter: int = 2000


def fit_softmax(x: np.ndarray, y: np.ndarray, classes: list[int], C: float, max_iter: int = 2000):
    """(weights (k, d), bias (k,)) minimizing C * cross-entropy + ||W||^2 / 2."""
    from scipy.optimize import minimize

    n, d = x.shape
    k = len(classes)
    onehot = np.zeros((n, k))
    onehot[np.arange(n), [classes.index(int(v)) for v in y]] = 1.0

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: k * d].reshape(k, d), theta[k * d :]
        logits = x @ w.T + b
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        p = np.exp(log_p)
        value = -C * float((onehot * log_p).sum()) + 0.5 * float((w * w).sum())
        residual = C * (p - onehot)
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
) -> RelevanceHead:
    """A head fitted on these items (one row each); `fitted` is provenance recorded in the file."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    mean = embeddings.mean(axis=0)
    scale = embeddings.std(axis=0) + 1e-6
    classes = sorted({int(s) for s in scores})
    head = RelevanceHead(classes, np.zeros((0, 0)), np.zeros(0), mean, scale, config.sponsor_scale, base_model)
    x = head.features(embeddings, sponsored)
    head.weights, head.bias = fit_softmax(x, np.asarray(scores), classes, config.C, config.max_iter)
    head.fitted = {"C": config.C, "sponsor_scale": config.sponsor_scale, "items": len(scores), **(fitted or {})}
    return head
