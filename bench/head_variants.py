"""Relevance-head variants on the cross-validation protocol of `eval cv head` (same folds, nested choice).

Reads the embeddings cache `eval cv head` wrote (PLAN/head/features.npz). For each variant,
out-of-fold probabilities for every item (the variant's grid chosen per outer fold by inner
leave-one-fold-out on the training folds only, by log loss as the protocol does, or by MAE as it did
before 2026-12-02), then MAE of the written score (median), R² and Spearman of the expected score,
sponsored mean, and the paired email-bootstrap CI of the absolute error against the first variant.

Variants: softmax (the shipped recipe), softmax-mae (chosen by inner MAE), smooth (ordinal label
smoothing), ordinal (proportional odds), prompted (the same softmax on another embedding: the item
wrapped in an instruction, mean-pooled and last-token states concatenated; computed here with the
embedded model, ~3 min, cached in PLAN/head/prompted.npz), concat (both embeddings side by side),
ensemble (the mean of the softmax and prompted distributions, each with its own inner choice), nested
(per outer fold, the feature set among softmax / prompted / concat with the lowest inner log loss:
choosing the variant inside the protocol, so its figure is not the best of several looks).

    .venv/bin/python bench/head_variants.py --plan runs/cv [--variants softmax softmax-mae smooth ordinal prompted
        concat ensemble nested]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.crossval import plan_records, read_plan  # noqa: E402
from evaluation.relevance_cv import (  # noqa: E402
    GRID,
    email_bootstrap,
    expected_scores,
    figures,
    log_loss,
    median_scores,
    record_input,
)
from inference.relevance_head import head_text  # noqa: E402
from trainers.relevance_head import SMOOTHING_GRID, HeadConfig, fit_head  # noqa: E402

PAIRS = sorted({(c, s) for c, s, _ in GRID})
"""The protocol's (C, sponsor_scale) points; the variants here run without the keyword feature (its own
figures come from `eval cv head`)."""

VARIANTS = {
    "softmax": [(c, s, 0.0) for c, s in PAIRS],
    "softmax-mae": [(c, s, 0.0) for c, s in PAIRS],
    "prompted": [(c, s, 0.0) for c, s in PAIRS],
    "concat": [(c, s, 0.0) for c, s in PAIRS],
    "ensemble": [(c, s, 0.0) for c, s in PAIRS],
    "nested": [(c, s, 0.0) for c, s in PAIRS],
    "smooth": [(c, s, t) for c, s in PAIRS for t in SMOOTHING_GRID],
    "ordinal": [(c, s, "ordinal") for c in (0.001, 0.003, 0.01, 0.03) for s in (10.0, 30.0, 100.0)],
}
"""Variant name -> its grid of (C, sponsor_scale, smoothing or "ordinal")."""

PROMPT = (
    "Rate how relevant this AI-industry newsletter item is to tech professionals.\n\n",
    "\n\nRelevance to tech professionals (1-10):",
)


def prompted_features(records, cache: Path) -> np.ndarray:
    """Mean-pooled and last-token final states of each item wrapped in PROMPT (embedded model, cached)."""
    if cache.is_file():
        return np.load(cache)["embeddings"]
    import llama_cpp

    from inference.models import embedded_base_model

    llm = llama_cpp.Llama(
        model_path=str(embedded_base_model()),
        embedding=True,
        pooling_type=llama_cpp.LLAMA_POOLING_TYPE_NONE,
        n_ctx=1024,
        n_batch=1024,
        n_ubatch=1024,
        n_threads=2,
        verbose=False,
    )
    rows = []
    for i, record in enumerate(records):
        item = record_input(record)
        states = np.asarray(llm.embed(PROMPT[0] + head_text(item.title, item.content) + PROMPT[1], truncate=True))
        rows.append(np.concatenate([states.mean(axis=0), states[-1]]))
        if (i + 1) % 100 == 0:
            print(f"prompted features: {i + 1}/{len(records)}", file=sys.stderr, flush=True)
    llm.close()
    np.savez(cache, embeddings=np.asarray(rows))
    return np.asarray(rows)


def fit_ordinal(z: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
    """Proportional odds: P(y <= k) = sigmoid(theta_k - w.z); minimizes C * NLL + |w|^2 / 2."""
    from scipy.optimize import minimize
    from scipy.special import expit

    n, d = z.shape
    k = np.asarray(y, dtype=int) - 1  # 0..9

    def unpack(t):
        w, t0, steps = t[:d], t[d], t[d + 1 :]
        return w, np.concatenate([[t0], t0 + np.cumsum(np.exp(steps))])

    def loss(t):
        w, theta = unpack(t)
        eta = z @ w
        upper = np.concatenate([theta, [np.inf]])[k] - eta
        lower = np.concatenate([[-np.inf], theta])[k] - eta
        su, sl = expit(upper), expit(lower)
        p = np.clip(su - sl, 1e-12, 1.0)
        du, dl = su * (1 - su) / p, sl * (1 - sl) / p  # d log p / d upper, / d lower
        g_theta = np.zeros(len(theta))
        np.add.at(g_theta, k[k < len(theta)], -c * du[k < len(theta)])
        np.add.at(g_theta, k[k > 0] - 1, c * dl[k > 0])
        grad_w = c * (z.T @ (du - dl)) + w
        tail = np.cumsum(g_theta[::-1])[::-1]  # sum over j >= m
        grad = np.concatenate([grad_w, [g_theta.sum()], np.exp(t[d + 1 :]) * tail[1:]])
        return -c * float(np.log(p).sum()) + 0.5 * float(w @ w), grad

    start = np.concatenate([np.zeros(d), [-4.0], np.zeros(8)])
    result = minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": 3000})
    return unpack(result.x)


def ordinal_predict(x, s, y, train, test, c, scale) -> np.ndarray:
    from scipy.special import expit

    mean, sd = x[train].mean(axis=0), x[train].std(axis=0) + 1e-6
    z = np.hstack([(x - mean) / sd, s.reshape(-1, 1) * scale])
    w, theta = fit_ordinal(z[train], y[train], c)
    cdf = expit(theta[None, :] - (z[test] @ w)[:, None])
    cdf = np.hstack([np.zeros((len(cdf), 1)), cdf, np.ones((len(cdf), 1))])
    return np.diff(cdf, axis=1)


def fit_predict(x, s, y, train, test, point) -> np.ndarray:
    c, scale, smoothing = point
    if smoothing == "ordinal":
        return ordinal_predict(x, s, y, train, test, c, scale)
    head = fit_head(x[train], s[train], y[train], HeadConfig(C=c, sponsor_scale=scale, smoothing=smoothing), {})
    return head.probabilities(x[test], s[test])


def select(x, s, y, folds, grid, criterion="log_loss", with_loss=False):
    best = None
    for point in grid:
        losses = np.zeros(len(y))
        for k in np.unique(folds):
            p = fit_predict(x, s, y, folds != k, folds == k, point)
            if criterion == "mae":
                losses[folds == k] = np.abs(median_scores(p) - y[folds == k])
            else:
                losses[folds == k] = log_loss(p, y[folds == k])
        if best is None or losses.mean() < best[0]:
            best = (losses.mean(), point)
    return best if with_loss else best[1]


def out_of_fold(x, s, y, folds, grid, criterion="log_loss"):
    p, chosen = np.zeros((len(y), 10)), []
    for k in sorted(np.unique(folds)):
        train = folds != k
        point = select(x[train], s[train], y[train], folds[train], grid, criterion)
        p[folds == k] = fit_predict(x, s, y, train, folds == k, point)
        chosen.append(point)
    return p, chosen


def ensemble_oof(sets: list[np.ndarray], s, y, folds, grid):
    """OOF mean of the distributions of one softmax per feature set, each chosen on the inner folds."""
    p = np.zeros((len(y), 10))
    for k in sorted(np.unique(folds)):
        train = folds != k
        for x in sets:
            point = select(x[train], s[train], y[train], folds[train], grid)
            p[folds == k] += fit_predict(x, s, y, train, folds == k, point) / len(sets)
    return p, []


def nested_oof(sets: dict[str, np.ndarray], s, y, folds, grid):
    """OOF probabilities where each outer fold's feature set is chosen by inner log loss too."""
    p, chosen = np.zeros((len(y), 10)), []
    for k in sorted(np.unique(folds)):
        train = folds != k
        scored = {n: select(x[train], s[train], y[train], folds[train], grid, with_loss=True) for n, x in sets.items()}
        name = min(scored, key=lambda n: scored[n][0])
        p[folds == k] = fit_predict(sets[name], s, y, train, folds == k, scored[name][1])
        chosen.append((name, scored[name][1], {n: round(float(v[0]), 4) for n, v in scored.items()}))
    return p, chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", required=True)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    plan = read_plan(args.plan)
    records = plan_records(plan)
    x = np.load(Path(args.plan) / "head" / "features.npz")["embeddings"]
    y = np.array([r.analysis["relevance_score"] for r in records], dtype=float)
    s = np.array([r.is_sponsored for r in records], dtype=float)
    folds = np.array([plan["item_folds"][r.item_id] for r in records])
    emails = [r.email_id for r in records]
    errors, rows = {}, {}
    for name in args.variants:
        started = time.perf_counter()
        sets = {"softmax": x}
        if name in ("prompted", "concat", "ensemble", "nested"):  # ~3 min the first time: only where needed
            prompted = prompted_features(records, Path(args.plan) / "head" / "prompted.npz")
            sets |= {"prompted": prompted, "concat": np.hstack([x, prompted])}
        if name == "ensemble":
            p, chosen = ensemble_oof([sets["softmax"], sets["prompted"]], s, y, folds, VARIANTS[name])
        elif name == "nested":
            p, chosen = nested_oof(sets, s, y, folds, VARIANTS[name])
        else:
            criterion = "mae" if name == "softmax-mae" else "log_loss"
            p, chosen = out_of_fold(sets.get(name, x), s, y, folds, VARIANTS[name], criterion)
        written = median_scores(p)
        errors[name] = np.abs(written - y)
        rows[name] = figures(written, expected_scores(p), y, s.astype(bool))
        rows[name] |= {"seconds": round(time.perf_counter() - started, 1), "chosen": chosen}
        print(f"{name}: {json.dumps(rows[name])}", flush=True)
    base = args.variants[0]
    print(f"\n{len(y)} items, {len(set(emails))} emails; absolute error against {base} (email bootstrap):")
    for name in args.variants[1:]:
        b = email_bootstrap(errors[name], errors[base], emails)
        print(f"  {name} - {base}: {b['mean']:+.3f} (95% CI {b['ci_low']:+.3f} .. {b['ci_high']:+.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
