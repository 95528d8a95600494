"""k-fold cross-validation over emails: fold plans, resumable per-fold runs, out-of-fold predictions.

The 23-item dev split cannot separate two training configurations (the seed alone moves F1 by 0.05).
Here every item is predicted once by an adapter that never saw its email: the emails are dealt into k
folds (an email's items stay together, folds balanced by item count, the same plan for the same data and
seed), and one configuration is run through all folds. Per fold K, the adapter trains on the other folds,
is exported to a GGUF LoRA (f16) and serves the held-out fold through the serving path
(`evaluation.runner.generate`, grammar-constrained, cached). The out-of-fold (OOF) predictions of all
folds, in the data's order, are scored as one evaluation directory, the same layout `eval run` writes,
so `eval compare` and `eval gate` work on it; `cv compare` adds a per-fold table.

Everything resumes from files: rerunning `cv run` skips finished folds, continues a killed training from
its checkpoint (the trainers' --resume), redoes a torn export and continues a partial prediction file.
Layout (docs/crossval.md):

    PLAN/folds.json                  the plan: data path + sha256, k, seed, fold of every item
    PLAN/NAME/cv.json                config, per-fold figures and scores, complete or not
    PLAN/NAME/fold-K/                train.jsonl, heldout.jsonl, the trainer's output (metrics.jsonl,
                                     checkpoint/, adapter/), adapter.lora.gguf (+ .manifest.json), eval/
    PLAN/NAME/oof/                   predictions.jsonl (all items, data order) + the scored eval dir

Nothing heavy is imported at module level (torch, llama.cpp): `eval --help` stays fast.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data.dataset import Record, file_sha256, load_dataset, write_records
from data.split import email_dates

if TYPE_CHECKING:
    from trainers.config import TrainConfig

PLAN_FILE = "folds.json"
CV_FILE = "cv.json"
OOF_DIR = "oof"
FOLD_DIR = "fold-{}"
TRAIN_FILE = "train.jsonl"
HELDOUT_FILE = "heldout.jsonl"
LORA_FILE = "adapter.lora.gguf"
"""The fold's GGUF LoRA, beside the trainer's adapter/ (its manifest: adapter.lora.manifest.json)."""
EVAL_DIR = "eval"
"""The fold's prediction cache (runner.generate): predictions.jsonl + run.json."""
LOCK_FILE = ".lock"
OOF_MARKER = "cv_oof.json"
"""Written into oof/ after its eval dir is complete: which folds and predictions it was scored from."""

MIN_FOLDS = 2
RECOMMENDED_FOLDS = 4
FOLD_SCORE_KEYS = (
    "n",
    "json_validity",
    "f1_overall",
    "f1_key_insights",
    "f1_company_names",
    "relevance_mae",
    "relevance_r2",
    "rougeL",
)
"""The study metrics recorded per fold in cv.json (the OOF eval dir has all of them)."""

NON_IDENTITY_KEYS = frozenset({"output_dir", "data", "dev_data", "num_threads", "log_steps", "save_steps"})
"""Config keys that do not change what a fold trains: they may differ when a run is continued."""

TRAIN_FIGURES = (
    "steps",
    "tokens",
    "train_seconds",
    "tokens_per_second",
    "seconds_per_step",
    "first_train_loss",
    "final_train_loss",
)


class CvError(ValueError):
    """A plan or run that cannot be used as asked (the message says why and what to do)."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the plan


def assign_folds(records: Sequence[Record], k: int, seed: int = 0) -> dict[str, int]:
    """Email id -> fold, every email's items in one fold, folds balanced by item count.

    Largest emails first (ties in an order fixed by `seed`), each to the fold with the fewest items
    (then fewest emails, then lowest index): deterministic, and within one email's size of balance.
    """
    if k < MIN_FOLDS:
        raise CvError(f"--folds must be at least {MIN_FOLDS} (got {k}); {RECOMMENDED_FOLDS} or more is the protocol")
    sizes = Counter(r.email_id for r in records)
    if len(sizes) < k:
        raise CvError(f"{len(sizes)} emails cannot fill {k} folds (an email's items stay in one fold)")
    emails = sorted(sizes)
    random.Random(seed).shuffle(emails)
    emails.sort(key=lambda email: -sizes[email])  # stable: the seeded order breaks ties
    items, n_emails = [0] * k, [0] * k
    assignment: dict[str, int] = {}
    for email in emails:
        fold = min(range(k), key=lambda i: (items[i], n_emails[i], i))
        assignment[email] = fold
        items[fold] += sizes[email]
        n_emails[fold] += 1
    return assignment


def make_plan(data: str | Path, k: int = RECOMMENDED_FOLDS, seed: int = 0) -> dict[str, Any]:
    """The plan for `data` (a news_train.jsonl): fold of every item, per-fold counts, data fingerprint."""
    records = load_dataset(data)
    assignment = assign_folds(records, k, seed)
    try:
        dates = email_dates(records)
    except ValueError:
        dates = {}
    folds = []
    for fold in range(k):
        members = [r for r in records if assignment[r.email_id] == fold]
        emails = sorted({r.email_id for r in members})
        fold_dates = sorted(dates[e] for e in emails if e in dates)
        folds.append(
            {
                "fold": fold,
                "items": len(members),
                "emails": len(emails),
                "sponsored": sum(bool(r.metadata.get("is_sponsored")) for r in members),
                "first_date": fold_dates[0].isoformat() if fold_dates else None,
                "last_date": fold_dates[-1].isoformat() if fold_dates else None,
                "email_ids": emails,
            }
        )
    return {
        "version": 1,
        "data": {
            "path": str(Path(data).resolve()),
            "sha256": file_sha256(data),
            "items": len(records),
            "emails": len(assignment),
        },
        "folds_k": k,
        "seed": seed,
        "method": "emails kept whole; largest first (seeded ties) to the fold with the fewest items",
        "folds": folds,
        "item_folds": {r.item_id: assignment[r.email_id] for r in records},
    }


def write_plan(data: str | Path, out_dir: str | Path, k: int = RECOMMENDED_FOLDS, seed: int = 0) -> dict[str, Any]:
    """Write out_dir/folds.json; an existing different plan is refused (runs under it would be orphaned)."""
    plan = make_plan(data, k, seed)
    path = Path(out_dir) / PLAN_FILE
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old.get("item_folds") != plan["item_folds"] or old.get("data", {}).get("sha256") != plan["data"]["sha256"]:
            raise CvError(
                f"{path} already holds another plan (other data, folds or seed); its runs would no longer match: "
                "choose another -o directory"
            )
    _write_json_atomic(path, plan)
    return plan


def read_plan(plan_dir: str | Path) -> dict[str, Any]:
    path = Path(plan_dir) / PLAN_FILE
    if not path.is_file():
        raise CvError(f"{path} not found: write the plan first (news-enhancer eval cv plan --data FILE -o {plan_dir})")
    return json.loads(path.read_text(encoding="utf-8"))


def plan_records(plan: dict[str, Any]) -> list[Record]:
    """The plan's data, checked against the fingerprint it was planned on."""
    data = plan["data"]["path"]
    if not Path(data).is_file():
        raise CvError(f"the plan's data {data} is missing")
    if file_sha256(data) != plan["data"]["sha256"]:
        raise CvError(f"{data} changed since the plan was made (sha256 differs): make a new plan in another directory")
    records = load_dataset(data)
    missing = [r.item_id for r in records if r.item_id not in plan["item_folds"]]
    if missing or len(records) != len(plan["item_folds"]):
        raise CvError(f"the plan does not cover the data ({len(missing)} items without a fold)")
    return records


# ---------------------------------------------------------------- running one configuration


@dataclass
class CvSetup:
    """What the protocol runs on, injectable for tests (tiny model, its GGUF, a short answer budget)."""

    load_model: Callable[[], tuple[Any, Any]] | None = None
    """A fresh (model, tokenizer) for each fold's training; None: the trainer loads config.base_model."""
    base_gguf: str | Path | None = None
    """The GGUF the fold adapters are exported for and served on; None: from config.base_model (the
    embedded Gemma 3 270M Q4_K_M by default, the one `serve` runs)."""
    engine: dict[str, Any] = field(default_factory=dict)
    """Extra `EngineConfig` fields for the out-of-fold generation (n_threads, max_tokens, ...)."""
    lora_dtype: str = "f16"
    bertscore: bool = True
    bertscore_model: str | None = None
    progress: bool = True


def resolve_base_gguf(config: TrainConfig, setup: CvSetup) -> Path:
    if setup.base_gguf is not None:
        return Path(setup.base_gguf)
    from inference.models import EMBEDDED, embedded_base_model

    if config.base_model == EMBEDDED:
        return embedded_base_model()
    if config.base_model.endswith(".gguf") and Path(config.base_model).is_file():
        return Path(config.base_model).resolve()
    raise CvError(
        f"base_model {config.base_model!r} is not a GGUF: out-of-fold predictions are served by llama.cpp, "
        "which needs the base as a .gguf file"
    )


def config_identity(config: TrainConfig) -> dict[str, Any]:
    """The config keys that decide what a fold trains (threads, logging and paths left out)."""
    return {k: v for k, v in config.to_dict().items() if k not in NON_IDENTITY_KEYS}


def fold_dir(run_dir: Path, fold: int) -> Path:
    return run_dir / FOLD_DIR.format(fold)


def fold_records(records: Sequence[Record], plan: dict[str, Any], fold: int) -> tuple[list[Record], list[Record]]:
    """(training items, held-out items) of one fold, both in data order."""
    folds = plan["item_folds"]
    return [r for r in records if folds[r.item_id] != fold], [r for r in records if folds[r.item_id] == fold]


def _references(records: Sequence[Record]):
    from evaluation.scoring import reference

    return [reference(r) for r in records]


def fold_status(directory: Path, held_out: int) -> str:
    """pending | training (a checkpoint, not finished) | trained | exported | done (all predictions)."""
    from evaluation.runner import PREDICTIONS, read_predictions

    if len(read_predictions(directory / EVAL_DIR / PREDICTIONS)) >= held_out and (directory / LORA_FILE).is_file():
        return "done"
    if (directory / LORA_FILE).is_file() and _lora_manifest(directory).is_file():
        return "exported"
    if (directory / "adapter" / "manifest.json").is_file():
        return "trained"
    if (directory / "checkpoint").is_dir():
        return "training"
    return "pending"


def _lora_manifest(directory: Path) -> Path:
    from export.manifest import manifest_path_for

    return manifest_path_for(directory / LORA_FILE)


def train_fold(config: TrainConfig, directory: Path, train: list[Record], setup: CvSetup, label: str) -> dict[str, Any]:
    """Train (or continue training) one fold's adapter in `directory`; returns the manifest's figures."""
    from trainers import hf_backend
    from trainers.base_model import BaseModelInfo

    resume = (directory / "checkpoint").is_dir()
    fold_config = config.replace(output_dir=str(directory), data=str(directory / TRAIN_FILE), dev_data=None)
    model = tokenizer = info = None
    if setup.load_model is not None:
        model, tokenizer = setup.load_model()
        info = BaseModelInfo(spec=config.base_model, path="(injected model)")
    log(f"{label}: {'resuming the training from its checkpoint' if resume else 'training'} on {len(train)} items")
    result = hf_backend.train(fold_config, train, [], model=model, tokenizer=tokenizer, base_info=info, resume=resume)
    del model, tokenizer
    gc.collect()
    return result.metrics


def export_fold(directory: Path, base_gguf: Path, dtype: str, chat_format: str) -> Path:
    """adapter/ -> adapter.lora.gguf (+ manifest); written under a temporary name, so a kill leaves no torn file."""
    from export.lora_gguf import export_lora_gguf
    from export.manifest import gguf_manifest, write_manifest

    started = time.monotonic()
    final = directory / LORA_FILE
    partial = directory / (LORA_FILE + ".partial")
    export_lora_gguf(directory / "adapter", base_gguf, partial, dtype=dtype)
    partial.replace(final)
    manifest = gguf_manifest(
        final,
        mode="lora",
        base_gguf=base_gguf,
        adapter_dir=directory / "adapter",
        quantization=dtype,
        config={"chat_format": chat_format, "parity_k": None, "cross_validation": True},
        export_seconds=time.monotonic() - started,
    )
    write_manifest(manifest, final)
    return final


FOLD_RELEVANCE_RULE = "median"
"""The adapter's own distribution: a fold is never scored by a head that saw its items."""


def predict_fold(
    directory: Path, held_out: list[Record], base_gguf: Path, config: TrainConfig, setup: CvSetup
) -> tuple[list[str], Any]:
    """Held-out predictions through the serving analyzer (cached in fold-K/eval/, resumable)."""
    from evaluation import runner
    from inference.analyzer import Analyzer
    from inference.engine import EngineConfig

    engine_config = EngineConfig(
        **{
            "model_path": str(base_gguf),
            "lora_path": str(directory / LORA_FILE),
            "chat_format": config.chat_format,
            "relevance_rule": FOLD_RELEVANCE_RULE,
            **setup.engine,
        }
    )
    if engine_config.relevance_rule in ("auto", "head"):
        raise CvError(
            "eval cv run scores the adapter's own relevance: the shipped relevance head was fitted on every "
            "item, held-out ones included (cross-validate the head with `eval cv head`)"
        )
    analyzer = Analyzer(engine_config)
    try:
        return runner.generate(_references(held_out), directory / EVAL_DIR, engine_config, analyzer, setup.progress)
    finally:
        analyzer.engine.close()


def _prediction_rows(directory: Path) -> list[dict[str, Any]]:
    from evaluation.runner import PREDICTIONS, read_predictions

    return read_predictions(directory / EVAL_DIR / PREDICTIONS)


def fold_figures(directory: Path, fold: int, train: list[Record], held_out: list[Record], name: str) -> dict:
    """What cv.json says about one fold, read from its files (the files are the truth, not the last log)."""
    from evaluation.scoring import score_rows

    status = fold_status(directory, len(held_out))
    figures: dict[str, Any] = {
        "fold": fold,
        "status": status,
        "dir": str(directory),
        "train_items": len(train),
        "held_out_items": len(held_out),
        "held_out_emails": len({r.email_id for r in held_out}),
    }
    manifest_path = directory / "adapter" / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        metrics = manifest.get("metrics", {})
        figures["training"] = {k: metrics.get(k) for k in TRAIN_FIGURES}
        figures["training"]["precision"] = (manifest.get("extra", {}).get("precision") or {}).get("chosen")
    elif (directory / "checkpoint" / "state.json").is_file():
        state = json.loads((directory / "checkpoint" / "state.json").read_text(encoding="utf-8"))
        figures["training"] = {"steps_done": state.get("global_step"), "train_seconds": state.get("train_seconds")}
    rows = _prediction_rows(directory)
    if rows:
        figures["generation"] = {
            "predictions": min(len(rows), len(held_out)),
            "seconds": round(sum(float(r.get("seconds") or 0) for r in rows), 1),
            "failed": sum("error" in r for r in rows),
            "cut_at_max_tokens": sum(r.get("finish_reason") == "length" for r in rows),
        }
    if status == "done":
        scores = score_rows(f"{name} fold {fold}", rows[: len(held_out)], _references(held_out))
        figures["scores"] = {k: scores.study.get(k) for k in FOLD_SCORE_KEYS}
    return figures


class RunLock:
    """One `cv run` per run directory at a time (a second background launch would corrupt the files)."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK_FILE

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file():
            try:
                pid = int(self.path.read_text().strip() or 0)
            except ValueError:
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                raise CvError(f"{self.path.parent} is being run by process {pid}; wait for it or stop it first")
        self.path.write_text(str(os.getpid()))
        return self

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_cv(
    plan_dir: str | Path,
    name: str,
    config: TrainConfig,
    *,
    folds_only: Sequence[int] | None = None,
    setup: CvSetup | None = None,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run `config` through the plan's folds (or `folds_only`), then assemble and score the OOF dir.

    Returns (and writes) cv.json. `source` records how the config was given (file, overrides, command).
    """
    setup = setup or CvSetup()
    plan_dir = Path(plan_dir)
    if not name or "/" in name or name in (OOF_DIR, ".", ".."):
        raise CvError(f"--name {name!r} must be a plain directory name")
    plan = read_plan(plan_dir)
    records = plan_records(plan)
    k = plan["folds_k"]
    wanted = sorted(set(range(k) if folds_only is None else folds_only))
    bad = [f for f in wanted if not 0 <= f < k]
    if bad:
        raise CvError(f"--folds-only {bad}: the plan has folds 0..{k - 1}")
    run_dir = plan_dir / name
    base_gguf = resolve_base_gguf(config, setup)
    with RunLock(run_dir):
        state = _start_state(run_dir, plan_dir, plan, name, config, source)
        state["folds"] = _read_folds(run_dir, plan, records, name)
        _write_json_atomic(run_dir / CV_FILE, _finish_state(state))
        started = time.monotonic()
        try:
            _run_folds(state, run_dir, plan, records, wanted, config, setup, base_gguf)
        except BaseException as exc:  # killed (SIGTERM, Ctrl-C) or failed: cv.json says where the files are
            state["folds"] = _read_folds(run_dir, plan, records, name)
            state["interrupted"] = f"{type(exc).__name__}: {exc}"
            _write_json_atomic(run_dir / CV_FILE, _finish_state(state))
            raise
        state["folds"] = _read_folds(run_dir, plan, records, name)  # the files are the truth
        state["session_seconds"] = round(time.monotonic() - started, 1)
        state = _finish_state(state)
        state["oof"] = assemble_oof(run_dir, name, plan, records, state, setup)
        _write_json_atomic(run_dir / CV_FILE, state)
    return state


def _run_folds(
    state: dict[str, Any],
    run_dir: Path,
    plan: dict[str, Any],
    records: Sequence[Record],
    wanted: Sequence[int],
    config: TrainConfig,
    setup: CvSetup,
    base_gguf: Path,
) -> None:
    """Train, export and predict each wanted fold that is not done, updating cv.json after each phase."""
    name, k = state["name"], plan["folds_k"]
    spent: list[float] = []
    for position, fold in enumerate(wanted):
        directory = fold_dir(run_dir, fold)
        train, held_out = fold_records(records, plan, fold)
        label = f"cv {name}: fold {fold} ({position + 1}/{len(wanted)} this session, {k} in all)"
        status = fold_status(directory, len(held_out))
        if status == "done":
            log(f"{label}: already done, skipped")
            continue
        log(f"{label}: {len(train)} training items, {len(held_out)} held-out items; {_eta(state, wanted, spent)}")
        fold_started = time.monotonic()
        directory.mkdir(parents=True, exist_ok=True)
        write_records(train, directory / TRAIN_FILE)
        write_records(held_out, directory / HELDOUT_FILE)
        if status in ("pending", "training"):
            state["folds"][fold] = {**state["folds"][fold], "status": "training"}
            _write_json_atomic(run_dir / CV_FILE, _finish_state(state))
            train_fold(config, directory, train, setup, label)
        if fold_status(directory, len(held_out)) == "trained" or not (directory / LORA_FILE).is_file():
            log(f"{label}: exporting the adapter to a GGUF LoRA ({setup.lora_dtype})")
            export_fold(directory, base_gguf, setup.lora_dtype, config.chat_format)
        log(f"{label}: out-of-fold predictions for {len(held_out)} items through the serving analyzer")
        predict_fold(directory, held_out, base_gguf, config, setup)
        state["folds"][fold] = fold_figures(directory, fold, train, held_out, name)
        _write_json_atomic(run_dir / CV_FILE, _finish_state(state))
        spent.append(time.monotonic() - fold_started)
        scores = state["folds"][fold].get("scores", {})
        log(
            f"{label}: done in {spent[-1] / 60:.1f} min: F1 {scores.get('f1_overall', 0):.3f}, "
            f"MAE {scores.get('relevance_mae', 0):.2f}, validity {100 * scores.get('json_validity', 0):.0f}%"
        )


def _read_folds(run_dir: Path, plan: dict, records: Sequence[Record], name: str) -> list[dict[str, Any]]:
    return [
        fold_figures(fold_dir(run_dir, fold), fold, *fold_records(records, plan, fold), name)
        for fold in range(plan["folds_k"])
    ]


def _start_state(
    run_dir: Path, plan_dir: Path, plan: dict, name: str, config: TrainConfig, source: dict | None
) -> dict[str, Any]:
    """cv.json at the start of a session; a run under another config or plan is refused."""
    identity = config_identity(config)
    plan_sha = file_sha256(plan_dir / PLAN_FILE)
    path = run_dir / CV_FILE
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old.get("plan", {}).get("sha256") != plan_sha:
            raise CvError(f"{run_dir} was run under another plan: choose another --name")
        from trainers.config import TrainConfig

        # a key added to TrainConfig after the run started was its default then
        old_identity = config_identity(TrainConfig()) | old.get("config_identity", {})
        changed = sorted(key for key in set(identity) | set(old_identity) if identity.get(key) != old_identity.get(key))
        if changed:
            shown = ", ".join(f"{key} {old_identity.get(key)!r} -> {identity.get(key)!r}" for key in changed)
            raise CvError(f"{run_dir} holds a run of another configuration ({shown}): choose another --name")
    elif any(run_dir.glob("fold-*")):
        raise CvError(f"{run_dir} holds fold directories but no {CV_FILE}: choose another --name")
    k = plan["folds_k"]
    previous_oof = old.get("oof") if path.is_file() else None
    return {
        "version": 1,
        "name": name,
        "plan": {"dir": str(plan_dir.resolve()), "sha256": plan_sha, "folds_k": k, "seed": plan["seed"]},
        "data": plan["data"],
        "config": config.to_dict(),
        "config_identity": identity,
        "source": source or {},
        "folds": [{"fold": f, "status": "pending"} for f in range(k)],
        "oof": previous_oof,
    }


def _finish_state(state: dict[str, Any]) -> dict[str, Any]:
    """Derive the completeness fields from the fold statuses (every report reads them from here)."""
    folds = state["folds"]
    done = [f["fold"] for f in folds if f.get("status") == "done"]
    state["folds_done"] = done
    state["folds_pending"] = [f["fold"] for f in folds if f.get("status") != "done"]
    state["complete"] = len(done) == len(folds)
    state["status"] = "complete" if state["complete"] else f"INCOMPLETE: {len(done)} of {len(folds)} folds done"
    trained = [f["training"] for f in folds if isinstance(f.get("training"), dict) and "steps" in f["training"]]
    state["training_seconds_total"] = round(sum(t.get("train_seconds") or 0 for t in trained), 1)
    state["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return state


def _eta(state: dict[str, Any], wanted: Sequence[int], spent: Sequence[float]) -> str:
    """Time left for the wanted folds not done yet, from the folds finished so far (this session's wall
    times, else the recorded training + generation seconds of folds done earlier)."""
    todo = sum(1 for f in state["folds"] if f["fold"] in wanted and f.get("status") != "done")
    earlier = [
        (f.get("training") or {}).get("train_seconds", 0) + (f.get("generation") or {}).get("seconds", 0)
        for f in state["folds"]
        if f.get("status") == "done"
    ]
    times, source = (spent, "this session's folds") if spent else (earlier, "earlier folds' training + generation")
    if not times or not todo:
        return f"{todo} fold(s) to run; ETA after the first fold (the trainer prints its own per step)"
    per_fold = sum(times) / len(times)
    return f"ETA {todo * per_fold / 60:.0f} min for {todo} fold(s) ({per_fold / 60:.1f} min per fold, from {source})"


# ---------------------------------------------------------------- out-of-fold predictions


def assemble_oof(
    run_dir: Path, name: str, plan: dict, records: Sequence[Record], state: dict, setup: CvSetup
) -> dict[str, Any] | None:
    """Write run_dir/oof/: the done folds' predictions in data order, scored like `eval run` scores.

    With every fold done it covers every item exactly once; otherwise only the done folds' items, and
    the system name, metrics.json and reports say INCOMPLETE.
    """
    from evaluation.artifacts import write_eval_dir
    from evaluation.runner import PREDICTIONS
    from evaluation.scoring import fingerprint, score_rows

    done = set(state["folds_done"])
    if not done:
        return None
    by_fold = {f: {r["item_id"]: r for r in _prediction_rows(fold_dir(run_dir, f))} for f in done}
    kept = [r for r in records if plan["item_folds"][r.item_id] in done]
    rows = []
    for index, record in enumerate(kept):
        fold = plan["item_folds"][record.item_id]
        row = by_fold[fold].get(record.item_id)
        if row is None:
            raise CvError(f"fold {fold} has no prediction for {record.item_id}: delete {fold_dir(run_dir, fold)}/eval")
        rows.append({**row, "index": index, "fold": fold, "fold_index": row.get("index")})
    out = run_dir / OOF_DIR
    out.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    cv_block = {
        "complete": state["complete"],
        "status": state["status"],
        "folds_done": sorted(done),
        "folds_k": plan["folds_k"],
        "items": len(rows),
        "of_items": len(records),
        "predictions_sha256": digest,
        "bertscore": setup.bertscore,
    }
    metrics_path, marker = out / "metrics.json", out / OOF_MARKER
    if marker.is_file() and metrics_path.is_file() and json.loads(marker.read_text(encoding="utf-8")) == cv_block:
        log(f"cv {name}: {out} is up to date")
        return {"dir": str(out), **cv_block, "study": _brief_study(metrics_path)}
    marker.unlink(missing_ok=True)
    (out / PREDICTIONS).write_text(text, encoding="utf-8")
    refs = _references(kept)
    system_name = name if state["complete"] else f"{name} [INCOMPLETE: {len(done)}/{plan['folds_k']} folds]"
    log(f"cv {name}: scoring {len(rows)} out-of-fold predictions ({state['status']}) -> {out}")
    scores = score_rows(system_name, rows, refs, setup.bertscore, setup.bertscore_model)
    trained = [f.get("training") or {} for f in state["folds"] if f["fold"] in done]
    write_eval_dir(
        out,
        scores,
        {"path": plan["data"]["path"], "n": len(refs), "sha256": fingerprint(refs)},
        bertscore=setup.bertscore,
        bertscore_model=setup.bertscore_model,
        draw_plots=state["complete"],  # a part of the folds is not drawn as if it were the whole
        extra={
            "system": {
                "cross_validation": f"{plan['folds_k']}-fold over emails, out-of-fold predictions",
                "cv_status": state["status"],
                "run": str(run_dir),
                "fold_loras": f"{run_dir}/fold-K/{LORA_FILE} (one adapter per fold; none is a shipped export)",
            },
            "run": {
                "folds_done": ",".join(str(f) for f in sorted(done)),
                "generation_seconds": sum(float(r.get("seconds") or 0) for r in rows),
                "training_seconds": sum(t.get("train_seconds") or 0 for t in trained),
                "failed": sum("error" in r for r in rows),
                "cut_at_max_tokens": sum(r.get("finish_reason") == "length" for r in rows),
            },
            "cv": cv_block,
        },
    )
    _write_json_atomic(marker, cv_block)  # last: the directory is whole
    return {"dir": str(out), **cv_block, "study": _brief_study(metrics_path)}


def _brief_study(metrics_path: Path) -> dict[str, Any]:
    summary = json.loads(metrics_path.read_text(encoding="utf-8"))
    return {k: summary["study"].get(k) for k in FOLD_SCORE_KEYS}


# ---------------------------------------------------------------- comparing two configurations


def read_run(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / CV_FILE
    if not path.is_file():
        raise CvError(f"{path} not found: is {run_dir} a `cv run` directory (PLAN/NAME)?")
    return json.loads(path.read_text(encoding="utf-8"))


def item_folds(oof_dir: Path) -> dict[str, int]:
    from evaluation.runner import PREDICTIONS, read_predictions

    return {r["item_id"]: int(r["fold"]) for r in read_predictions(oof_dir / PREDICTIONS)}


def compare_runs(
    dir_a: str | Path, dir_b: str | Path, out: str | Path | None = None, names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Paired statistics over the OOF predictions of two runs (evaluation.artifacts.write_comparison, the
    code `eval compare` runs), plus a per-fold table of the per-example means. Writes OUT/cv_compare.json."""
    from evaluation.artifacts import write_comparison
    from evaluation.scoring import load_eval_dir

    dir_a, dir_b = Path(dir_a), Path(dir_b)
    runs = [read_run(dir_a), read_run(dir_b)]
    oof = [dir_a / OOF_DIR, dir_b / OOF_DIR]
    for run, directory in zip(runs, oof, strict=True):
        if run.get("oof") is None or not (directory / "metrics.json").is_file():
            raise CvError(f"{directory.parent} has no out-of-fold predictions yet (no fold done)")
    names = list(names) if names else [run["name"] for run in runs]
    if names[0] == names[1]:
        names = [f"{names[0]} ({dir_a.parent.name})", f"{names[1]} ({dir_b.parent.name})"]
    names = [n if run["complete"] else f"{n} [INCOMPLETE]" for n, run in zip(names, runs, strict=True)]
    out = Path(out) if out else dir_a.parent / f"compare-{dir_a.name}-vs-{dir_b.name}"
    result = write_comparison(oof, out, names)

    folds_a, folds_b = item_folds(oof[0]), item_folds(oof[1])
    scores = [load_eval_dir(d)[0] for d in oof]
    table = []
    for fold in sorted(set(folds_a.values())):
        idx = [i for i, item in enumerate(scores[0].item_ids) if folds_a.get(item) == fold]
        row: dict[str, Any] = {"fold": fold, "n": len(idx)}
        for metric, key in (("f1_overall", "f1"), ("abs_relevance_error", "mae")):
            a = [scores[0].per_example[metric][i] for i in idx]
            b = [scores[1].per_example[metric][i] for i in idx]
            row[f"{key}_a"], row[f"{key}_b"] = _mean(a), _mean(b)
            row[f"{key}_diff"] = row[f"{key}_a"] - row[f"{key}_b"]
        row["valid_a"] = sum(scores[0].valid[i] for i in idx)
        row["valid_b"] = sum(scores[1].valid[i] for i in idx)
        table.append(row)
    complete = all(run["complete"] for run in runs)
    described = [
        {"name": n, "dir": str(d), "complete": r["complete"], "status": r["status"], "config": r.get("config_identity")}
        for n, d, r in zip(names, (dir_a, dir_b), runs, strict=True)
    ]
    status = "complete" if complete else "INCOMPLETE: " + "; ".join(f"{r['name']}: {r['status']}" for r in described)
    summary = {
        "complete": complete,
        "status": status,
        "runs": described,
        "same_folds": folds_a == folds_b,
        "per_fold": table,
        "statistics": result["comparisons"][0]["statistics"],
        "out": str(out),
    }
    _write_json_atomic(out / "cv_compare.json", summary)
    return summary


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


# ---------------------------------------------------------------- files


def _write_json_atomic(path: Path, obj: Any) -> None:
    from evaluation.scoring import clean_json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(clean_json(obj), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def steps_per_fold(config: TrainConfig, plan: dict[str, Any]) -> list[int]:
    """Optimizer steps each fold's training takes (for estimates before a run)."""
    from trainers.loop import count_steps

    sizes = Counter(plan["item_folds"].values())
    total = sum(sizes.values())
    return [count_steps(config, total - sizes.get(f, 0)).total for f in range(plan["folds_k"])]
