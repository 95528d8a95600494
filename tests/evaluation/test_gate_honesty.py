"""`eval gate` takes nothing on disk on trust: it re-scores, lines up items, and wants a verified export.

The directories are real ones, made by `eval score` and `eval run` on tests/fixtures/eval_references.jsonl.
`eval run` runs with the analyzer replaced by one that answers each prompt with its reference answer, and
with `--lora` naming a small stand-in file with an export manifest beside it (the manifest is written by
`export.manifest`, its parity record by `export.parity.ParityReport`): the gate only hashes that file, so
nothing needs a model. Every test here is one the gate before this change passed (or compared) wrongly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from evaluation.cli import main
from evaluation.runner import prompt_hash
from evaluation.scoring import load_references
from export.manifest import gguf_manifest, write_manifest
from export.parity import ParityReport, ParityThresholds, VariantParity
from tests.evaluation.test_cli_reports_gate import REFERENCES, answers, score, worse, write_predictions


def parity_report(passed: bool = True) -> dict:
    variant = VariantParity("lora", "base.gguf", "news-lora.gguf", prompts=2, greedy_identical=2, positions=40,
                            top1_agreement=1.0, relative_error=0.05 if passed else 0.6)  # fmt: skip
    if not passed:
        variant.failures = ["relative error 0.600 above 0.3"]
    return ParityReport(2, 40, 3.0, 20.0, [variant], ParityThresholds(), 1.0).to_dict()


def export_manifest(gguf: Path, **kwargs) -> Path:
    """The manifest `news-enhancer export` writes beside `gguf` (parity passed unless told otherwise)."""
    kwargs.setdefault("parity", parity_report())
    manifest = gguf_manifest(gguf, mode="lora", base_gguf=None, config={"chat_format": "gemma"}, **kwargs)
    return write_manifest(manifest, gguf)


class ReferenceAnswers:
    """Stands in for inference.analyzer.Analyzer: answers each prompt with its reference answer."""

    def __init__(self, _config):
        self.answers = {ref.prompt: ref.answer for ref in load_references(REFERENCES)}

    def complete(self, prompt):
        return SimpleNamespace(raw=self.answers[prompt], finish_reason="stop")


def eval_run(out: Path, lora: Path) -> Path:
    argv = ["run", "--data", str(REFERENCES), "--out", str(out), "--lora", str(lora), "--chat-format", "gemma",
            "--no-bertscore", "--no-progress", "--name", out.name]  # fmt: skip
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gate")
    lora = tmp / "news-lora.gguf"
    lora.write_bytes(b"GGUF stand-in for an exported adapter" * 100)
    manifest = export_manifest(lora)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("inference.analyzer.Analyzer", ReferenceAnswers)
        exported = eval_run(tmp / "exported", lora)
    good = [json.dumps(a, indent=2) for a in answers()]
    return {
        "tmp": tmp,
        "lora": lora,
        "manifest": manifest,
        "exported": exported,
        "good": score(tmp, "good", good),
        "one_invalid": score(tmp, "one_invalid", [*good[:-1], "Sorry, I cannot analyze this item."]),
    }


def gate(tmp: Path, candidate: Path, current: Path, *options: str) -> tuple[int, dict]:
    verdict = tmp / f"verdict-{len(list(tmp.glob('verdict-*')))}.json"
    code = main(["gate", "--candidate", str(candidate), "--current", str(current), "--verdict", str(verdict), *options])
    return code, json.loads(verdict.read_text())


def failed(verdict: dict) -> list[str]:
    return [c["name"] for c in verdict["checks"] if not c["passed"]]


def copy(dirs, name: str, new: str) -> Path:
    target = dirs["tmp"] / new
    shutil.copytree(dirs[name], target)
    return target


# ---------------------------------------------------------------- parity: only a verified export is published


def test_the_exported_candidate_is_verified_through_the_manifest_beside_its_adapter(dirs):
    run = json.loads((dirs["exported"] / "run.json").read_text())
    assert run["engine"]["lora_path"] == str(dirs["lora"].resolve())
    code, verdict = gate(dirs["tmp"], dirs["exported"], dirs["good"])
    assert code == 0 and verdict["passed"] and failed(verdict) == []
    assert verdict["parity"]["manifest"] == str(dirs["manifest"]) and verdict["parity"]["verified"] is True
    assert verdict["parity"]["describes_candidate"] is True and verdict["allow_unverified"] is False
    detail = next(c["detail"] for c in verdict["checks"] if c["name"] == "parity_verified")
    assert "parity passed (lora; 2 prompts)" in detail and str(dirs["lora"]) in detail


def test_a_candidate_with_no_export_behind_it_is_refused(dirs):
    code, verdict = gate(dirs["tmp"], dirs["good"], dirs["good"])  # eval score: predictions, no model file
    assert code == 1 and failed(verdict) == ["parity_verified"]
    assert "no GGUF manifest" in verdict["reasons"][0] and "--allow-unverified accepts it" in verdict["reasons"][0]

    code, verdict = gate(dirs["tmp"], dirs["good"], dirs["good"], "--allow-unverified")
    assert code == 0 and verdict["allow_unverified"] is True and verdict["parity"]["verified"] is False


def test_an_adapter_without_a_manifest_beside_it_is_refused(dirs):
    lone = dirs["tmp"] / "lone-lora.gguf"
    shutil.copy(dirs["lora"], lone)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("inference.analyzer.Analyzer", ReferenceAnswers)
        candidate = eval_run(dirs["tmp"] / "lone", lone)
    code, verdict = gate(dirs["tmp"], candidate, dirs["good"])
    assert code == 1 and failed(verdict) == ["parity_verified"]
    assert str(dirs["tmp"] / "lone-lora.manifest.json") in verdict["reasons"][0]


def test_an_export_with_parity_skipped_is_refused_unless_allowed_and_then_recorded(dirs):
    skipped = dirs["tmp"] / "skipped" / "news-lora.gguf"
    skipped.parent.mkdir()
    shutil.copy(dirs["lora"], skipped)  # the same file, exported with --no-parity
    manifest = export_manifest(skipped, parity=None, parity_skipped="--no-parity")
    code, verdict = gate(dirs["tmp"], dirs["exported"], dirs["good"], "--manifest", str(manifest))
    assert code == 1 and failed(verdict) == ["parity_verified"]
    assert "parity was not checked (--no-parity)" in verdict["reasons"][0]
    assert "evaluation" in json.loads(manifest.read_text())["metrics"]  # the refusal is recorded too

    code, verdict = gate(dirs["tmp"], dirs["exported"], dirs["good"], "--manifest", str(manifest), "--allow-unverified")
    assert code == 0 and verdict["allow_unverified"] is True and verdict["parity"]["state"] == "unverified"
    recorded = json.loads(manifest.read_text())["metrics"]["evaluation"]["gate"]
    assert recorded["passed"] is True and recorded["allow_unverified"] is True and recorded["parity_verified"] is False


def test_a_failed_parity_check_is_never_allowed(dirs):
    broken = dirs["tmp"] / "broken" / "news-lora.gguf"
    broken.parent.mkdir()
    shutil.copy(dirs["lora"], broken)
    manifest = export_manifest(broken, parity=parity_report(passed=False))
    for options in ([], ["--allow-unverified"]):
        code, verdict = gate(dirs["tmp"], dirs["exported"], dirs["good"], "--manifest", str(manifest), *options)
        assert code == 1 and failed(verdict) == ["parity_verified"]
        assert "parity FAILED (lora)" in verdict["reasons"][0] and "--allow-unverified" not in verdict["reasons"][0]


def test_a_manifest_of_another_file_does_not_vouch_for_the_candidate(dirs):
    other = dirs["tmp"] / "other" / "news-lora.gguf"
    other.parent.mkdir()
    other.write_bytes(b"another adapter, parity-checked")
    manifest = export_manifest(other)
    code, verdict = gate(dirs["tmp"], dirs["exported"], dirs["good"], "--manifest", str(manifest))
    assert code == 1 and failed(verdict) == ["parity_verified"]
    assert "describes another file" in verdict["reasons"][0] and verdict["parity"]["describes_candidate"] is False
    # A passed manifest cannot be tied to predictions with no model file behind them either.
    code, verdict = gate(dirs["tmp"], dirs["good"], dirs["good"], "--manifest", str(manifest))
    assert code == 1 and "cannot be tied" in verdict["reasons"][0]


def test_an_adapter_changed_after_its_export_is_not_verified(dirs):
    lora = dirs["tmp"] / "changed" / "news-lora.gguf"
    lora.parent.mkdir()
    shutil.copy(dirs["lora"], lora)
    export_manifest(lora)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("inference.analyzer.Analyzer", ReferenceAnswers)
        candidate = eval_run(dirs["tmp"] / "changed-run", lora)
    lora.write_bytes(lora.read_bytes()[::-1])  # same size, other bytes
    code, verdict = gate(dirs["tmp"], candidate, dirs["good"])
    assert code == 1 and "describes another file" in verdict["reasons"][0]


# ---------------------------------------------------------------- numbers: recomputed, never read on trust


def test_a_tampered_validity_in_metrics_json_is_refused(dirs):
    tampered = copy(dirs, "one_invalid", "tampered_validity")
    summary = json.loads((tampered / "metrics.json").read_text())
    summary["study"].update(json_validity=1.0, valid_count=16)
    (tampered / "metrics.json").write_text(json.dumps(summary))
    code, verdict = gate(dirs["tmp"], tampered, dirs["good"], "--allow-unverified")
    assert code == 2 and failed(verdict) == ["candidate_recomputed"]
    reason = verdict["reasons"][0]
    assert "does not match its predictions" in reason and "json_validity 1.0 on disk vs 0.9375 recomputed" in reason


def test_tampered_per_example_scores_are_refused(dirs):
    # A worse model whose per-example scores were overwritten with perfect ones (metrics.json left alone).
    tampered = score(dirs["tmp"], "tampered_rows", [json.dumps(worse(a)) for a in answers()])
    path = tampered / "per_example.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        row.update(f1_overall=1.0, abs_relevance_error=0.0)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, verdict = gate(dirs["tmp"], tampered, dirs["good"], "--allow-unverified")
    assert code == 2 and failed(verdict) == ["candidate_recomputed"]
    assert "per_example.jsonl does not match the predictions: row 1" in verdict["reasons"][0]


def test_predictions_changed_after_scoring_make_a_directory_stale(dirs):
    preds = write_predictions(dirs["tmp"] / "later.jsonl", [json.dumps(a) for a in answers()])
    later = score(dirs["tmp"], "later", [json.dumps(a) for a in answers()])
    assert json.loads((later / "metrics.json").read_text())["system"]["predictions"] == str(preds)
    write_predictions(preds, [*[json.dumps(a) for a in answers()][:-1], "no JSON any more"])
    code, verdict = gate(dirs["tmp"], later, dirs["good"], "--allow-unverified")
    assert code == 2 and "json_validity 1.0 on disk vs 0.9375 recomputed" in verdict["reasons"][0]


def test_predictions_out_of_step_with_the_items_are_refused(dirs):
    swapped = copy(dirs, "exported", "swapped")
    path = swapped / "predictions.jsonl"
    lines = path.read_text().splitlines()
    lines[0], lines[1] = lines[1], lines[0]
    path.write_text("\n".join(lines) + "\n")
    code, verdict = gate(dirs["tmp"], swapped, dirs["good"], "--allow-unverified")
    assert (
        code == 2
        and "predictions.jsonl: line 1 was generated for item 'evalfixture0000_002'" in (verdict["reasons"][0])
    )
    row = json.loads(lines[1])
    assert row["prompt_sha256"] == prompt_hash(load_references(REFERENCES, 1)[0].prompt)


def test_directories_whose_items_differ_are_not_compared(dirs):
    # The same prompts and answers (so the same reference fingerprint), other item ids.
    rows = [json.loads(line) for line in REFERENCES.read_text().splitlines()]
    for row in rows:
        row["metadata"]["item_id"] = row["metadata"]["item_id"].replace("evalfixture", "otherfixture")
    refs = dirs["tmp"] / "renamed_refs.jsonl"
    refs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    preds = write_predictions(dirs["tmp"] / "renamed.jsonl", [json.dumps(a) for a in answers()])
    renamed = dirs["tmp"] / "renamed"
    argv = ["score", "--predictions", str(preds), "--references", str(refs), "--out", str(renamed), "--no-bertscore"]
    assert main(argv) == 0
    old, new = (json.loads((d / "metrics.json").read_text())["references"]["sha256"] for d in (dirs["good"], renamed))
    assert old == new  # what the gate used to compare, and only that
    code, verdict = gate(dirs["tmp"], renamed, dirs["good"], "--allow-unverified")
    assert code == 2 and failed(verdict) == ["same_items"]
    assert (
        "item 1 is 'otherfixture0000_001' in the candidate, 'evalfixture0000_001' in the current"
        in (verdict["reasons"][0])
    )


def test_references_changed_after_scoring_are_refused_and_can_be_named(dirs):
    refs = dirs["tmp"] / "moving_refs.jsonl"
    shutil.copy(REFERENCES, refs)
    preds = write_predictions(dirs["tmp"] / "moving.jsonl", [json.dumps(a) for a in answers()])
    moving = dirs["tmp"] / "moving"
    argv = ["score", "--predictions", str(preds), "--references", str(refs), "--out", str(moving), "--no-bertscore"]
    assert main(argv) == 0
    refs.write_text(REFERENCES.read_text().replace('"relevance_score\\": 9', '"relevance_score\\": 2', 1))
    assert refs.read_text() != REFERENCES.read_text()
    code, verdict = gate(dirs["tmp"], moving, dirs["good"], "--allow-unverified")
    assert code == 2 and f"is stale: the references now at {refs}" in verdict["reasons"][0]
    # The references it was scored on, named from elsewhere: comparable again.
    code, verdict = gate(dirs["tmp"], moving, dirs["good"], "--allow-unverified", "--references", str(REFERENCES))
    assert code == 0 and failed(verdict) == []


def test_a_directory_without_predictions_is_not_taken_on_trust(dirs):
    bare = copy(dirs, "exported", "bare")
    (bare / "predictions.jsonl").unlink()
    code, verdict = gate(dirs["tmp"], dirs["good"], bare, "--allow-unverified")
    assert code == 2 and failed(verdict) == ["current_recomputed"]
    assert "has no predictions" in verdict["reasons"][0]
