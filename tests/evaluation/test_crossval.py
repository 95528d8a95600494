"""Cross-validation over emails (evaluation/crossval.py): fold plans, a resumable run, out-of-fold predictions.

No real training: the run gets a tiny random Gemma 3 with the real tokenizer through `CvSetup.load_model`,
and its own GGUF (written from that model) through `CvSetup.base_gguf`, so each fold really trains (two
steps), exports a GGUF LoRA and serves its held-out items through llama.cpp and the serving analyzer.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from data.dataset import Record, load_dataset
from evaluation import cli
from evaluation.crossval import (
    CV_FILE,
    OOF_DIR,
    PLAN_FILE,
    CvError,
    CvSetup,
    assign_folds,
    make_plan,
    read_plan,
    run_cv,
    write_plan,
)
from trainers.config import TrainConfig

FIXTURES = Path(__file__).parents[1] / "fixtures"
EMAIL_SIZES = (3, 2, 2, 1, 1)
"""Items per email of the small fixture: 9 items, 5 emails, dealt into 3 folds of 3 items."""


def write_fixture(path: Path) -> Path:
    """Nine reference items regrouped into five emails (ids `mailN_00M`), in an interleaved order."""
    rows = [json.loads(line) for line in (FIXTURES / "eval_references.jsonl").read_text().splitlines()][:9]
    ids = [f"mail{email}_{item:03d}" for email, size in enumerate(EMAIL_SIZES) for item in range(1, size + 1)]
    order = [0, 3, 5, 1, 7, 2, 4, 8, 6]  # the data order is not grouped by email
    lines = []
    for row_index, id_index in enumerate(order):
        row = rows[row_index]
        row["metadata"]["item_id"] = ids[id_index]
        lines.append(json.dumps(row, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def record(item_id: str) -> Record:
    return Record(line=0, prompt="p", answer="{}", analysis={}, metadata={"item_id": item_id})


# ---------------------------------------------------------------- plans


def test_folds_keep_emails_together_are_balanced_and_deterministic():
    sizes = [14, 13, 12, 12, 11, 10, 6, 4, 3, 3, 2, 2, *[1] * 40]
    records = [record(f"e{e:02d}_{i:03d}") for e, size in enumerate(sizes) for i in range(size)]
    folds = assign_folds(records, 4, seed=0)
    assert folds == assign_folds(list(reversed(records)), 4, seed=0)  # the data order does not matter
    assert set(folds) == {r.email_id for r in records}  # one fold per email: its items stay together
    load = Counter(folds[r.email_id] for r in records)
    assert sorted(load) == [0, 1, 2, 3]
    assert max(load.values()) - min(load.values()) <= 1
    other = assign_folds(records, 4, seed=1)
    assert Counter(other[r.email_id] for r in records) == load or other != folds
    with pytest.raises(CvError, match="at least 2"):
        assign_folds(records, 1)
    with pytest.raises(CvError, match="cannot fill"):
        assign_folds(records[:3], 4)


def test_plan_file_and_cli(tmp_path, capsys):
    data = write_fixture(tmp_path / "data.jsonl")
    assert cli.main(["cv", "plan", "--data", str(data), "--folds", "3", "--seed", "0", "-o", str(tmp_path / "cv")]) == 0
    out = capsys.readouterr().out
    assert "9 items in 5 emails -> 3 folds" in out and "protocol asks for 4" in out
    plan = read_plan(tmp_path / "cv")
    assert plan == make_plan(data, 3, 0)
    assert [f["items"] for f in plan["folds"]] == [3, 3, 3]
    assert sum(f["emails"] for f in plan["folds"]) == 5
    for fold in plan["folds"]:
        members = {item for item, f in plan["item_folds"].items() if f == fold["fold"]}
        assert {item.rsplit("_", 1)[0] for item in members} == set(fold["email_ids"])
    assert list(plan["item_folds"]) == [r.item_id for r in load_dataset(data)]  # data order
    write_plan(data, tmp_path / "cv", 3, 0)  # the same plan again: fine
    with pytest.raises(CvError, match="another plan"):
        write_plan(data, tmp_path / "cv", 2)


# ---------------------------------------------------------------- a run


class Interrupted(Exception):
    """Stands for the process being killed in the middle of a training."""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(base GGUF of the tiny model, the real Gemma tokenizer)."""
    from transformers import AutoTokenizer

    from export.merged_gguf import write_model_gguf
    from inference.models import embedded_base_model
    from tests.export.conftest import tiny_gemma3
    from trainers.base_model import resolve_base_model

    root = tmp_path_factory.mktemp("cv-tiny")
    base = root / "base.gguf"
    write_model_gguf(tiny_gemma3(), base, "f32", tokenizer_gguf=embedded_base_model(), chat_format="gemma")
    return base, AutoTokenizer.from_pretrained(resolve_base_model().path)


def make_setup(tiny, calls: list[int], fail_at_forward: int | None = None) -> CvSetup:
    from tests.export.conftest import tiny_gemma3

    base_gguf, tokenizer = tiny

    def load_model():
        calls.append(1)
        model = tiny_gemma3()
        if fail_at_forward is not None:
            seen = []

            def hook(_module, _inputs):
                seen.append(1)
                if len(seen) >= fail_at_forward:
                    raise Interrupted("killed")

            model.model.register_forward_pre_hook(hook)
        return model, tokenizer

    return CvSetup(
        load_model=load_model,
        base_gguf=base_gguf,
        engine={"n_threads": 1, "max_tokens": 16},
        bertscore=False,
        progress=False,
    )


def tiny_config(**changes) -> TrainConfig:
    return TrainConfig(
        lora_r=4,
        lora_alpha=8,
        learning_rate=1e-2,
        warmup_ratio=0.0,
        lr_scheduler="constant",
        batch_size=2,
        max_steps=2,
        save_steps=1,
        max_length=256,
        num_threads=1,
        precision="fp32",
    ).replace(**changes)


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_a_run_resumes_skips_done_folds_and_assembles_oof_in_data_order(tmp_path, tiny, capsys):
    data = write_fixture(tmp_path / "data.jsonl")
    plan_dir = tmp_path / "cv"
    write_plan(data, plan_dir, 3, 0)
    run_dir = plan_dir / "tiny"
    config = tiny_config()

    # 1. fold 0 is killed after its first step (its checkpoint is on disk)
    calls: list[int] = []
    with pytest.raises(Interrupted):
        run_cv(plan_dir, "tiny", config, folds_only=[0], setup=make_setup(tiny, calls, fail_at_forward=2))
    state = read_json(run_dir / CV_FILE)
    assert state["complete"] is False and state["status"].startswith("INCOMPLETE")
    assert state["folds"][0]["status"] == "training"
    assert state["folds"][0]["training"]["steps_done"] == 1
    assert not (run_dir / OOF_DIR).exists()

    # 2. rerunning fold 0 continues that training; the run stays incomplete, and says so everywhere
    capsys.readouterr()
    state = run_cv(plan_dir, "tiny", config, folds_only=[0], setup=make_setup(tiny, calls))
    assert "resumed from" in capsys.readouterr().err
    steps = [m["step"] for m in map(json.loads, (run_dir / "fold-0" / "metrics.jsonl").read_text().splitlines())]
    assert steps == [1, 2]
    assert state["complete"] is False and state["folds_done"] == [0] and state["folds_pending"] == [1, 2]
    assert read_json(run_dir / CV_FILE)["complete"] is False
    metrics = read_json(run_dir / OOF_DIR / "metrics.json")
    assert metrics["cv"]["complete"] is False and metrics["cv"]["items"] == 3 and metrics["cv"]["of_items"] == 9
    assert "INCOMPLETE" in metrics["system"]["name"]
    assert "INCOMPLETE" in (run_dir / OOF_DIR / "report.md").read_text(encoding="utf-8")
    fold0 = state["folds"][0]
    assert fold0["status"] == "done" and fold0["held_out_items"] == 3 and fold0["train_items"] == 6
    assert fold0["training"]["steps"] == 2 and fold0["training"]["tokens_per_second"] > 0
    assert fold0["training"]["precision"] == "fp32"
    assert set(fold0["scores"]) >= {"f1_overall", "relevance_mae", "json_validity"}
    lora = run_dir / "fold-0" / "adapter.lora.gguf"
    assert lora.is_file() and (run_dir / "fold-0" / "adapter.lora.manifest.json").is_file()
    served = read_json(run_dir / "fold-0" / "eval" / "run.json")["engine"]
    assert served["lora_path"] == str(lora.resolve()) and served["model_path"] == str(tiny[0].resolve())

    # 3. the whole run: fold 0 is skipped (not trained again), folds 1 and 2 run
    adapter_time = (run_dir / "fold-0" / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns
    calls.clear()
    state = run_cv(plan_dir, "tiny", config, setup=make_setup(tiny, calls))
    assert len(calls) == 2
    assert (run_dir / "fold-0" / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns == adapter_time
    assert state["complete"] is True and state["status"] == "complete" and state["folds_done"] == [0, 1, 2]
    assert read_json(run_dir / CV_FILE)["complete"] is True

    # every item exactly once, in the data's order, predicted by the fold that held it out
    plan = read_plan(plan_dir)
    rows = [json.loads(line) for line in (run_dir / OOF_DIR / "predictions.jsonl").read_text().splitlines()]
    assert [r["item_id"] for r in rows] == [r.item_id for r in load_dataset(data)]
    assert [r["fold"] for r in rows] == [plan["item_folds"][r["item_id"]] for r in rows]
    for fold in range(3):  # no fold's adapter saw the items it predicted
        trained_on = {r.item_id for r in load_dataset(run_dir / f"fold-{fold}" / "train.jsonl")}
        assert not trained_on & {r["item_id"] for r in rows if r["fold"] == fold}
    metrics = read_json(run_dir / OOF_DIR / "metrics.json")
    from evaluation.scoring import fingerprint, load_references

    assert metrics["references"]["sha256"] == fingerprint(load_references(data))  # same as `eval run --data`
    assert metrics["cv"]["complete"] is True and "INCOMPLETE" not in metrics["system"]["name"]
    assert metrics["study"]["n"] == 9

    # 4. nothing left to do: a rerun trains nothing and leaves the scored directory as it is
    calls.clear()
    before = (run_dir / OOF_DIR / "metrics.json").stat().st_mtime_ns
    run_cv(plan_dir, "tiny", config, setup=make_setup(tiny, calls))
    assert calls == [] and (run_dir / OOF_DIR / "metrics.json").stat().st_mtime_ns == before

    # 5. another configuration under the same name is refused (threads may change, results may not)
    run_cv(plan_dir, "tiny", config.replace(num_threads=2), setup=make_setup(tiny, calls))
    with pytest.raises(CvError, match="learning_rate"):
        run_cv(plan_dir, "tiny", config.replace(learning_rate=1e-3), setup=make_setup(tiny, calls))

    # 6. the OOF dir is an evaluation directory: `eval compare`, `eval gate` and `cv compare` work on it
    other = plan_dir / "tiny-copy"
    shutil.copytree(run_dir, other)
    cv_file = read_json(other / CV_FILE)
    (other / CV_FILE).write_text(json.dumps({**cv_file, "name": "tiny-copy"}))
    capsys.readouterr()
    assert cli.main(["cv", "compare", str(run_dir), str(other), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "tiny - tiny-copy over 9 out-of-fold predictions" in out
    assert "f1_overall" in out and "per fold" in out and "WARNING" not in out
    summary = read_json(tmp_path / "cmp" / "cv_compare.json")
    assert [row["n"] for row in summary["per_fold"]] == [3, 3, 3]
    assert all(row["f1_diff"] == 0 for row in summary["per_fold"]) and summary["complete"] is True
    assert (tmp_path / "cmp" / "comparison.json").is_file()
    assert cli.main(["compare", str(run_dir / OOF_DIR), str(other / OOF_DIR), "--out", str(tmp_path / "c2")]) == 0
    gate = cli.main(["gate", "--candidate", str(run_dir / OOF_DIR), "--current", str(other / OOF_DIR)])
    assert gate in (0, 1)  # comparable (2 would mean different references); tiny answers may be invalid


def test_a_partial_run_is_flagged_in_cv_compare(tmp_path, tiny, capsys):
    data = write_fixture(tmp_path / "data.jsonl")
    plan_dir = tmp_path / "cv"
    write_plan(data, plan_dir, 3, 0)
    config = tiny_config(max_steps=1)
    run_cv(plan_dir, "a", config, folds_only=[1], setup=make_setup(tiny, []))
    shutil.copytree(plan_dir / "a", plan_dir / "b")
    (plan_dir / "b" / CV_FILE).write_text(json.dumps({**read_json(plan_dir / "a" / CV_FILE), "name": "b"}))
    capsys.readouterr()
    assert cli.main(["cv", "compare", str(plan_dir / "a"), str(plan_dir / "b")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("WARNING: INCOMPLETE") and out.rstrip().splitlines()[-1].startswith("WARNING: INCOMPLETE")
    assert "over 3 out-of-fold predictions" in out
    summary = read_json(plan_dir / "compare-a-vs-b" / "cv_compare.json")
    assert summary["complete"] is False and [row["fold"] for row in summary["per_fold"]] == [1]
    with pytest.raises(CvError, match="--folds-only"):
        run_cv(plan_dir, "a", config, folds_only=[3], setup=make_setup(tiny, []))


def test_plan_is_checked_against_its_data(tmp_path):
    data = write_fixture(tmp_path / "data.jsonl")
    write_plan(data, tmp_path / "cv", 3, 0)
    data.write_text(data.read_text().replace("Acme", "Acne"))
    with pytest.raises(CvError, match="changed since the plan"):
        run_cv(tmp_path / "cv", "x", tiny_config(), setup=CvSetup(base_gguf=tmp_path / "none.gguf"))
    with pytest.raises(CvError, match="not found"):
        read_plan(tmp_path / "nowhere")
    assert (tmp_path / "cv" / PLAN_FILE).is_file()
