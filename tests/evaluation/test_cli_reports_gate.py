"""`eval score`, `eval compare` and `eval gate` end to end on a small hand-written reference set.

Predictions are written from the fixture's own answers: "good" repeats them, "worse" drops tags and shifts
relevance (all still valid JSON), "one_invalid" breaks a single answer. The gate must refuse the worse and
the invalid candidate and pass an equal one. These directories come from `eval score` (no exported GGUF
behind them), so the gate runs here with --allow-unverified; what it does without it, and how it
re-scores the directories, is tests/evaluation/test_gate_honesty.py.
"""

import json
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from evaluation.cli import main

REFERENCES = Path(__file__).parents[1] / "fixtures" / "eval_references.jsonl"
STUDY_KEYS = {
    "json_validity",
    "f1_overall",
    "f1_key_insights",
    "f1_company_names",
    "jaccard_key_insights",
    "jaccard_company_names",
    "precision_overall",
    "recall_overall",
    "relevance_mae",
    "relevance_r2",
    "relevance_adjusted_r2",
    "rouge1",
    "rouge2",
    "rougeL",
    "rouge_pairs",
    "exact_match",
    "avg_length",
}
STUDY_PLOTS = {
    "forest_plot",
    "json_validity",
    "f1_by_field",
    "precision_recall",
    "relevance_error_distribution",
    "response_length_boxplot",
    "response_length_violin",
    "response_length_histogram",
    "word_count_boxplot",
    "statistical_summary_heatmap",
    "rouge_scores",
    "output_consistency",
}


def answers():
    rows = [json.loads(line) for line in REFERENCES.read_text(encoding="utf-8").splitlines()]
    return [json.loads(row["messages"][1]["content"]) for row in rows]


def worse(answer):
    return {
        **answer,
        "relevance_score": max(1, answer["relevance_score"] - 4),
        "key_insights": [],
        "company_names": ["Unknown Corp"],
    }


def write_predictions(path: Path, outputs):
    path.write_text("".join(json.dumps({"output": o}) + "\n" for o in outputs), encoding="utf-8")
    return path


def score(tmp: Path, name: str, outputs) -> Path:
    preds = write_predictions(tmp / f"{name}.jsonl", outputs)
    out = tmp / name
    assert (
        main(
            [
                "score",
                "--predictions",
                str(preds),
                "--references",
                str(REFERENCES),
                "--out",
                str(out),
                "--no-bertscore",
                "--name",
                name,
            ]
        )
        == 0
    )
    return out


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    good = [json.dumps(a, indent=2) for a in answers()]
    one_invalid = [*good[:-1], "Sorry, I cannot analyze this item."]
    return {
        "good": score(tmp, "good", good),
        "worse": score(tmp, "worse", [json.dumps(worse(a)) for a in answers()]),
        "one_invalid": score(tmp, "one_invalid", one_invalid),
        "tmp": tmp,
    }


def test_metrics_json_has_the_study_keys_and_better_ones(dirs):
    summary = json.loads((dirs["good"] / "metrics.json").read_text())
    assert set(summary["study"]) >= STUDY_KEYS
    study = summary["study"]
    assert study["json_validity"] == 1.0 and study["f1_overall"] == 1.0 and study["exact_match"] == 1.0
    assert study["relevance_mae"] == 0.0 and study["rouge1"] == 1.0
    assert summary["better"]["f1_overall_nonempty_ref"] == 1.0
    assert summary["baselines"]["all_empty"]["study"]["f1_overall"] < 1.0
    assert summary["references"]["n"] == 16 and len(summary["references"]["sha256"]) == 64
    assert [s["metric"] for s in summary["vs_baseline"]][:3] == ["f1_key_insights", "f1_company_names", "f1_overall"]
    assert summary["bertscore"] is None


def test_invalid_answers_are_scored_not_skipped(dirs):
    summary = json.loads((dirs["one_invalid"] / "metrics.json").read_text())
    assert summary["study"]["n"] == 16
    assert summary["study"]["valid_count"] == 15
    rows = [json.loads(line) for line in (dirs["one_invalid"] / "per_example.jsonl").read_text().splitlines()]
    assert rows[-1]["valid"] is False
    assert rows[-1]["prediction"] == {"relevance_score": 0, "summary": "", "key_insights": [], "company_names": []}


def test_plots_are_real_pngs(dirs):
    plots = {p.stem: p for p in (dirs["good"] / "plots").glob("*.png")}
    assert set(plots) >= STUDY_PLOTS
    for path in plots.values():
        image = mpimg.imread(path)
        assert image.shape[0] > 200 and image.shape[1] > 300
        assert image.std() > 0.01  # not a blank canvas


def test_reports_hold_tables_and_embedded_plots(dirs):
    md = (dirs["worse"] / "report.md").read_text()
    assert "| F1 overall |" in md and "| relevance MAE |" in md
    assert "![forest plot](plots/forest_plot.png)" in md
    page = (dirs["worse"] / "report.html").read_text()
    assert page.count("<table>") >= 4
    assert page.count("src='data:image/png;base64,") >= len(STUDY_PLOTS)
    assert "all-empty baseline" in page
    assert "BERTScore: not computed" in page


def test_score_refuses_misaligned_predictions(dirs, capsys):
    preds = write_predictions(dirs["tmp"] / "short.jsonl", ["{}"] * 3)
    assert (
        main(
            [
                "score",
                "--predictions",
                str(preds),
                "--references",
                str(REFERENCES),
                "--out",
                str(dirs["tmp"] / "short"),
                "--no-bertscore",
            ]
        )
        == 2
    )
    assert "3 predictions for 16 references" in capsys.readouterr().err


def test_score_reports_a_broken_reference_file(dirs, capsys):
    bad = dirs["tmp"] / "bad_refs.jsonl"
    bad.write_text('{"messages": "nope"}\n', encoding="utf-8")
    preds = write_predictions(dirs["tmp"] / "one.jsonl", ["{}"])
    assert (
        main(
            [
                "score",
                "--predictions",
                str(preds),
                "--references",
                str(bad),
                "--out",
                str(dirs["tmp"] / "x"),
                "--no-bertscore",
            ]
        )
        == 2
    )
    assert "line 1" in capsys.readouterr().err


def test_compare_writes_statistics_plots_and_reports(dirs):
    out = dirs["tmp"] / "cmp"
    assert main(["compare", str(dirs["worse"]), str(dirs["good"]), "--out", str(out)]) == 0
    result = json.loads((out / "comparison.json").read_text())
    (comp,) = result["comparisons"]
    assert (comp["a"], comp["b"]) == ("worse", "good")
    f1 = next(s for s in comp["statistics"] if s["metric"] == "f1_overall")
    assert f1["mean_diff"] < 0 and f1["ci_high"] < 0
    assert (out / "plots" / "forest_plot.png").is_file()
    assert "Statistics: worse (A) vs good (B)" in (out / "report.md").read_text()


def test_gate_refuses_a_worse_model(dirs, capsys):
    code = main(["gate", "--candidate", str(dirs["worse"]), "--current", str(dirs["good"]), "--allow-unverified"])
    assert code == 1
    verdict = json.loads((dirs["worse"] / "verdict.json").read_text())
    assert verdict["passed"] is False and verdict["allow_unverified"] is True
    failed = {c["name"] for c in verdict["checks"] if not c["passed"]}
    assert failed == {"not_worse_f1_overall", "not_worse_abs_relevance_error"}
    assert "FAIL" in capsys.readouterr().out


def test_gate_refuses_an_invalid_answer_even_if_not_significantly_worse(dirs):
    verdict_path = dirs["tmp"] / "v_invalid.json"
    code = main(
        [
            "gate",
            "--candidate",
            str(dirs["one_invalid"]),
            "--current",
            str(dirs["good"]),
            "--verdict",
            str(verdict_path),
            "--allow-unverified",
        ]
    )
    assert code == 1
    verdict = json.loads(verdict_path.read_text())
    assert [c["name"] for c in verdict["checks"] if not c["passed"]] == ["json_validity"]
    assert "15/16" in verdict["reasons"][0]


def test_gate_passes_an_equal_model(dirs):
    verdict_path = dirs["tmp"] / "v_equal.json"
    args = ["gate", "--candidate", str(dirs["good"]), "--current", str(dirs["good"]), "--verdict", str(verdict_path)]
    assert main([*args, "--allow-unverified"]) == 0
    verdict = json.loads(verdict_path.read_text())
    assert verdict["passed"] is True and verdict["reasons"] == []
    assert verdict["allow_unverified"] is True and verdict["parity"]["verified"] is False
    parity = next(c for c in verdict["checks"] if c["name"] == "parity_verified")
    assert parity["passed"] and "accepted with --allow-unverified" in parity["detail"]


def test_gate_records_the_evaluation_in_the_candidates_gguf_manifest(dirs):
    from inference.manifest import Manifest

    manifest = dirs["tmp"] / "candidate.manifest.json"
    Manifest(kind="gguf", metrics={"size_bytes": 7}).write(dirs["tmp"], manifest.name)
    args = ["gate", "--candidate", str(dirs["worse"]), "--current", str(dirs["good"]), "--manifest", str(manifest)]
    args += ["--verdict", str(dirs["tmp"] / "v_recorded.json"), "--allow-unverified"]
    assert main(args) == 1
    recorded = json.loads(manifest.read_text())["metrics"]
    assert recorded["size_bytes"] == 7  # the export's figures stay
    evaluation = recorded["evaluation"]
    assert evaluation["gate"]["passed"] is False and len(evaluation["gate"]["reasons"]) == 2
    assert evaluation["gate"]["allow_unverified"] is True and evaluation["gate"]["parity_verified"] is False
    scored = json.loads((dirs["worse"] / "metrics.json").read_text())
    assert evaluation["study"]["f1_overall"] == scored["study"]["f1_overall"]
    assert evaluation["references"]["n"] == 16


def test_gate_passes_a_better_model(dirs):
    assert (
        main(
            [
                "gate",
                "--candidate",
                str(dirs["good"]),
                "--current",
                str(dirs["worse"]),
                "--verdict",
                str(dirs["tmp"] / "v_better.json"),
                "--allow-unverified",
            ]
        )
        == 0
    )


def test_gate_will_not_compare_different_references(dirs):
    # The same items, one reference answer changed: scored honestly, but on other references.
    lines = REFERENCES.read_text(encoding="utf-8").splitlines()
    last = json.loads(lines[-1])
    answer = json.loads(last["messages"][1]["content"])
    answer["relevance_score"] = 1 if answer["relevance_score"] != 1 else 2
    last["messages"][1]["content"] = json.dumps(answer)
    refs = dirs["tmp"] / "other_refs.jsonl"
    refs.write_text("\n".join([*lines[:-1], json.dumps(last)]) + "\n", encoding="utf-8")
    preds = write_predictions(dirs["tmp"] / "other.jsonl", [json.dumps(a) for a in answers()])
    other = dirs["tmp"] / "other_refs"
    argv = ["score", "--predictions", str(preds), "--references", str(refs), "--out", str(other), "--no-bertscore"]
    assert main(argv) == 0
    assert main(["gate", "--candidate", str(other), "--current", str(dirs["good"]), "--allow-unverified"]) == 2
    verdict = json.loads((other / "verdict.json").read_text())
    assert verdict["passed"] is False and verdict["reasons"] == [verdict["reasons"][0]]
    assert "different references" in verdict["reasons"][0] and "16 vs 16 items" in verdict["reasons"][0]


def test_gate_on_a_missing_directory_fails_cleanly(dirs):
    assert (
        main(
            [
                "gate",
                "--candidate",
                str(dirs["tmp"] / "nope"),
                "--current",
                str(dirs["good"]),
                "--verdict",
                str(dirs["tmp"] / "v_missing.json"),
            ]
        )
        == 2
    )
