"""The evaluation report as Markdown and as one self-contained HTML page (plots embedded as base64).

A report is built once as a list of blocks (headings, paragraphs, tables, images) and rendered twice, so
the two formats always say the same thing.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation.scoring import SystemScores
from evaluation.stats import PairedStats

STUDY_REPORTED = {
    # docs/metrics.md §8: the study's table (96-item test set, Llama 3.2 1B): Tinker LoRA, Unsloth LoRA.
    "json_validity": (1.0, 1.0),
    "f1_overall": (0.612, 0.603),
    "f1_key_insights": (0.464, 0.435),
    "f1_company_names": (0.761, 0.772),
    "jaccard_key_insights": (0.363, 0.333),
    "jaccard_company_names": (0.750, 0.759),
    "relevance_mae": (1.80, 1.43),
    "rouge1": (0.600, 0.561),
    "rouge2": (0.377, 0.343),
    "rougeL": (0.552, 0.524),
    "exact_match": (0.073, 0.031),
}

STUDY_ROWS = [
    ("JSON validity", "json_validity", "pct"),
    ("F1 overall", "f1_overall", "f3"),
    ("F1 key_insights", "f1_key_insights", "f3"),
    ("F1 company_names", "f1_company_names", "f3"),
    ("Jaccard key_insights", "jaccard_key_insights", "f3"),
    ("Jaccard company_names", "jaccard_company_names", "f3"),
    ("Jaccard overall", "jaccard_overall", "f3"),
    ("precision overall (pooled)", "precision_overall", "f3"),
    ("recall overall (pooled)", "recall_overall", "f3"),
    ("relevance MAE", "relevance_mae", "f2"),
    ("relevance R²", "relevance_r2", "f3"),
    ("relevance adjusted R² (k=1)", "relevance_adjusted_r2", "f3"),
    ("ROUGE-1", "rouge1", "f3"),
    ("ROUGE-2", "rouge2", "f3"),
    ("ROUGE-L", "rougeL", "f3"),
    ("ROUGE pairs kept", "rouge_pairs", "int"),
    ("BERTScore F1", "bertscore_f1", "f3"),
    ("exact match", "exact_match", "pct"),
    ("avg length (chars)", "avg_length", "f1"),
    ("output consistency (CV)", "output_consistency_cv", "f3"),
]

BETTER_ROWS = [
    ("F1 overall on non-empty references", "f1_overall_nonempty_ref", "f3"),
    ("F1 key_insights, non-empty references", "f1_key_insights_nonempty_ref", "f3"),
    ("F1 company_names, non-empty references", "f1_company_names_nonempty_ref", "f3"),
    ("micro-F1 overall", "micro_f1_overall", "f3"),
    ("micro-F1 key_insights", "micro_f1_key_insights", "f3"),
    ("micro-F1 company_names", "micro_f1_company_names", "f3"),
    ("micro precision overall", "micro_precision_overall", "f3"),
    ("micro recall overall", "micro_recall_overall", "f3"),
    ("normalized F1 overall (case/space)", "normalized.f1_overall", "f3"),
    ("normalized micro-F1 overall", "normalized.micro_f1_overall", "f3"),
    ("normalized F1 on non-empty refs", "normalized.f1_overall_nonempty_ref", "f3"),
    ("relevance MAE, valid answers only", "relevance_mae_valid_only", "f2"),
    ("relevance within ±1", "relevance_within_1", "pct"),
    ("summary exact", "summary_exact", "pct"),
]

LENGTH_ROWS = [
    ("length chars: mean", "avg_length", "f1"),
    ("length chars: std (population)", "std_length", "f1"),
    ("length chars: min", "min_length", "f1"),
    ("length chars: median", "median_length", "f1"),
    ("length chars: max", "max_length", "f1"),
    ("words: mean", "avg_words", "f2"),
    ("words: std (population)", "std_words", "f2"),
    ("words: min", "min_words", "f1"),
    ("words: median", "median_words", "f1"),
    ("words: max", "max_words", "f1"),
    ("sponsored-ad precision", "sponsored_ad_precision", "f3"),
    ("sponsored-ad recall", "sponsored_ad_recall", "f3"),
    ("sponsored-ad F1", "sponsored_ad_f1", "f3"),
    ("sponsored-ad accuracy", "sponsored_ad_accuracy", "f3"),
    ("sponsored-ad TP / FP / TN / FN", "sponsored_counts", "raw"),
]


def fmt(value: Any, kind: str = "f3") -> str:
    if value is None:
        return "n/a"
    if kind == "raw" or isinstance(value, str):
        return str(value)
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "int":
        return str(int(value))
    return f"{value:.{int(kind[1:])}f}"


def lookup(mapping: Mapping[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(part)
    return mapping


# ---------------------------------------------------------------- blocks


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Image:
    title: str
    path: Path


Block = Heading | Paragraph | Table | Image


def metric_table(systems: Sequence[SystemScores], rows, source: Callable[[SystemScores], Mapping]) -> Table:
    return Table(
        ["metric", *(s.name for s in systems)],
        [[label, *(fmt(lookup(source(s), key), kind) for s in systems)] for label, key, kind in rows],
    )


def study_table(systems: Sequence[SystemScores]) -> Table:
    table = metric_table(systems, STUDY_ROWS, lambda s: s.study)
    headers = [*table.headers, "study: Tinker LoRA†", "study: Unsloth LoRA†"]
    rows = []
    for (_, key, kind), row in zip(STUDY_ROWS, table.rows, strict=True):
        reported = STUDY_REPORTED.get(key)
        rows.append([*row, *(fmt(v, kind) for v in reported)] if reported else [*row, "", ""])
    return Table(headers, rows)


def stats_table(stats: Sequence[PairedStats]) -> Table:
    def ci(lo, hi):
        return "n/a" if lo is None else f"[{lo:+.3f}, {hi:+.3f}]"

    return Table(
        [
            "metric",
            "mean A",
            "mean B",
            "A − B",
            "95% CI (bootstrap)",
            "t p",
            "Wilcoxon p",
            "Cohen's d",
            "d_z",
            "power",
            "verdict",
        ],
        [
            [
                s.metric,
                fmt(s.mean_a),
                fmt(s.mean_b),
                f"{s.mean_diff:+.3f}",
                ci(s.ci_low, s.ci_high),
                fmt(s.t_pvalue, "f4"),
                fmt(s.wilcoxon_pvalue, "f4"),
                fmt(s.cohens_d),
                fmt(s.d_z),
                fmt(s.power),
                "A worse" if s.a_worse else "A better" if s.a_better else "no clear difference",
            ]
            for s in stats
        ],
    )


def _with_counts(system: SystemScores) -> dict[str, Any]:
    counts = (
        system.study.get(f"sponsored_ad_{k}")
        for k in ("true_positives", "false_positives", "true_negatives", "false_negatives")
    )
    return {**system.study, "sponsored_counts": " / ".join(map(str, counts))}


def build_blocks(
    title: str,
    systems: Sequence[SystemScores],
    comparisons: Sequence[tuple[str, str, list[PairedStats]]],
    plots: Mapping[str, Path],
    context: Sequence[str] = (),
    baseline_note: str | None = None,
) -> list[Block]:
    """The report's content: context lines, the study table, better metrics, statistics, plots."""
    blocks: list[Block] = [Heading(title, 1), *(Paragraph(line) for line in context)]
    blocks += [
        Heading("Study-compatible metrics"),
        Paragraph(
            "Defined exactly as in docs/metrics.md (the original study's conventions): invalid answers are scored as "
            "empty with relevance 0; list F1 counts both-empty as 1; pooled precision/recall drop both-empty cells; "
            "ROUGE/BERTScore use the joined insights + companies and drop pairs with an empty side."
        ),
        study_table(systems),
        Paragraph(
            "† The study's reported figures (96-item test set, Llama 3.2 1B, sampled decoding): a different model "
            "and test set, shown only for orientation."
        ),
        Heading("Better metrics"),
        Paragraph(
            "F1 restricted to non-empty references does not reward empty answers; micro-F1 sums tags over examples; "
            "normalized variants ignore case and whitespace in tags; MAE on valid answers only does not impute 0."
        ),
        metric_table(systems, BETTER_ROWS, lambda s: s.better),
    ]
    if baseline_note:
        blocks.append(Paragraph(baseline_note))
    blocks += [Heading("Length, words and sponsored-ad detection"), metric_table(systems, LENGTH_ROWS, _with_counts)]
    bert = next((s.bertscore for s in systems if s.bertscore), None)
    if bert:
        blocks.append(
            Paragraph(
                f"BERTScore scorer: {bert['bertscore_model']}. Not comparable with the study's roberta-large numbers."
            )
        )
    else:
        blocks.append(Paragraph("BERTScore: not computed for this report (it was skipped with --no-bertscore)."))
    for a, b, stats in comparisons:
        blocks += [
            Heading(f"Statistics: {a} (A) vs {b} (B)"),
            Paragraph(
                f"Paired over {stats[0].n if stats else 0} examples. t-test and Wilcoxon with scipy defaults; "
                "Cohen's d as the study computed it (pooled SD); d_z = mean(diff)/sd(diff); power of the paired "
                f"t-test for |d| at alpha 0.05; CI: percentile bootstrap, {stats[0].n_resamples if stats else 0} "
                "resamples of example pairs, fixed seed. For |relevance error| lower is better."
            ),
            stats_table(stats),
        ]
    if plots:
        blocks.append(Heading("Plots"))
        blocks += [Image(name.replace("_", " "), path) for name, path in plots.items()]
    return blocks


# ---------------------------------------------------------------- rendering


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: Sequence[Block], base_dir: Path) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}\n")
        elif isinstance(block, Paragraph):
            out.append(block.text + "\n")
        elif isinstance(block, Table):
            out.append("| " + " | ".join(map(_md_cell, block.headers)) + " |")
            out.append("|" + "---|" * len(block.headers))
            out += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in block.rows]
            out.append("")
        elif isinstance(block, Image):
            rel = block.path.relative_to(base_dir) if block.path.is_relative_to(base_dir) else block.path
            out.append(f"![{block.title}]({rel.as_posix()})\n")
    return "\n".join(out)


CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f0f0f0; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0 1.5em; }
figure { margin: 0; } figcaption { font-size: 0.9em; color: #555; }
"""


def to_html(blocks: Sequence[Block]) -> str:
    title = next((b.text for b in blocks if isinstance(b, Heading)), "Evaluation report")
    out = [
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            out.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, Table):
            out.append(
                "<table><thead><tr>"
                + "".join(f"<th>{html.escape(h)}</th>" for h in block.headers)
                + "</tr></thead><tbody>"
            )
            out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in block.rows]
            out.append("</tbody></table>")
        elif isinstance(block, Image):
            data = base64.b64encode(block.path.read_bytes()).decode("ascii")
            out.append(
                f"<figure><figcaption>{html.escape(block.title)}</figcaption>"
                f"<img alt='{html.escape(block.title)}' src='data:image/png;base64,{data}'></figure>"
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_reports(blocks: Sequence[Block], out_dir: Path) -> tuple[Path, Path]:
    """report.md (images linked) and report.html (images embedded) in out_dir."""
    md, page = out_dir / "report.md", out_dir / "report.html"
    md.write_text(to_markdown(blocks, out_dir), encoding="utf-8")
    page.write_text(to_html(blocks), encoding="utf-8")
    return md, page
