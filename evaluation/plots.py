"""The study's 13 plots (docs/metrics.md §10) and a few better ones, as PNG files (matplotlib, Agg backend).

Every function takes scorecards (`SystemScores`, one per system, same references) and writes one PNG.
`make_all` writes the whole set and returns {plot name: path}; plots that need data a run lacks
(BERTScore not computed, no pair of systems to compare) are left out rather than drawn empty.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from evaluation.scoring import SystemScores  # noqa: E402
from evaluation.stats import PairedStats  # noqa: E402

Comparison = tuple[str, str, list[PairedStats]]
"""(name of A, name of B, statistics of A - B per metric)."""

DPI = 110
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
METRIC_LABELS = {
    "f1_key_insights": "F1 key_insights",
    "f1_company_names": "F1 company_names",
    "f1_overall": "F1 overall",
    "jaccard_key_insights": "Jaccard key_insights",
    "jaccard_company_names": "Jaccard company_names",
    "abs_relevance_error": "|relevance error|",
}


def _label(name: str, width: int = 28) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _grouped_bars(
    ax,
    systems: Sequence[SystemScores],
    groups: Sequence[tuple[str, Callable[[SystemScores], float | None]]],
    fmt: str = "{:.3f}",
) -> None:
    """One group of bars per metric, one bar per system, values written on the bars."""
    x = np.arange(len(groups))
    width = 0.8 / max(len(systems), 1)
    for i, system in enumerate(systems):
        values = [getter(system) for _, getter in groups]
        heights = [0.0 if v is None else float(v) for v in values]
        bars = ax.bar(
            x + (i - (len(systems) - 1) / 2) * width,
            heights,
            width,
            label=_label(system.name),
            color=COLORS[i % len(COLORS)],
        )
        for bar, v in zip(bars, values, strict=True):
            ax.annotate(
                "n/a" if v is None else fmt.format(v),
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
                xytext=(0, 2),
                textcoords="offset points",
            )
    ax.set_xticks(x, [name for name, _ in groups])
    # Below the axes, so that the legend never hides a bar.
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=min(len(systems), 4), frameon=False)
    ax.grid(axis="y", alpha=0.3)


# ---------------------------------------------------------------- the study's plots


def json_validity(systems: Sequence[SystemScores], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    names = [_label(s.name) for s in systems]
    values = [100 * s.study["json_validity"] for s in systems]
    bars = ax.bar(names, values, color=COLORS[: len(systems)])
    for bar, s in zip(bars, systems, strict=True):
        ax.annotate(
            f"{100 * s.study['json_validity']:.1f}% ({s.study['valid_count']}/{s.study['n']})",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=9,
        )
    ax.set_ylim(0, 112)
    ax.set_ylabel("valid JSON answers (%)")
    ax.set_title("JSON validity")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def f1_by_field(systems: Sequence[SystemScores], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.8))
    _grouped_bars(
        ax,
        systems,
        [
            ("key_insights", lambda s: s.study["f1_key_insights"]),
            ("company_names", lambda s: s.study["f1_company_names"]),
            ("overall", lambda s: s.study["f1_overall"]),
        ],
    )
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("mean per-example F1 (both empty = 1)")
    ax.set_title("F1 by field (study definition)")
    return _save(fig, path)


def precision_recall(systems: Sequence[SystemScores], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.8))
    _grouped_bars(
        ax,
        systems,
        [
            ("precision (pooled)", lambda s: s.study["precision_overall"]),
            ("recall (pooled)", lambda s: s.study["recall_overall"]),
            ("micro precision", lambda s: s.better.get("micro_precision_overall")),
            ("micro recall", lambda s: s.better.get("micro_recall_overall")),
        ],
    )
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("score")
    ax.set_title("Precision and recall of the list fields\n(pooled: both-empty cells dropped; micro: tags summed)")
    return _save(fig, path)


def relevance_error_distribution(systems: Sequence[SystemScores], path: Path) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [2, 1]})
    errors = [np.asarray(s.per_example["abs_relevance_error"]) for s in systems]
    top = max([int(math.ceil(e.max())) for e in errors if e.size] + [1])
    edges = np.arange(-0.5, top + 1.5)
    width = 0.8 / len(systems)
    for i, (s, e) in enumerate(zip(systems, errors, strict=True)):
        counts, _ = np.histogram(e, bins=edges)
        left.bar(
            np.arange(top + 1) + (i - (len(systems) - 1) / 2) * width,
            counts,
            width,
            label=f"{_label(s.name)} (MAE {s.study['relevance_mae']:.2f})",
            color=COLORS[i % len(COLORS)],
        )
    left.set_xlabel("|predicted - reference| relevance")
    left.set_ylabel("examples")
    left.set_title("Relevance error distribution")
    left.legend(fontsize=8)
    left.grid(axis="y", alpha=0.3)
    right.boxplot(errors, showmeans=True)
    right.set_xticks(range(1, len(systems) + 1), [_label(s.name, 22) for s in systems], fontsize=8)
    right.set_ylabel("|error|")
    right.set_title("per-example errors")
    return _save(fig, path)


def _lengths(systems: Sequence[SystemScores], key: str) -> list[np.ndarray]:
    return [np.asarray(s.per_example[key]) for s in systems]


def response_length_box(systems: Sequence[SystemScores], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.8))
    ax.boxplot(_lengths(systems, "length_chars"), showmeans=True)
    ax.set_xticks(range(1, len(systems) + 1), [_label(s.name) for s in systems], fontsize=8)
    ax.set_ylabel("characters (summary + insights + companies)")
    ax.set_title("Response length")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def response_length_violin(systems: Sequence[SystemScores], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.8))
    data = _lengths(systems, "length_chars")
    for i, values in enumerate(data, start=1):
        if values.size and np.ptp(values) > 0:
            parts = ax.violinplot([values], positions=[i], showmeans=True, showmedians=True)
            for body in parts["bodies"]:
                body.set_facecolor(COLORS[(i - 1) % len(COLORS)])
        elif values.size:  # a constant has no density: draw it as a line
            ax.hlines(values[0], i - 0.3, i + 0.3, color=COLORS[(i - 1) % len(COLORS)], linewidth=3)
    ax.set_xticks(range(1, len(systems) + 1), [_label(s.name) for s in systems], fontsize=8)
    ax.set_ylabel("characters")
    ax.set_title("Response length distribution (violin)")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def response_length_histogram(systems: Sequence[SystemScores], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.8))
    data = _lengths(systems, "length_chars")
    top = max([float(v.max()) for v in data if v.size] + [1.0])
    bins = np.linspace(0, top, 21)
    for i, (s, values) in enumerate(zip(systems, data, strict=True)):
        ax.hist(values, bins=bins, alpha=0.55, label=_label(s.name), color=COLORS[i % len(COLORS)])
    ax.set_xlabel("characters")
    ax.set_ylabel("examples")
    ax.set_title("Response length histogram")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def word_count_box(systems: Sequence[SystemScores], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.8))
    ax.boxplot(_lengths(systems, "length_words"), showmeans=True)
    ax.set_xticks(range(1, len(systems) + 1), [_label(s.name) for s in systems], fontsize=8)
    ax.set_ylabel("words")
    ax.set_title("Response word count")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def rouge_scores(systems: Sequence[SystemScores], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.8))
    _grouped_bars(ax, systems, [(k, lambda s, k=k: s.study[k]) for k in ("rouge1", "rouge2", "rougeL")])
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("mean F-measure over kept pairs")
    pairs = ", ".join(f"{_label(s.name, 20)}: {s.study['rouge_pairs']}" for s in systems)
    ax.set_title(f"ROUGE on joined insights + companies\n(pairs kept — {pairs})", fontsize=10)
    return _save(fig, path)


def output_consistency(systems: Sequence[SystemScores], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    values = [s.study.get("output_consistency_cv") for s in systems]
    bars = ax.bar([_label(s.name) for s in systems], [v or 0.0 for v in values], color=COLORS[: len(systems)])
    for bar, v in zip(bars, values, strict=True):
        ax.annotate(
            "n/a (mean 0)" if v is None else f"{v:.3f}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=9,
        )
    ax.set_ylabel("coefficient of variation of length (std / mean)")
    ax.set_title("Output consistency (lower = more consistent length)")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def bertscore_bars(systems: Sequence[SystemScores], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.8))
    _grouped_bars(
        ax,
        systems,
        [
            (label, lambda s, k=key: (s.bertscore or {}).get(k))
            for label, key in (
                ("precision", "bertscore_precision"),
                ("recall", "bertscore_recall"),
                ("F1", "bertscore_f1"),
            )
        ],
    )
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("mean BERTScore over kept pairs")
    model = next((s.bertscore["bertscore_model"] for s in systems if s.bertscore), "n/a")
    ax.set_title(f"BERTScore — scorer: {model}", fontsize=9)
    return _save(fig, path)


def forest_plot(comparisons: Sequence[Comparison], path: Path) -> Path:
    rows = [(a, b, st) for a, b, stats in comparisons for st in stats]
    fig, ax = plt.subplots(figsize=(10, 1.5 + (0.42 if len(comparisons) == 1 else 0.6) * len(rows)))
    for y, (_, _, st) in enumerate(reversed(rows)):
        color = "#d62728" if st.a_worse else "#2ca02c" if st.a_better else "#555555"
        if st.cohens_d is not None:
            if st.d_ci_low is not None:
                ax.hlines(y, st.d_ci_low, st.d_ci_high, color=color, linewidth=2)
            ax.plot(st.cohens_d, y, "s", color=color, markersize=7)
        p = "n/a" if st.t_pvalue is None else f"{st.t_pvalue:.3g}"
        d = "n/a" if st.cohens_d is None else f"{st.cohens_d:+.2f}"
        ax.annotate(
            f"d={d}  p={p}  power={(st.power or 0):.2f}",
            (1.01, y),
            xycoords=("axes fraction", "data"),
            va="center",
            fontsize=8,
        )
    ax.axvline(0, color="black", linewidth=0.8)
    single = len(comparisons) == 1
    ax.set_yticks(
        range(len(rows)),
        [
            METRIC_LABELS.get(st.metric, st.metric)
            if single
            else f"{METRIC_LABELS.get(st.metric, st.metric)}\n{_label(a, 24)} − {_label(b, 24)}"
            for a, b, st in reversed(rows)
        ],
        fontsize=8,
    )
    ax.set_xlabel("Cohen's d (study definition), 95% bootstrap CI")
    pair = f"A = {comparisons[0][0]}, B = {comparisons[0][1]}\n" if single else ""
    ax.set_title(
        f"Effect sizes, A − B. {pair}red: A significantly worse; green: A better (lower |error| is better)",
        fontsize=9,
    )
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def statistical_heatmap(comparisons: Sequence[Comparison], path: Path) -> Path:
    columns = [
        ("mean diff", lambda s: s.mean_diff, lambda v: min(abs(v), 1)),
        ("Cohen's d", lambda s: s.cohens_d, lambda v: min(abs(v), 2) / 2),
        ("d_z", lambda s: s.d_z, lambda v: min(abs(v), 2) / 2),
        ("t-test p", lambda s: s.t_pvalue, lambda v: min(-math.log10(max(v, 1e-12)), 3) / 3),
        ("Wilcoxon p", lambda s: s.wilcoxon_pvalue, lambda v: min(-math.log10(max(v, 1e-12)), 3) / 3),
        ("power", lambda s: s.power, lambda v: v),
    ]
    panels = len(comparisons)
    n_rows = max(len(stats) for _, _, stats in comparisons)
    fig, axes = plt.subplots(panels, 1, figsize=(10, 1.0 + (0.5 * n_rows + 0.8) * panels), squeeze=False)
    for ax, (a, b, stats) in zip(axes[:, 0], comparisons, strict=True):
        strength = np.zeros((len(stats), len(columns)))
        for i, st in enumerate(stats):
            for j, (_, get, scale) in enumerate(columns):
                value = get(st)
                strength[i, j] = 0.0 if value is None else scale(value)
                text = "n/a" if value is None else f"{value:.3g}"
                ax.text(
                    j, i, text, ha="center", va="center", fontsize=8, color="white" if strength[i, j] > 0.6 else "black"
                )
        ax.imshow(strength, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(columns)), [c[0] for c in columns], fontsize=8)
        ax.set_yticks(range(len(stats)), [METRIC_LABELS.get(s.metric, s.metric) for s in stats], fontsize=8)
        ax.set_title(f"{_label(a, 30)} − {_label(b, 30)}  (n={stats[0].n if stats else 0})", fontsize=9)
    fig.suptitle("Statistical summary (darker = larger effect / smaller p / higher power)", fontsize=10)
    return _save(fig, path)


# ---------------------------------------------------------------- better plots


def f1_all_vs_nonempty(systems: Sequence[SystemScores], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.8))
    _grouped_bars(
        ax,
        systems,
        [
            ("F1 overall\n(study)", lambda s: s.study["f1_overall"]),
            ("F1 on non-empty\nreferences", lambda s: s.better.get("f1_overall_nonempty_ref")),
            ("micro-F1", lambda s: s.better.get("micro_f1_overall")),
            ("micro-F1\n(normalized)", lambda s: s.better.get("normalized", {}).get("micro_f1_overall")),
        ],
    )
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("F1")
    ax.set_title("The study's F1 rewards empty answers; these do not")
    return _save(fig, path)


def relevance_scatter(systems: Sequence[SystemScores], path: Path) -> Path:
    fig, axes = plt.subplots(1, len(systems), figsize=(4.2 * len(systems), 4.2), squeeze=False)
    for ax, s in zip(axes[0], systems, strict=True):
        ref = np.array([float(r["relevance_score"]) for r in s.refs])
        pred = np.array([float(p["relevance_score"]) for p in s.preds])
        cells: dict[tuple[float, float], int] = {}
        for x, y in zip(ref, pred, strict=True):
            cells[(x, y)] = cells.get((x, y), 0) + 1
        if cells:
            xs, ys = zip(*cells, strict=True)
            ax.scatter(xs, ys, s=[20 + 25 * c for c in cells.values()], alpha=0.6)
        ax.plot([0, 10], [0, 10], "k--", linewidth=0.8)
        ax.set_xlim(-0.5, 10.5)
        ax.set_ylim(-0.5, 10.5)
        ax.set_xlabel("reference relevance")
        ax.set_ylabel("predicted relevance")
        ax.set_title(_label(s.name, 30), fontsize=9)
    fig.suptitle("Relevance: predicted vs reference (marker area = count)", fontsize=10)
    return _save(fig, path)


SYSTEM_PLOTS: dict[str, Callable[[Sequence[SystemScores], Path], Path]] = {
    "json_validity": json_validity,
    "f1_by_field": f1_by_field,
    "precision_recall": precision_recall,
    "relevance_error_distribution": relevance_error_distribution,
    "response_length_boxplot": response_length_box,
    "response_length_violin": response_length_violin,
    "response_length_histogram": response_length_histogram,
    "word_count_boxplot": word_count_box,
    "rouge_scores": rouge_scores,
    "output_consistency": output_consistency,
    "f1_all_vs_nonempty": f1_all_vs_nonempty,
    "relevance_scatter": relevance_scatter,
}
COMPARISON_PLOTS: dict[str, Callable[[Sequence[Comparison], Path], Path]] = {
    "forest_plot": forest_plot,
    "statistical_summary_heatmap": statistical_heatmap,
}


def make_all(systems: Sequence[SystemScores], comparisons: Sequence[Comparison], out_dir: Path) -> dict[str, Path]:
    """Write every applicable plot into out_dir; returns {name: path} in a stable order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {name: plot(systems, out_dir / f"{name}.png") for name, plot in SYSTEM_PLOTS.items()}
    if any(s.bertscore for s in systems):
        written["bertscore"] = bertscore_bars(systems, out_dir / "bertscore.png")
    if comparisons:
        written.update({name: plot(comparisons, out_dir / f"{name}.png") for name, plot in COMPARISON_PLOTS.items()})
    return written
