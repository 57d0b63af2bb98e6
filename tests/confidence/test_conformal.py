"""APS prediction sets: hand cases and coverage on synthetic logits."""

import math
import warnings

import numpy as np
import pytest

from meterlib.confidence import calibration, conformal, mondrian

ALPHA = 0.1


def test_aps_score_is_the_mass_ranked_above_the_true_class():
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.1, 0.2, 0.7]])
    np.testing.assert_allclose(conformal.aps_scores(probs, [1, 2, 0]), [0.5, 0.0, 0.9])
    u_half = conformal.aps_scores(probs[:1], [1], u=0.5)
    np.testing.assert_allclose(u_half, [0.5 + 0.5 * 0.3])


def test_sets_hold_classes_within_the_quantile_and_never_are_empty():
    probs = np.array([[0.5, 0.3, 0.2], [0.9, 0.06, 0.04], [1.0, 0.0, 0.0]])
    sets = conformal.aps_prediction_sets(probs, 0.5)
    assert sets.tolist() == [[True, True, False], [True, False, False], [True, False, False]]
    assert conformal.aps_prediction_sets(probs, 0.0).sum(axis=1).tolist() == [1, 1, 1]
    assert conformal.mean_set_size(sets) == pytest.approx(4 / 3)
    assert conformal.empirical_coverage(sets, [1, 1, 0]) == pytest.approx(2 / 3)


def test_an_accurate_enough_model_answers_with_single_classes():
    probs = np.array([[0.8, 0.15, 0.05]] * 19 + [[0.6, 0.4, 0.0]])
    labels = [0] * 19 + [1]  # 95% right: the 90% quantile of the scores is 0
    qhat = conformal.calibrate_aps(probs, labels, alpha=ALPHA)
    assert qhat == 0.0
    assert conformal.aps_prediction_sets(probs, qhat).sum(axis=1).max() == 1


def test_quantile_uses_the_finite_sample_rank():
    scores = np.arange(1, 21) / 20  # 20 scores: rank ceil(21 * .9) = 19; naively ceil(20 * .9) = 18
    assert conformal.conformal_quantile(scores[::-1], alpha=ALPHA) == 0.95


def test_the_fewest_scores_that_certify_the_coverage_give_their_largest():
    # 1 - alpha = .9 needs rank ceil((n + 1) * .9) <= n: n >= 9.
    assert conformal.conformal_quantile(np.arange(1, 10) / 10, alpha=ALPHA) == 0.9
    with pytest.warns(calibration.CalibrationWarning, match="8 calibration images cannot certify 90% "
                                                            r"coverage \(need at least 9\)"):
        assert conformal.conformal_quantile(np.arange(1, 9) / 10, alpha=ALPHA) == math.inf
    with pytest.raises(ValueError, match=r"alpha must lie in \(0, 1\)"):
        conformal.conformal_quantile([0.5], alpha=0.0)


def test_too_few_calibration_images_put_every_class_in_the_set():
    probs = np.array([[0.7, 0.2, 0.1]] * 5)
    with pytest.warns(calibration.CalibrationWarning, match="5 calibration images"):
        qhat = conformal.calibrate_aps(probs, [0] * 5, alpha=ALPHA)
    assert qhat == math.inf
    assert conformal.aps_prediction_sets(probs, qhat).all()


def _synthetic(rng, n, k=10):
    # A somewhat overconfident model: labels drawn from softmax(z), reported logits 1.5 * z.
    z = rng.normal(scale=1.5, size=(n, k))
    labels = (calibration.softmax(z).cumsum(axis=1) > rng.uniform(size=(n, 1))).argmax(axis=1)
    return calibration.softmax(1.5 * z), labels


def _sampling_error(n_cal, n_test):
    # One standard deviation of empirical coverage: calibration quantile noise plus test binomial noise.
    return math.sqrt(ALPHA * (1 - ALPHA) * (1 / n_cal + 1 / n_test))


def test_deterministic_aps_covers_at_least_the_target():
    rng = np.random.default_rng(5)
    n_cal, n_test = 20_000, 50_000
    cal_probs, cal_labels = _synthetic(rng, n_cal)
    test_probs, test_labels = _synthetic(rng, n_test)
    sets = conformal.aps_prediction_sets(test_probs, conformal.calibrate_aps(cal_probs, cal_labels, alpha=ALPHA))
    assert conformal.empirical_coverage(sets, test_labels) > 1 - ALPHA - 4 * _sampling_error(n_cal, n_test)
    assert sets.sum(axis=1).min() >= 1


def _confident(rng, n, k=10, signal=4.0):
    # A model right on about 98% of photos, most of them with high confidence.
    labels = rng.integers(0, k, n)
    z = rng.normal(size=(n, k))
    z[np.arange(n), labels] += signal
    return calibration.softmax(z), labels


def test_u_half_makes_the_sets_of_an_accurate_model_adapt_to_its_doubt():
    rng = np.random.default_rng(11)
    cal_probs, cal_labels = _confident(rng, 3000)
    test_probs, test_labels = _confident(rng, 3000)
    assert conformal.calibrate_aps(cal_probs, cal_labels, alpha=ALPHA) == 0.0  # u = 0: single classes only
    qhat = conformal.calibrate_aps(cal_probs, cal_labels, alpha=ALPHA, u=conformal.INFORMATIVE_U)
    assert 0.3 < qhat < 0.5
    sets = conformal.aps_prediction_sets(test_probs, qhat, u=conformal.INFORMATIVE_U)
    sizes = sets.sum(axis=1)
    assert sizes.min() == 1 and (sizes > 1).mean() > 0.02
    confidence = test_probs.max(axis=1)
    assert confidence[sizes > 1].max() < confidence[sizes == 1].mean()  # doubtful photos get more classes
    assert conformal.empirical_coverage(sets, test_labels) >= 1 - ALPHA


def test_deterministic_sets_keep_the_top_class_even_above_the_quantile():
    probs = np.array([[0.98, 0.01, 0.01], [0.5, 0.4, 0.1]])
    # u = .5: the confident photo's top class scores .49, above qhat = .3, yet stays in its set.
    sets = conformal.aps_prediction_sets(probs, 0.3, u=0.5)
    assert sets.tolist() == [[True, False, False], [True, False, False]]
    assert conformal.aps_prediction_sets(probs, 0.8, u=0.5).tolist() == [[True, False, False],
                                                                        [True, True, False]]
    with pytest.raises(ValueError, match=r"u must lie in \[0, 1\]"):
        conformal.aps_scores(probs, [0, 1], u=1.5)


def test_per_class_thresholds():
    probs = np.array([[0.5, 0.3, 0.2]])  # u = 0 scores: .0, .5, .8
    sets = conformal.aps_prediction_sets(probs, np.array([0.0, 0.4, 0.9]))
    assert sets.tolist() == [[True, False, True]]


def test_finite_sample_rank_differs_from_the_naive_one():
    scores = np.arange(1, 11) / 10  # 10 scores, alpha .2: rank ceil(11 * .8) = 9, naively ceil(8) = 8
    assert conformal.conformal_quantile(scores, alpha=0.2) == pytest.approx(0.9)


def test_a_confident_quantile_takes_the_rank_whose_coverage_holds_with_that_probability():
    scores = np.arange(1, 101) / 100
    # P(Binomial(100, .9) >= k) <= .1 first at k = 95 (.058; k = 94: .128); <= .05 at k = 96.
    assert conformal.conformal_quantile(scores[::-1], alpha=ALPHA, confidence=0.9) == 0.95
    assert conformal.conformal_quantile(scores, alpha=ALPHA, confidence=0.95) == 0.96
    assert conformal.conformal_quantile(scores, alpha=ALPHA) == 0.91  # on average only: rank 91
    # Fewest scores: .9 ** n <= .1 needs n >= 22, and then only the largest score certifies.
    assert conformal.conformal_quantile(np.arange(1, 23) / 22, alpha=ALPHA, confidence=0.9) == 1.0
    # Fewer keep the average rank (ceil(22 * .9) = 20 of 21), with a warning; fewer than 9 give inf.
    with pytest.warns(calibration.CalibrationWarning) as caught:
        assert conformal.conformal_quantile(np.arange(1, 22) / 21, alpha=ALPHA, confidence=0.9) == 20 / 21
    assert [str(w.message) for w in caught] == [
        "21 calibration images cannot certify 90% coverage with 90% confidence (need at least 22); "
        "their threshold keeps it on average only"]
    with pytest.warns(calibration.CalibrationWarning, match=r"^8 calibration images cannot certify 90% "
                                                            r"coverage \(need at least 9\); every class"):
        assert conformal.conformal_quantile(np.arange(1, 9) / 8, alpha=ALPHA, confidence=0.9) == math.inf
    for wrong in (0.0, 1.0):
        with pytest.raises(ValueError, match=rf"confidence must lie in \(0, 1\) or be None, got {wrong}"):
            conformal.conformal_quantile(scores, alpha=ALPHA, confidence=wrong)


def test_a_confidence_met_exactly_certifies_and_the_first_rank_counts():
    # One score at alpha .5: rank 1 misses 50% coverage with probability .5 exactly, which confidence .5 allows.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert conformal.conformal_quantile([0.3], alpha=0.5, confidence=0.5) == 0.3


def test_a_confident_quantile_under_covers_on_few_calibration_draws():
    # Uniform scores: a threshold q covers a new photo with probability q itself, so each draw's
    # coverage is its quantile. On average-only quantiles about half the draws of 100 photos fall
    # short of 90%; with 90% confidence at most a tenth do (exactly 5.8%: the rank is 95).
    rng = np.random.default_rng(0)
    draws = rng.uniform(size=(4000, 100))
    short = {confidence: np.mean([conformal.conformal_quantile(d, alpha=ALPHA, confidence=confidence) < 0.9
                                  for d in draws]) for confidence in (None, 0.9)}
    assert 0.35 < short[None] < 0.6
    assert 0.04 < short[0.9] < 0.08


# Mondrian sets: one quantile per class-size group.
GROUPS = np.array(["large", "small", "medium"], dtype=object)


def _hand_calibration():
    """Class 0 (large): 10 right photos; class 1 (small): 4 wrong ones; class 2 (medium): 3 photos."""
    top = np.arange(10) * 0.05 + 0.5  # u = .5 scores .25, .275, ..., .475
    large = np.c_[top, (1 - top) / 2, (1 - top) / 2]
    q = np.array([0.5, 0.6, 0.7, 0.8])  # class 1 second: scores q + .5 (.95 - q) = .725 ... .875
    small = np.c_[q, 0.95 - q, np.full(4, 0.05)]
    medium = np.tile([0.1, 0.1, 0.8], (3, 1))
    return np.r_[large, small, medium], np.r_[[0] * 10, [1] * 4, [2] * 3]


def test_mondrian_quantiles_use_each_groups_finite_sample_rank():
    probs, labels = _hand_calibration()
    with pytest.warns(calibration.CalibrationWarning, match="3 calibration photos of 'medium' classes"):
        quantiles = mondrian.calibrate_mondrian(probs, labels, GROUPS, alpha=0.2)
    assert list(quantiles) == ["small", "medium", "large"]
    # large: rank ceil(11 * .8) = 9 of 10 (naively 8: .425); small: rank ceil(5 * .8) = 4 of 4.
    assert quantiles["large"] == pytest.approx(0.45)
    assert quantiles["small"] == pytest.approx(0.875)
    assert quantiles["medium"] == math.inf  # 3 < (1 - .2) / .2 photos: its class joins every set
    sets = mondrian.mondrian_prediction_sets(np.array([[0.5, 0.4, 0.1], [0.96, 0.03, 0.01]]), quantiles, GROUPS)
    # Photo 1 scores .25 / .7 / .95: all within their groups' quantiles. Photo 2: class 0 scores .48 > .45
    # but is the top class, class 1 scores .975 > .875.
    assert sets.tolist() == [[True, True, True], [True, False, True]]
    np.testing.assert_allclose(mondrian.class_thresholds(quantiles, GROUPS), [0.45, 0.875, math.inf])


def test_mondrian_quantiles_pass_the_confidence_to_each_group():
    top = 0.5 + np.arange(100) * 0.004  # 100 right photos of class 0: u = .5 scores top / 2, all distinct
    probs = np.c_[top, (1 - top) / 2, (1 - top) / 2]
    quantiles = mondrian.calibrate_mondrian(probs, np.zeros(100, dtype=int), ["large"] * 3, alpha=ALPHA,
                                            confidence=0.9)
    # Rank 95 of 100 (the average-only rank is 91): the 6th largest score.
    assert quantiles == {"large": pytest.approx(np.sort(top / 2)[94])}


def test_size_groups_follow_the_split_rule_thresholds():
    groups = mondrian.size_groups([0, 27, 28, 49, 50, 400])
    assert groups.tolist() == ["small", "small", "medium", "medium", "large", "large"]
    assert mondrian.size_groups([19, 20, 60], small_below=20, large_from=60).tolist() == ["small", "medium", "large"]
    with pytest.raises(ValueError, match="small_below <= large_from"):
        mondrian.size_groups([5], small_below=50, large_from=20)
    with pytest.raises(ValueError, match="one group per class"):
        mondrian.calibrate_mondrian(np.eye(3), [0, 1, 2], ["small", "large"], alpha=0.1)
    with pytest.raises(ValueError, match="no quantile for group"):
        mondrian.class_thresholds({"small": 0.5}, ["small", "large"])


def test_coverage_by_group_counts_photos_by_their_true_class():
    sets = np.array([[True, False, False], [True, True, False], [False, False, True], [True, False, False]])
    table = mondrian.coverage_by_group(sets, [0, 1, 2, 1], GROUPS)
    assert table.index.tolist() == ["small", "medium", "large", "all"]
    assert table["photos"].tolist() == [2, 1, 1, 4]
    assert table["coverage"].tolist() == [0.5, 1.0, 1.0, 0.75]
    assert table["mean_set_size"].tolist() == [1.5, 1.0, 1.0, 1.25]
    empty = mondrian.coverage_by_group(sets[:1], [0], GROUPS)
    assert empty.loc["small", "photos"] == 0 and math.isnan(empty.loc["small", "coverage"])


def _two_sized(rng, n, k_large=15, k_small=5):
    # A fifth of the photos are of the five small classes, where the model is much less sure.
    small = rng.uniform(size=n) < 0.2
    labels = np.where(small, rng.integers(k_large, k_large + k_small, n), rng.integers(0, k_large, n))
    z = rng.normal(size=(n, k_large + k_small))
    z[np.arange(n), labels] += np.where(small, 1.5, 4.0)
    return calibration.softmax(z), labels


def test_mondrian_sets_cover_the_hard_group_where_marginal_sets_do_not():
    rng = np.random.default_rng(0)
    cal_probs, cal_labels = _two_sized(rng, 10_000)
    test_probs, test_labels = _two_sized(rng, 10_000)
    groups = mondrian.size_groups([300] * 15 + [10] * 5)
    qhat = conformal.calibrate_aps(cal_probs, cal_labels, alpha=ALPHA, u=conformal.INFORMATIVE_U)
    marginal = mondrian.coverage_by_group(
        conformal.aps_prediction_sets(test_probs, qhat, u=conformal.INFORMATIVE_U), test_labels, groups)
    quantiles = mondrian.calibrate_mondrian(cal_probs, cal_labels, groups, alpha=ALPHA)
    by_group = mondrian.coverage_by_group(mondrian.mondrian_prediction_sets(test_probs, quantiles, groups),
                                          test_labels, groups)
    # About 2,000 small-class photos each side: one standard deviation of coverage is about .01.
    assert marginal.loc["all", "coverage"] >= 1 - ALPHA - 0.01
    assert marginal.loc["small", "coverage"] < 1 - ALPHA - 0.1
    assert by_group.loc["small", "coverage"] >= 1 - ALPHA - 0.03
    assert by_group.loc["large", "coverage"] >= 1 - ALPHA - 0.03
    assert quantiles["small"] > quantiles["large"] and (by_group["mean_set_size"] < 6).all()


def test_tied_classes_rank_in_class_order():
    # Scores of tied classes must not depend on the sort algorithm: the earlier class ranks above.
    rng = np.random.default_rng(0)
    probs = rng.integers(1, 5, size=(5, 300)).astype(float)
    probs /= probs.sum(axis=1, keepdims=True)
    classes = np.arange(300)
    for row in probs:
        expected = [row[row > p].sum() + row[(row == p) & (classes < j)].sum() for j, p in enumerate(row)]
        np.testing.assert_allclose(conformal.aps_scores(np.tile(row, (300, 1)), classes), expected)


def test_u_one_counts_the_true_class_in_full_and_u_outside_0_1_is_refused():
    probs = np.array([[0.5, 0.3, 0.2]])
    np.testing.assert_allclose(conformal.aps_scores(probs, [1], u=1.0), [0.8])
    with pytest.raises(ValueError, match=r"u must lie in \[0, 1\], got -0.1"):
        conformal.aps_prediction_sets(probs, 0.5, u=-0.1)
    with pytest.raises(ValueError, match=r"expected probabilities of shape \(n, classes\), got \(3,\)"):
        conformal.aps_prediction_sets(probs[0], 0.5)


def test_the_warning_names_the_scores():
    with pytest.warns(calibration.CalibrationWarning) as caught:
        conformal.conformal_quantile([0.1, 0.2], alpha=ALPHA, what="photos of 'small' classes")
    assert str(caught[0].message) == ("2 photos of 'small' classes cannot certify 90% coverage (need at "
                                      "least 9); every class they stand for goes into every prediction set")
    with pytest.raises(ValueError, match=r"alpha must lie in \(0, 1\), got 1"):
        conformal.conformal_quantile([0.1, 0.2], alpha=1)


def test_the_quantile_warnings_are_at_the_callers_line():
    with pytest.warns(calibration.CalibrationWarning) as caught:
        conformal.conformal_quantile([0.1], alpha=ALPHA)
        conformal.conformal_quantile(np.arange(1, 22) / 21, alpha=ALPHA, confidence=0.9)
    assert [warning.filename for warning in caught] == [__file__] * 2


def test_no_photos_give_nan_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(conformal.empirical_coverage(np.zeros((0, 3), dtype=bool), []))
        assert math.isnan(conformal.mean_set_size(np.zeros((0, 3), dtype=bool)))
        table = mondrian.coverage_by_group(np.ones((1, 3), dtype=bool), [0], GROUPS)
    assert table.loc["large", "photos"] == 1 and math.isnan(table.loc["medium", "mean_set_size"])
    assert table.index.name == "group"


def test_mondrian_sets_score_with_u_half_unless_told_otherwise():
    probs = np.array([[0.5, 0.4, 0.1]])  # class 1 scores .5 + u * .4
    groups = ["only"] * 3
    assert mondrian.mondrian_prediction_sets(probs, {"only": 0.6}, groups).tolist() == [[True, False, False]]
    assert mondrian.mondrian_prediction_sets(probs, {"only": 0.6}, groups, u=0.0).tolist() == [[True, True, False]]


def test_groups_beyond_the_size_groups_follow_them_by_name():
    names = ["zoo", "small", "art", "kiln", "large", "bay", "mill", "dock"]
    table = mondrian.coverage_by_group(np.ones((8, 8), dtype=bool), np.arange(8), names)
    assert table.index.tolist() == ["small", "large", "art", "bay", "dock", "kiln", "mill", "zoo", "all"]


def test_size_group_thresholds_may_meet_and_counts_must_be_one_per_class():
    assert mondrian.size_groups([0, 5, 9], small_below=0, large_from=5).tolist() == ["medium", "large", "large"]
    assert mondrian.size_groups([4, 5], small_below=5, large_from=5).tolist() == ["small", "large"]
    for bad in ([[3, 4]], [3, -1]):
        with pytest.raises(ValueError, match="photo_counts must be one count >= 0 per class"):
            mondrian.size_groups(bad)
