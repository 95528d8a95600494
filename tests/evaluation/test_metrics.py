"""Known-answer tests: every metric of docs/metrics.md on small cases computed by hand.

The three-example case below (P = prediction, R = reference):
  0: P rel 7, ki [alpha, delta, echo], cn [xray]     R rel 10, ki [alpha, beta], cn [xray]
  1: P invalid -> rel 0, all empty                   R rel 1, "Sponsored Ad", ki [], cn []
  2: P rel 7, "Sponsored Ad", ki [], cn [yankee]      R rel 7, ki [charlie], cn []
"""

import math

import pytest
from pytest import approx

from evaluation import metrics
from evaluation.parse import empty_record

TOL = 1e-12


def rec(rel, ki=(), cn=(), summary=""):
    return {"relevance_score": rel, "summary": summary, "key_insights": list(ki), "company_names": list(cn)}


PREDS = [
    rec(7, ["alpha", "delta", "echo"], ["xray"]),
    empty_record(),
    rec(7, [], ["yankee"], summary="Sponsored Ad"),
]
REFS = [
    rec(10, ["alpha", "beta"], ["xray"]),
    rec(1, summary="Sponsored Ad"),
    rec(7, ["charlie"], []),
]
VALID = [True, False, True]


# ---------------------------------------------------------------- set scores


def test_both_empty_is_perfect():
    assert metrics.set_scores([], []) == metrics.SetScores(1.0, 1.0, 1.0, 1.0)


@pytest.mark.parametrize("pred, ref", [([], ["a"]), (["a"], [])])
def test_one_empty_is_zero(pred, ref):
    assert metrics.set_scores(pred, ref) == metrics.SetScores(0.0, 0.0, 0.0, 0.0)


def test_duplicates_collapse_to_sets():
    s = metrics.set_scores(["A", "A", "B"], ["A", "C", "C"])
    assert (s.precision, s.recall, s.f1) == (0.5, 0.5, 0.5)
    assert s.jaccard == approx(1 / 3, abs=TOL)


def test_no_overlap_is_zero_f1():
    assert metrics.set_scores(["X"], ["Y"]) == metrics.SetScores(0.0, 0.0, 0.0, 0.0)


def test_exact_strings_no_token_splitting_no_case_folding():
    s = metrics.set_scores(["AI Model", "github repo"], ["AI Model", "GitHub Repo"])
    assert s.precision == 0.5 and s.recall == 0.5


def test_partial_overlap():
    s = metrics.set_scores(["A", "B", "C"], ["A", "B"])
    assert s.precision == approx(2 / 3, abs=TOL)
    assert s.recall == 1.0
    assert s.f1 == approx(0.8, abs=TOL)
    assert s.jaccard == approx(2 / 3, abs=TOL)


# ---------------------------------------------------------------- the study profile on the hand case


@pytest.fixture(scope="module")
def study():
    return metrics.study_metrics(PREDS, REFS, VALID)


def test_per_example_arrays():
    rows = metrics.per_example(PREDS, REFS)
    # example 0: ki P=1/3 R=1/2 F1=0.4 J=1/4; cn perfect.  1: both empty everywhere.  2: one-sided empties.
    assert rows["f1_key_insights"] == approx([0.4, 1.0, 0.0], abs=TOL)
    assert rows["f1_company_names"] == approx([1.0, 1.0, 0.0], abs=TOL)
    assert rows["f1_overall"] == approx([0.7, 1.0, 0.0], abs=TOL)
    assert rows["jaccard_key_insights"] == approx([0.25, 1.0, 0.0], abs=TOL)
    assert rows["abs_relevance_error"] == [3.0, 1.0, 0.0]


def test_validity(study):
    assert study["json_validity"] == approx(2 / 3, abs=TOL)
    assert study["valid_count"] == 2
    assert study["n"] == 3


def test_f1_and_jaccard_aggregates(study):
    assert study["f1_key_insights"] == approx(1.4 / 3, abs=TOL)
    assert study["f1_company_names"] == approx(2 / 3, abs=TOL)
    assert study["f1_overall"] == approx(1.7 / 3, abs=TOL)
    assert study["jaccard_key_insights"] == approx(1.25 / 3, abs=TOL)
    assert study["jaccard_company_names"] == approx(2 / 3, abs=TOL)
    assert study["jaccard_overall"] == approx((1.25 / 3 + 2 / 3) / 2, abs=TOL)


def test_pooled_precision_recall_drops_both_empty_cells(study):
    # Cells: (0,ki) P=1/3 R=1/2; (0,cn) 1,1; (1,*) both empty -> dropped; (2,ki) 0,0; (2,cn) 0,0.
    assert study["precision_recall_cells"] == 4
    assert study["precision_overall"] == approx((1 / 3 + 1) / 4, abs=TOL)
    assert study["recall_overall"] == approx((0.5 + 1) / 4, abs=TOL)


def test_pooled_precision_with_only_both_empty_cells_is_zero_over_zero_cells():
    assert metrics.pooled_precision_recall([rec(1)], [rec(1)]) == (0.0, 0.0, 0)


def test_relevance(study):
    # y = [10, 1, 7], y_hat = [7, 0, 7]: SS_tot = 42, SS_res = 10.
    assert study["relevance_mae"] == approx(4 / 3, abs=TOL)
    assert study["relevance_r2"] == approx(1 - 10 / 42, abs=TOL)
    assert study["relevance_adjusted_r2"] == approx(1 - (10 / 42) * 2 / 1, abs=TOL)


def test_r2_undefined_for_constant_references():
    assert metrics.r2_score([5, 5], [4, 6]) is None
    assert metrics.adjusted_r2(0.5, n=2) is None  # n - k - 1 = 0


def test_rouge_on_joined_lists(study):
    # Pair 0: ref "alpha beta xray" / pred "alpha delta echo xray": R1 P=2/4 R=2/3 F=4/7, R2 = 0, LCS 2 -> 4/7.
    # Pair 1 is dropped (both texts empty); pair 2 "yankee" vs "charlie" scores 0.
    assert study["rouge_pairs"] == 2
    assert study["rouge1"] == approx(2 / 7, abs=TOL)
    assert study["rouge2"] == 0.0
    assert study["rougeL"] == approx(2 / 7, abs=TOL)


def test_rouge_with_no_kept_pairs_is_zero_with_zero_pairs():
    result = metrics.rouge([rec(1), rec(2, ["a"])], [rec(1, ["a"]), rec(2)])
    assert result == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0, "rouge_pairs": 0}


def test_rouge_uses_the_stemmer():
    result = metrics.rouge([rec(1, ["models running"])], [rec(1, ["model runs"])])
    assert result["rouge1"] == 1.0


def test_joined_text_puts_insights_first_and_ignores_the_summary():
    assert metrics.joined_text(rec(1, ["a b", "c"], ["D"], summary="ignored")) == "a b c D"


def test_exact_match():
    assert metrics.exact_match(PREDS, REFS) == 0.0
    same = [rec(9.0, ["a", "b"], ["C"])]
    assert metrics.exact_match(same, [rec(9, ["a", "b"], ["C"])]) == 1.0  # 9.0 == 9
    assert metrics.exact_match(same, [rec(9, ["b", "a"], ["C"])]) == 0.0  # lists compare in order
    assert metrics.exact_match(same, [rec(9, ["a", "b"], ["C"], summary="x")]) == 0.0


def test_response_length_and_words(study):
    # Lengths: 5+5+4+4 = 18, 0, 12 ("Sponsored Ad") + 6 = 18.  Words: 4, 0, 3.
    assert [metrics.response_length(p) for p in PREDS] == [18, 0, 18]
    assert [metrics.response_words(p) for p in PREDS] == [4, 0, 3]
    assert study["avg_length"] == 12.0
    assert study["std_length"] == approx(math.sqrt(72), abs=TOL)  # population std
    assert (study["min_length"], study["max_length"], study["median_length"]) == (0.0, 18.0, 18.0)
    assert study["avg_words"] == approx(7 / 3, abs=TOL)
    assert study["std_words"] == approx(math.sqrt(((4 - 7 / 3) ** 2 + (7 / 3) ** 2 + (3 - 7 / 3) ** 2) / 3), abs=TOL)
    assert (study["min_words"], study["max_words"], study["median_words"]) == (0.0, 4.0, 3.0)


def test_output_consistency_cv(study):
    assert study["output_consistency_cv"] == approx(math.sqrt(72) / 12, abs=TOL)
    assert metrics.coefficient_of_variation([0, 0]) is None
    assert metrics.coefficient_of_variation([]) is None


def test_sponsored_ad_detection(study):
    # Example 2 predicted an ad that is not one (FP); example 1 is an ad the invalid answer missed (FN).
    assert study["sponsored_ad_true_positives"] == 0
    assert study["sponsored_ad_false_positives"] == 1
    assert study["sponsored_ad_true_negatives"] == 1
    assert study["sponsored_ad_false_negatives"] == 1
    assert (study["sponsored_ad_precision"], study["sponsored_ad_recall"], study["sponsored_ad_f1"]) == (0, 0, 0)
    assert study["sponsored_ad_accuracy"] == approx(1 / 3, abs=TOL)


def test_sponsored_ad_detection_all_correct():
    preds = [rec(1, summary="Sponsored Ad"), rec(9)]
    result = metrics.sponsored_detection(preds, preds)
    assert (result["precision"], result["recall"], result["f1"], result["accuracy"]) == (1.0, 1.0, 1.0, 1.0)


def test_study_keys_required_by_the_issue(study):
    required = {
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
    assert required <= set(study)


def test_misaligned_inputs_are_refused():
    with pytest.raises(ValueError, match="align"):
        metrics.study_metrics(PREDS[:2], REFS, VALID[:2])


# ---------------------------------------------------------------- better metrics


def test_f1_on_nonempty_references():
    out = metrics.f1_nonempty_references(PREDS, REFS)
    assert out["f1_key_insights_nonempty_ref"] == approx(0.2, abs=TOL)  # examples 0 and 2: 0.4, 0
    assert out["n_key_insights_nonempty_ref"] == 2
    assert out["f1_company_names_nonempty_ref"] == 1.0  # example 0 only
    assert out["f1_overall_nonempty_ref"] == approx(1.4 / 3, abs=TOL)
    assert out["n_cells_nonempty_ref"] == 3


def test_nonempty_f1_does_not_reward_empty_answers():
    refs = [rec(1), rec(1, ["a"])]
    empty = [rec(1), rec(1)]
    assert metrics.study_metrics(empty, refs, [True, True])["f1_overall"] == 0.75
    assert metrics.f1_nonempty_references(empty, refs)["f1_overall_nonempty_ref"] == 0.0
    assert metrics.f1_nonempty_references(refs[:1], refs[:1])["f1_overall_nonempty_ref"] is None


def test_micro_f1():
    # Tags summed: tp 2 (alpha, xray), predicted 5, reference 4.
    scores = metrics.micro_prf(PREDS, REFS)
    assert scores.precision == approx(2 / 5, abs=TOL)
    assert scores.recall == approx(2 / 4, abs=TOL)
    assert scores.f1 == approx(4 / 9, abs=TOL)
    assert metrics.micro_prf([rec(1)], [rec(1)]) == metrics.SetScores(0.0, 0.0, 0.0, 0.0)


def test_normalized_matching_ignores_case_and_whitespace():
    preds, refs = [rec(5, ["GitHub  repo ", "AI Model"])], [rec(5, ["github Repo", "ai model"])]
    assert metrics.study_metrics(preds, refs, [True])["f1_key_insights"] == 0.0
    better = metrics.better_metrics(preds, refs, [True])
    assert better["normalized"]["f1_key_insights"] == 1.0
    assert better["normalized"]["micro_f1_overall"] == 1.0


def test_better_relevance_metrics_do_not_impute_invalid_answers():
    better = metrics.better_metrics(PREDS, REFS, VALID)
    assert better["relevance_mae_valid_only"] == 1.5  # errors 3 and 0; the invalid answer is left out
    assert better["relevance_within_1"] == approx(2 / 3, abs=TOL)
    assert better["summary_exact"] == approx(1 / 3, abs=TOL)
    assert metrics.better_metrics([empty_record()], [rec(5)], [False])["relevance_mae_valid_only"] is None


# ---------------------------------------------------------------- baselines


def test_all_empty_baseline_with_reference_median():
    base = metrics.baselines(REFS)
    assert base["relevance_constant"] == 7.0  # median of 10, 1, 7
    study = base["all_empty"]["study"]
    assert study["f1_key_insights"] == approx(1 / 3, abs=TOL)  # only example 1 is both-empty
    assert study["f1_company_names"] == approx(2 / 3, abs=TOL)
    assert study["relevance_mae"] == 3.0  # |7-10| + |7-1| + 0
    assert study["json_validity"] == 1.0
    assert base["all_empty"]["better"]["f1_overall_nonempty_ref"] == 0.0


def test_baseline_with_a_given_training_median():
    base = metrics.baselines(REFS, relevance=9)
    assert base["relevance_constant"] == 9.0
    assert base["relevance_constant_source"] == "given"
    assert base["all_empty"]["study"]["relevance_mae"] == approx((1 + 8 + 2) / 3, abs=TOL)
