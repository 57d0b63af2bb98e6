"""Risk-coverage, the UNKNOWN threshold and unknown-class scores."""

import warnings

import numpy as np
import pandas as pd
import pytest

from meterlib.confidence import selective

CONF = np.array([0.95, 0.9, 0.9, 0.7, 0.6, 0.4])
CORRECT = np.array([True, True, False, True, False, True])


def test_risk_coverage_by_hand_with_ties_answered_together():
    curve = selective.risk_coverage_curve(CONF, CORRECT)
    assert curve["threshold"].tolist() == [0.95, 0.9, 0.7, 0.6, 0.4]
    assert curve["answered"].tolist() == [1, 3, 4, 5, 6]
    np.testing.assert_allclose(curve["accuracy"], [1, 2 / 3, 3 / 4, 3 / 5, 4 / 6])
    np.testing.assert_allclose(curve["risk"], 1 - curve["accuracy"])


def test_risk_coverage_is_monotone_and_ends_at_full_coverage():
    rng = np.random.default_rng(0)
    conf = rng.uniform(size=500).round(2)  # many ties
    correct = rng.uniform(size=500) < conf
    curve = selective.risk_coverage_curve(conf, correct)
    assert curve["threshold"].is_monotonic_decreasing and curve["threshold"].is_unique
    assert curve["coverage"].is_monotonic_increasing
    assert curve["coverage"].iloc[-1] == 1.0
    assert curve["accuracy"].iloc[-1] == pytest.approx(correct.mean())
    # With confidence that tracks correctness, answering only the surest is more accurate.
    assert curve["accuracy"].iloc[len(curve) // 10] > curve["accuracy"].iloc[-1]


def test_aurc_rewards_confidence_that_ranks_errors_last():
    correct = np.array([True] * 8 + [False] * 2)
    good = np.linspace(1, 0.1, 10)  # errors have the lowest confidence
    bad = good[::-1]
    assert selective.area_under_risk_coverage(good, correct) < selective.area_under_risk_coverage(bad, correct)
    # Perfect ranking by hand: risks 0 (x8), then 1/9, 2/10.
    assert selective.area_under_risk_coverage(good, correct) == pytest.approx((1 / 9 + 2 / 10) / 10)


def test_threshold_table_counts():
    table = selective.threshold_table(CONF, CORRECT, thresholds=(0.5, 0.9))
    assert table[["answered", "unknown", "errors_answered", "correct_withheld"]].values.tolist() == [
        [5, 1, 2, 1], [3, 3, 1, 2]]
    assert table.loc[1, "accuracy"] == pytest.approx(2 / 3)


def test_unknown_means_below_the_threshold_and_the_table_agrees():
    assert selective.is_unknown([0.49, 0.5, 0.51], 0.5).tolist() == [True, False, False]
    assert bool(selective.is_unknown(0.3, selective.DEFAULT_UNKNOWN_THRESHOLD))
    table = selective.threshold_table(CONF, CORRECT, thresholds=(0.7,))
    assert table.loc[0, "unknown"] == selective.is_unknown(CONF, 0.7).sum() == 2


def test_choose_threshold_maximises_coverage_at_target():
    choice = selective.choose_threshold(CONF, CORRECT, target_accuracy=0.75)
    assert choice == selective.ThresholdChoice(0.7, 4 / 6, 0.75, True)
    strict = selective.choose_threshold(CONF, CORRECT, target_accuracy=1.0)
    assert strict.threshold == 0.95 and strict.coverage == pytest.approx(1 / 6)


def test_unreachable_target_warns_and_returns_the_best_point():
    with pytest.warns(UserWarning, match="no confidence threshold reaches 90.0%"):
        choice = selective.choose_threshold([0.9, 0.8, 0.7], [False, True, True], target_accuracy=0.9)
    assert not choice.target_met and choice.accuracy == pytest.approx(2 / 3) and choice.threshold == 0.7


def test_energy_is_logsumexp_and_sees_what_max_softmax_cannot():
    logits = np.array([[2.0, 1.0, 0.0]])
    assert selective.energy_score(logits)[0] == pytest.approx(np.log(np.exp([2, 1, 0]).sum()))
    assert selective.energy_score(logits, temperature=2.0)[0] == pytest.approx(
        2 * np.log(np.exp([1, 0.5, 0]).sum()))
    rng = np.random.default_rng(1)
    known = rng.normal(size=(100, 5)) + 3.0
    unknown = known - 3.0  # same shape, lower magnitude: identical softmax, lower energy
    msp = selective.separation_auroc(selective.max_softmax_score(known), selective.max_softmax_score(unknown))
    energy = selective.separation_auroc(selective.energy_score(known), selective.energy_score(unknown))
    assert msp == pytest.approx(0.5, abs=0.01) and energy == 1.0


def test_auroc_without_unknown_images_is_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(selective.separation_auroc([0.9, 0.8], []))
        assert np.isnan(selective.separation_auroc([], [0.1]))


def test_inputs_must_match():
    with pytest.raises(ValueError, match=r"confidence \(2,\) and correct \(1,\) must be 1-D and of equal length"):
        selective.risk_coverage_curve([0.5, 0.6], [True])
    assert selective.risk_coverage_curve([], []).equals(pd.DataFrame(
        columns=["threshold", "answered", "coverage", "accuracy", "risk"]))


def test_threshold_table_columns_and_correctness_given_as_numbers():
    table = selective.threshold_table(CONF, CORRECT.astype(int), thresholds=(0.9, 0.99))
    assert table.to_dict("list") == {
        "threshold": [0.9, 0.99], "answered": [3, 0], "unknown": [3, 6], "coverage": [0.5, 0.0],
        "accuracy": [pytest.approx(2 / 3), pytest.approx(np.nan, nan_ok=True)],
        "errors_answered": [1, 0], "correct_withheld": [2, 4]}


def test_no_images_give_nan_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = selective.threshold_table([], [], thresholds=(0.5,))
        assert np.isnan(selective.area_under_risk_coverage([], []))
    assert table.loc[0, ["answered", "unknown"]].tolist() == [0, 0]
    assert np.isnan(table.loc[0, "coverage"]) and np.isnan(table.loc[0, "accuracy"])


def test_choose_threshold_refuses_targets_outside_0_1_and_empty_data():
    for target in (0, 1.5):
        with pytest.raises(ValueError, match=rf"target_accuracy must lie in \(0, 1\], got {target}"):
            selective.choose_threshold(CONF, CORRECT, target_accuracy=target)
    with pytest.raises(ValueError, match="cannot choose a threshold without any images"):
        selective.choose_threshold([], [], target_accuracy=0.9)


def test_an_unreachable_target_is_a_user_warning_at_the_callers_line():
    with pytest.warns(UserWarning) as caught:
        selective.choose_threshold([0.9, 0.8], [False, True], target_accuracy=0.9)
    assert caught[0].category is UserWarning and caught[0].filename == __file__


def test_max_softmax_score_is_each_rows_top_probability():
    logits = np.array([[2.0, 0.0], [0.0, 0.0]])
    e = np.exp(2.0)
    np.testing.assert_allclose(selective.max_softmax_score(logits), [e / (e + 1), 0.5])
    np.testing.assert_allclose(selective.max_softmax_score(logits, temperature=2.0),
                               [np.exp(1.0) / (np.exp(1.0) + 1), 0.5])
