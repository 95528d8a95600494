"""The relevance head: fitting, the head file, the protocol's pieces, and how serving uses it.

Fast tests fit heads on synthetic embeddings and wire the analyzer to the fake engine; the slow ones
embed with the real Gemma, run `eval cv head` end to end on a fixture, and serve its head.
"""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from data.dataset import load_dataset
from data.prompts import parse_prompt, render_prompt
from evaluation.relevance_cv import email_bootstrap, log_loss, median_scores, out_of_fold, select
from inference.analyzer import Analyzer, Item
from inference.engine import EngineConfig
from inference.relevance import serving_rule
from inference.relevance_head import HeadError, HeadInput, HeadScorer, ai_terms, head_text, load_head
from tests.conftest import FIXTURES, TEST_CONFIG
from tests.fakes import FakeEngine
from trainers.relevance_head import HeadConfig, fit_head, fit_softmax, soft_targets

SAMPLE = FIXTURES / "relevance_sample.jsonl"


def _blobs(n_per_class=30, dim=8, seed=0):
    """Three well-separated classes (scores 1, 5, 10) in `dim` dimensions."""
    rng = np.random.default_rng(seed)
    centers = {1: -3.0, 5: 0.0, 10: 3.0}
    x = np.vstack([rng.normal(c, 1.0, (n_per_class, dim)) for c in centers.values()])
    y = np.repeat(list(centers), n_per_class)
    return x, y


def _head(x, y, sponsored=None, **kw):
    s = np.zeros(len(y)) if sponsored is None else sponsored
    return fit_head(x, s, y, HeadConfig(**kw), base_model={"name": "synthetic", "size": 0, "sha256": "0"})


def test_fit_softmax_separates_classes_and_reaches_the_optimum():
    x, y = _blobs()
    w, b = fit_softmax(x, soft_targets(y, [1, 5, 10], 0.0), C=1.0)
    predicted = np.array([1, 5, 10])[np.argmax(x @ w.T + b, axis=1)]
    assert (predicted == y).mean() > 0.95
    # at the optimum the gradient of C * CE + |W|^2 / 2 vanishes: W = C * sum (onehot - p) x
    logits = x @ w.T + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = (y[:, None] == np.array([1, 5, 10])).astype(float)
    assert np.abs(w - (onehot - p).T @ x).max() < 1e-3


def test_smoothing_spreads_a_target_to_neighbouring_scores_and_keeps_its_mode():
    targets = soft_targets(np.array([5.0, 10.0]), [1, 4, 5, 6, 10], 1.0)
    assert np.allclose(targets.sum(axis=1), 1.0)
    assert targets[0].argmax() == 2 and targets[0][1] == pytest.approx(targets[0][3])
    assert targets[0][1] > targets[0][0]
    assert targets[1].argmax() == 4 and targets[1][3] > 0
    assert np.array_equal(soft_targets(np.array([4.0]), [1, 4, 10], 0.0), [[0.0, 1.0, 0.0]])
    x, y = _blobs()
    smooth = _head(x, y, C=1.0, smoothing=1.0).probabilities(x, np.zeros(len(y)))
    sharp = _head(x, y, C=1.0).probabilities(x, np.zeros(len(y)))
    assert smooth.max(axis=1).mean() < sharp.max(axis=1).mean()  # less sure: mass on the neighbours
    assert (smooth.argmax(axis=1) == sharp.argmax(axis=1)).mean() > 0.95


def test_the_head_gives_distributions_over_all_ten_scores():
    x, y = _blobs()
    p = _head(x, y, C=1.0).probabilities(x, np.zeros(len(y)))
    assert p.shape == (len(y), 10)
    assert np.allclose(p.sum(axis=1), 1.0)
    assert np.all(p[:, [1, 2, 3, 5, 6, 7, 8]] == 0)  # scores nobody annotated get no mass
    assert (median_scores(p) == y).mean() > 0.95


def test_the_sponsored_feature_moves_ads_down():
    x, y = _blobs()
    sponsored = (y == 1) & (np.arange(len(y)) % 2 == 0)
    x[sponsored] = np.random.default_rng(1).normal(3.0, 1.0, x[sponsored].shape)  # ads that read like news
    head = _head(x, y, sponsored.astype(float), C=1.0, sponsor_scale=30.0)
    ad = head.probabilities(x[sponsored], np.ones(sponsored.sum()))
    same_text_not_ad = head.probabilities(x[sponsored], np.zeros(sponsored.sum()))
    assert median_scores(ad).mean() < 3 < median_scores(same_text_not_ad).mean()


def test_a_head_file_round_trips(tmp_path):
    x, y = _blobs()
    head = _head(x, y, C=0.1)
    head.save(tmp_path / "head.json")
    again = load_head(tmp_path / "head.json")
    assert again.classes == [1, 5, 10] and again.fitted["C"] == 0.1
    assert np.allclose(again.probabilities(x, np.zeros(len(y))), head.probabilities(x, np.zeros(len(y))), atol=1e-5)


@pytest.mark.parametrize(
    "text, message",
    [
        ("not json", "cannot read"),
        ('{"format": "something else", "version": 1}', "not a relevance head"),
        ("SHAPES", "inconsistent shapes"),
    ],
)
def test_broken_head_files_are_clear_errors(tmp_path, text, message):
    path = tmp_path / "head.json"
    if text == "SHAPES":
        x, y = _blobs()
        _head(x, y).save(path)
        raw = json.loads(path.read_text())
        raw["weights"] = raw["weights"][:-1]
        text = json.dumps(raw)
    path.write_text(text)
    with pytest.raises(HeadError, match=message):
        load_head(path)


def test_no_head_applies_to_another_model(tmp_path):
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF" + b"\0" * 100)
    x, y = _blobs()
    _head(x, y).save(tmp_path / "head.json")
    auto = EngineConfig(model_path=str(other), relevance_head=str(tmp_path / "head.json"))
    assert serving_rule(auto) == ("median", None)
    with pytest.raises(HeadError, match="fitted on synthetic"):
        serving_rule(
            EngineConfig(model_path=str(other), relevance_head=str(tmp_path / "head.json"), relevance_rule="head")
        )
    with pytest.raises(HeadError, match="cannot read"):
        serving_rule(EngineConfig(relevance_head=str(tmp_path / "missing.json")))
    assert serving_rule(EngineConfig(relevance_rule="greedy")) == ("greedy", None)


def test_the_head_reads_the_whole_item_not_the_next_sections_heading():
    records = load_dataset(SAMPLE)
    first = records[0]
    assert first.full_content.endswith("review comments.")  # "# **Next Section**" dropped
    assert first.content != first.full_content  # the prompt shows the first sentence only
    assert parse_prompt(first.prompt) == (first.title, first.content)
    assert parse_prompt(render_prompt("T", "C")) == ("T", "C")
    assert parse_prompt("any other text") is None
    assert records[3].is_sponsored


def test_selection_and_out_of_fold_use_the_training_folds_only():
    e, y = _blobs(n_per_class=16)
    x = (e, np.zeros(len(y)))  # (embeddings, keywords)
    folds = np.tile(np.arange(4), len(y) // 4)
    (c, scale, _), table = select(x, np.zeros(len(y)), y, folds, grid=((0.01, 10.0, 0.0), (1.0, 10.0, 0.0)))
    assert len(table) == 2 and c in (0.01, 1.0)
    assert (c, scale) == min(((r["C"], r["sponsor_scale"]) for r in table), key=lambda k: _loss(table, k))
    assert all(r["log_loss"] > 0 and r["mae"] >= 0 for r in table)  # chosen by log loss, MAE kept beside it
    p, chosen = out_of_fold(x, np.zeros(len(y)), y, folds, grid=((1.0, 10.0, 0.0),))
    assert [c["fold"] for c in chosen] == [0, 1, 2, 3]
    assert (median_scores(p) == y).mean() > 0.9
    # fold 0's own labels never reach its predictions (they do reach the other folds')
    y2 = y.copy()
    y2[folds == 0] = 1
    p2, _ = out_of_fold(x, np.zeros(len(y)), y2, folds, grid=((1.0, 10.0, 0.0),))
    assert np.allclose(p2[folds == 0], p[folds == 0])
    assert not np.allclose(p2[folds != 0], p[folds != 0])


def test_the_keyword_feature_is_chosen_where_it_carries_what_the_embedding_does_not():
    rng = np.random.default_rng(0)
    y = np.repeat([1, 10], 40)
    e = rng.normal(0, 1, (80, 6))  # embeddings that say nothing about the score
    k = np.where(y == 10, np.log1p(3), 0.0)  # AI words in the relevant items only
    folds = np.tile(np.arange(4), 20)
    point, table = select((e, k), np.zeros(80), y, folds, grid=((0.1, 10.0, 0.0), (0.1, 10.0, 3.0)))
    assert point[2] == 3.0 and table[1]["mae"] < table[0]["mae"]
    head = fit_head(e, np.zeros(80), y, HeadConfig(C=0.1, keyword_scale=3.0), {}, keywords=k)
    assert (median_scores(head.probabilities(e, np.zeros(80), k)) == y).mean() > 0.9
    with pytest.raises(ValueError, match="pass keywords"):
        head.probabilities(e, np.zeros(80))


def test_ai_terms_counts_whole_words_of_ai_news():
    assert ai_terms("Transparent bamboo replaces glass") == 0.0
    assert ai_terms("OpenAI ships a new AI model") == pytest.approx(np.log(4))  # openai, ai, model
    assert ai_terms("Said: maintain the rail") == 0.0  # "ai" inside words does not count


def test_a_head_file_from_before_the_keyword_feature_still_loads(tmp_path):
    x, y = _blobs()
    head = _head(x, y, C=0.1)
    raw = head.to_json()
    raw.pop("keyword_scale")
    raw["weights"] = [row[:-1] for row in raw["weights"]]  # dim + 1 columns, as such files have
    (tmp_path / "old.json").write_text(json.dumps(raw))
    old = load_head(tmp_path / "old.json")
    assert old.keyword_scale == 0.0 and old.weights.shape == head.weights.shape
    assert np.allclose(old.probabilities(x, np.zeros(len(y))), head.probabilities(x, np.zeros(len(y))), atol=1e-5)


def _loss(table, key):
    return next(r["log_loss"] for r in table if (r["C"], r["sponsor_scale"]) == key)


def test_log_loss_is_minus_log_p_of_the_annotated_score():
    p = np.full((2, 10), 0.05)
    p[0, 6], p[1, 0] = 0.55, 0.55
    assert log_loss(p, np.array([7.0, 3.0])) == pytest.approx([-np.log(0.55), -np.log(0.05)])
    assert log_loss(np.zeros((1, 10)), np.array([5.0]))[0] == pytest.approx(-np.log(1e-9))  # floored


def test_email_bootstrap_resamples_emails():
    a = np.array([0.0, 0.0, 1.0, 1.0, 2.0, 2.0])
    b = np.zeros(6)
    result = email_bootstrap(a, b, ["e1", "e1", "e2", "e2", "e3", "e3"])
    assert result["emails"] == 3 and result["mean"] == 1.0
    assert result["ci_low"] >= 0.0 and result["ci_high"] <= 2.0 and result["ci_low"] < 1.0 < result["ci_high"]


class _RecordingEmbedder:
    """Embeds by word counts of a tiny vocabulary (synthetic, for the wiring test) and records texts."""

    vocab = ("model", "ai", "sponsor", "oven")

    def __init__(self):
        self.texts = []

    def embed(self, texts):
        self.texts += texts
        return np.array([[t.lower().count(w) for w in self.vocab] for t in texts], dtype=float)


def test_the_analyzer_writes_and_reports_the_heads_score():
    x = np.array([[3, 2, 0, 0], [2, 3, 0, 0], [0, 0, 0, 3], [0, 0, 0, 2], [0, 1, 2, 0], [1, 0, 3, 0]], float)
    y = np.array([10, 10, 1, 1, 1, 1])
    head = _head(x, y, C=10.0)
    embedder = _RecordingEmbedder()
    engine = FakeEngine()
    analyzer = Analyzer(engine=engine, head=HeadScorer(head, embedder))
    items = [
        Item("New AI model beats the benchmark", "The model is an AI model. It reads code. The model is open."),
        Item("A second oven", "The oven bakes bread. The oven is hot."),
    ]
    results = analyzer.analyze_items(items)
    assert [r["relevance_score"] for r in results] == [10, 1]
    for r in results:
        assert r["relevance"]["rule"] == "head"
        assert r["relevance"]["confidence"] == pytest.approx(r["relevance"]["probabilities"][r["relevance_score"] - 1])
    assert embedder.texts[0] == head_text("**New AI model beats the benchmark**", items[0].content)
    assert "The model is open." in embedder.texts[0]  # the whole text, though the prompt shows one sentence
    # one item alone scores as it does in a batch
    alone = analyzer.complete(render_prompt("t", "c"), HeadInput("**A second oven**", items[1].content))
    assert alone.analysis["relevance_score"] == 1


def test_an_engine_passed_in_gets_no_head_unless_given_one():
    analyzer = Analyzer(engine=FakeEngine())
    assert analyzer.head is None and analyzer.rule == "median"
    result = analyzer.analyze_items([Item("A title", "Some text.")])[0]
    assert result["relevance"] is None


# ------------------------------------------------------------------------------- real model


@pytest.mark.slow
def test_the_engine_writes_a_chosen_score():
    from inference.analyzer import article_engine

    engine = article_engine(EngineConfig(**TEST_CONFIG), "greedy")
    try:
        prompt = render_prompt("**Acme ships a model **", "Acme released an open model.")
        texts = [g.text for g in engine.generate([prompt] * 3, choices=["7", "10", "1"], max_tokens=24)]
        assert texts[0].startswith('{\n  "relevance_score": 7,')
        assert texts[1].startswith('{\n  "relevance_score": 10,')
        # "1" is also the first token of "10": the next token may not extend it (the model would write 10 here)
        assert texts[2].startswith('{\n  "relevance_score": 1,')
        with pytest.raises(ValueError, match="not one of"):
            engine.generate([prompt], choices=["11"])
    finally:
        engine.close()


@pytest.mark.slow
def test_the_shipped_head_serves_by_default_and_ignores_the_batch(analyzer):
    assert analyzer.rule == "head"
    prompts = [
        render_prompt("**Mistral releases a 3B vision model **", "Mistral released Pixtral Edge for phones."),
        render_prompt("**Try ZapNotes today (Sponsor)**", "Sign up and get three months free."),
        render_prompt("**City council votes on bike lanes **", "The council approved new bike lanes."),
    ]
    together = analyzer.complete_many(prompts, head_inputs=[HeadInput(*parse_prompt(p)) for p in prompts])
    alone = [analyzer.complete(p) for p in prompts]
    for a, b in zip(together, alone, strict=True):
        assert a.raw == b.raw and a.relevance == b.relevance and a.relevance["rule"] == "head"
        written = int(re.search(r'"relevance_score": (\d+)', a.raw).group(1))  # raw may be cut at max_tokens
        assert written == a.analysis["relevance_score"] == median_scores(np.array([a.relevance["probabilities"]]))[0]
    news, ad, other = (c.relevance["expected"] for c in together)
    assert ad < news and ad < 4  # "(Sponsor)" in the title marks it as an ad


@pytest.mark.slow
def test_cv_head_end_to_end_and_its_head_is_served(tmp_path):
    plan = tmp_path / "plan"
    run = [sys.executable, "-m", "news_enhancer.cli", "eval", "cv"]
    subprocess.run([*run, "plan", "--data", str(SAMPLE), "--folds", "4", "-o", str(plan)], check=True)
    head_file = tmp_path / "head.json"
    done = subprocess.run(
        [*run, "head", "--plan", str(plan), "--threads", "1", "--save-head", str(head_file), "--save-fold-heads"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((plan / "head" / "head_cv.json").read_text())
    assert summary["items"] == 16 and summary["folds"] == 4 and len(summary["chosen"]) == 4
    oof = [json.loads(line) for line in (plan / "head" / "oof.jsonl").read_text().splitlines()]
    assert len(oof) == 16 and all(abs(sum(r["probabilities"]) - 1) < 1e-3 for r in oof)
    assert (plan / "head" / "relevance.png").stat().st_size > 1000
    assert "Relevance head" in done.stdout
    head = load_head(head_file)
    from inference.models import embedded_base_model

    assert head.base_model["size"] == embedded_base_model().stat().st_size
    assert head.fitted["cross_validation"]["head"]["n"] == 16
    folds = json.loads((plan / "folds.json").read_text())["item_folds"]
    for k in range(4):  # fold K's head never saw fold K's items, and serves the same base model
        fold_head = load_head(plan / "head" / f"fold-{k}.head.json")
        assert fold_head.fitted["fold"] == k and fold_head.base_model == head.base_model
        assert sorted(fold_head.fitted["item_ids"]) == sorted(i for i, f in folds.items() if f != k)
    analyzer = Analyzer(EngineConfig(**TEST_CONFIG, relevance_head=str(head_file)))
    try:
        assert analyzer.rule == "head"
        ad = analyzer.analyze_item(
            "Try ZapNotes, the notebook for teams (Sponsor)", "Sign up today.", is_sponsored=True
        )
        news = analyzer.analyze_item("Orbit Labs releases an open AI model", "The language model is open source.")
        assert ad["relevance"]["rule"] == news["relevance"]["rule"] == "head"
        assert ad["relevance"]["expected"] < news["relevance"]["expected"]
    finally:
        analyzer.engine.close()
        analyzer.head.embedder.close()


def test_an_embedder_failure_reaches_the_caller(tmp_path):
    """The llama.cpp calls run on a thread of their own; what fails there is raised here."""
    from inference.relevance_head import Embedder

    with pytest.raises(ValueError):
        Embedder(tmp_path / "missing.gguf", n_threads=1).embed(["Title: x\nContent: y"])


@pytest.mark.slow
def test_the_embedder_is_deterministic_and_one_text_per_call():
    from inference.models import embedded_base_model
    from inference.relevance_head import Embedder

    embedder = Embedder(embedded_base_model(), n_threads=1)
    try:
        texts = [head_text("**Acme ships a model **", "An open model."), head_text("**Bikes **", "New lanes.")]
        together, alone = embedder.embed(texts), embedder.embed(texts[1:])
        assert together.shape == (2, 640) and np.array_equal(together[1], alone[0])
        assert not np.allclose(together[0], together[1])
    finally:
        embedder.close()


@pytest.mark.slow
def test_embeddings_without_the_output_layer_match_llama_cpps_pooled_ones():
    """inference.embedding stops the graph after the final norm; what it pools is llama.cpp's own
    mean-pooled embedding (Llama(embedding=True), what the head was fitted on) up to rounding."""
    import llama_cpp

    from inference.embedding import PooledEmbedder
    from inference.models import embedded_base_model

    texts = [head_text("**Acme ships a model **", "An open model for code review."), "", "word " * 1500]
    reference = llama_cpp.Llama(
        model_path=str(embedded_base_model()),
        embedding=True,
        pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
        n_ctx=1024,
        n_batch=1024,
        n_ubatch=1024,
        n_threads=1,
        verbose=False,
    )
    fast = PooledEmbedder(embedded_base_model(), n_threads=1)
    try:
        for text in texts:
            ours = fast.embed(text)
            assert fast._rows is not None  # the graph was stopped at the norm, not pooled by llama.cpp
            np.testing.assert_allclose(ours, reference.embed(text, truncate=True), atol=1e-4, rtol=0)
    finally:
        fast.close()
        reference.close()
