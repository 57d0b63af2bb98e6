"""Calibration metrics against hand-computed cases, and temperature scaling."""

import warnings

import numpy as np
import pytest

from meterlib.confidence import calibration, conformal, fitted, mondrian, selective

# Four images, three classes: confidences 0.9 (right), 0.8 (wrong), 0.6 (right), 0.4 (wrong).
PROBS = np.array([[0.9, 0.05, 0.05],
                  [0.8, 0.1, 0.1],
                  [0.2, 0.6, 0.2],
                  [0.3, 0.3, 0.4]])
LABELS = np.array([0, 1, 1, 0])


def test_ece_with_one_image_per_bin_is_the_mean_gap():
    # 15 bins: every confidence lands in its own bin, so ECE = mean |correct - confidence|.
    expected = (0.1 + 0.8 + 0.4 + 0.4) / 4
    assert calibration.expected_calibration_error(PROBS, LABELS, n_bins=15) == pytest.approx(expected)
    assert calibration.max_calibration_error(PROBS, LABELS, n_bins=15) == pytest.approx(0.8)


def test_ece_weights_shared_bins_by_count():
    # Two bins (0, .5] and (.5, 1]: the upper holds .9/.8/.6 with accuracy 2/3, the lower .4 (wrong).
    upper_gap = abs(2 / 3 - (0.9 + 0.8 + 0.6) / 3)
    expected = 3 / 4 * upper_gap + 1 / 4 * 0.4
    assert calibration.expected_calibration_error(PROBS, LABELS, n_bins=2) == pytest.approx(expected)
    assert calibration.max_calibration_error(PROBS, LABELS, n_bins=2) == pytest.approx(0.4)


def test_reliability_bins_are_right_closed():
    probs = np.array([[0.5, 0.5], [1.0, 0.0], [0.75, 0.25]])
    bins = calibration.reliability_bins(probs, [0, 0, 1], n_bins=4)
    assert bins["count"].tolist() == [0, 1, 1, 1]  # 0.5 -> (.25,.5], 0.75 -> (.5,.75], 1.0 -> (.75,1]
    assert bins.loc[2, "accuracy"] == 0.0 and bins.loc[3, "accuracy"] == 1.0
    assert np.isnan(bins.loc[0, "accuracy"])


def test_perfectly_calibrated_bins_have_zero_ece():
    probs = np.tile([0.75, 0.25], (4, 1))
    assert calibration.expected_calibration_error(probs, [0, 0, 0, 1]) == pytest.approx(0.0)


def test_adaptive_ece_bins_hold_equal_numbers_of_photos():
    # Two bins of two photos by confidence: {.4 wrong, .6 right} and {.8 wrong, .9 right}.
    expected = 0.5 * abs(0.5 - 0.5) + 0.5 * abs(0.5 - 0.85)
    assert calibration.adaptive_calibration_error(PROBS, LABELS, n_bins=2) == pytest.approx(expected)
    # One photo per bin: the mean gap, as for equal-width bins that split every photo.
    assert calibration.adaptive_calibration_error(PROBS, LABELS, n_bins=4) == pytest.approx(
        calibration.expected_calibration_error(PROBS, LABELS, n_bins=15))


def test_debiased_error_subtracts_the_variance_of_each_bins_accuracy():
    # One bin of four photos at confidence .95, one right: gap .7, accuracy variance .25*.75/3.
    probs = np.tile([0.95, 0.05], (4, 1))
    labels = [0, 1, 1, 1]
    expected = np.sqrt(0.7 ** 2 - 0.25 * 0.75 / 3)
    assert calibration.debiased_calibration_error(probs, labels, n_bins=1) == pytest.approx(expected)
    assert calibration.adaptive_calibration_error(probs, labels, n_bins=1) == pytest.approx(0.7)
    # A bin of one photo has no variance estimate and counts 0; a negative total reads 0.
    assert calibration.debiased_calibration_error(PROBS, LABELS, n_bins=4) == 0.0


def test_debiased_error_is_near_zero_for_a_calibrated_model_where_ece_is_not():
    # 300 photos, labels drawn from the model's own probabilities: any ECE is sampling noise.
    ece, debiased = [], []
    for seed in range(20):
        _, labels, probs = _calibrated_sample(np.random.default_rng(seed), n=300, k=10)
        ece.append(calibration.expected_calibration_error(probs, labels))
        debiased.append(calibration.debiased_calibration_error(probs, labels))
    assert np.mean(ece) > 0.05 and min(ece) > 0.03
    assert np.mean(debiased) < 0.03 and np.mean(debiased) < np.mean(ece) / 2


def test_debiased_error_sees_real_miscalibration():
    true_logits, labels, _ = _calibrated_sample(np.random.default_rng(7), n=3000, k=10)
    overconfident = calibration.softmax(2.0 * true_logits)
    gap = calibration.expected_calibration_error(overconfident, labels)
    assert gap > 0.1
    assert calibration.debiased_calibration_error(overconfident, labels) == pytest.approx(gap, rel=0.3)


def test_nll_and_brier_by_hand():
    nll = -(np.log(0.9) + np.log(0.1) + np.log(0.6) + np.log(0.3)) / 4
    brier = (0.015 + 1.46 + 0.24 + 0.74) / 4
    assert calibration.negative_log_likelihood(PROBS, LABELS) == pytest.approx(nll)
    assert calibration.brier_score(PROBS, LABELS) == pytest.approx(brier)
    summary = calibration.calibration_summary(PROBS, LABELS)
    assert summary["accuracy"] == 0.5 and summary["brier"] == pytest.approx(brier)


def test_bad_labels_are_rejected():
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        calibration.expected_calibration_error(PROBS, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="3 labels for 4 rows"):
        calibration.negative_log_likelihood(PROBS, [0, 1, 2])


def test_softmax_rows_sum_to_one_and_temperature_flattens():
    logits = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    p1 = calibration.softmax(logits)
    p3 = calibration.softmax(logits, temperature=3.0)
    np.testing.assert_allclose(p1.sum(axis=1), 1.0)
    assert p3[1].max() < p1[1].max()
    with pytest.raises(ValueError, match="positive"):
        calibration.softmax(logits, temperature=0.0)


def _calibrated_sample(rng, n, k):
    """Logits of a perfectly calibrated model, labels drawn from its own probabilities, and those."""
    true_logits = rng.normal(scale=2.0, size=(n, k))
    probs = calibration.softmax(true_logits)
    labels = (probs.cumsum(axis=1) > rng.uniform(size=(n, 1))).argmax(axis=1)
    return true_logits, labels, probs


@pytest.mark.parametrize("t0", [0.6, 2.5])
def test_temperature_scaling_recovers_a_known_temperature(t0):
    true_logits, labels, _ = _calibrated_sample(np.random.default_rng(1), n=6000, k=6)
    logits = true_logits * t0  # t0 > 1: overconfident model; t0 < 1: underconfident
    fit = calibration.fit_temperature(logits, labels)
    assert fit.fitted
    assert fit.temperature == pytest.approx(t0, rel=0.06)
    assert fit.nll_after < fit.nll_before
    before = calibration.expected_calibration_error(calibration.softmax(logits), labels)
    after = calibration.expected_calibration_error(calibration.softmax(logits, temperature=fit.temperature), labels)
    assert after < before


def test_temperature_fit_ignores_classes_absent_from_validation():
    true_logits, labels, _ = _calibrated_sample(np.random.default_rng(2), n=6000, k=4)
    logits = np.c_[true_logits * 2.0, np.full((len(labels), 2), -5.0)]  # two classes never seen
    fit = calibration.fit_temperature(logits, labels)
    assert fit.fitted and fit.temperature == pytest.approx(2.0, rel=0.1)


def test_too_small_validation_falls_back_to_t1_with_warning():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.5]])
    with pytest.warns(calibration.CalibrationWarning, match="only 3 calibration images"):
        fit = calibration.fit_temperature(logits, [0, 1, 1], min_samples=30)
    assert fit.temperature == 1.0 and not fit.fitted and fit.nll_after == fit.nll_before


@pytest.mark.parametrize("scale", [1.0, 30.0])  # 30: probabilities saturate at exactly 1
def test_validation_without_errors_does_not_sharpen_to_certainty(scale):
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(200, 5)) * scale
    labels = logits.argmax(axis=1)  # every prediction right: NLL falls forever as T -> 0
    with pytest.warns(calibration.CalibrationWarning, match="0 errors in 200"):
        fit = calibration.fit_temperature(logits, labels)
    assert fit.temperature == 1.0 and not fit.fitted


def test_a_fit_that_raises_ece_on_its_own_split_is_rejected():
    # 40 images from a calibrated model, logits scaled by 1.5: the NLL optimum (T ~ 1.96) is
    # noise-driven and raises the split's ECE, so the fit is not trusted.
    rng = np.random.default_rng(0)
    true_logits = rng.normal(scale=2.0, size=(40, 4))
    labels = (calibration.softmax(true_logits).cumsum(axis=1) > rng.uniform(size=(40, 1))).argmax(axis=1)
    with pytest.warns(calibration.CalibrationWarning, match="lowers NLL but raises ECE"):
        fit = calibration.fit_temperature(true_logits * 1.5, labels)
    assert fit.temperature == 1.0 and not fit.fitted


def test_metrics_use_15_bins_unless_told_otherwise():
    _, labels, probs = _calibrated_sample(np.random.default_rng(6), n=200, k=5)
    for metric in (calibration.expected_calibration_error, calibration.adaptive_calibration_error,
                   calibration.debiased_calibration_error, calibration.max_calibration_error):
        assert metric(probs, labels) == metric(probs, labels, n_bins=15) != metric(probs, labels, n_bins=16)
    bins = calibration.reliability_bins(probs, labels)
    assert list(bins.columns) == ["lower", "upper", "count", "accuracy", "mean_confidence"]
    np.testing.assert_allclose(bins["lower"], np.arange(15) / 15)
    np.testing.assert_allclose(bins["upper"], np.arange(1, 16) / 15)
    summary = calibration.calibration_summary(probs, labels, n_bins=4)
    assert summary == {
        "ece": calibration.expected_calibration_error(probs, labels, n_bins=4),
        "mce": calibration.max_calibration_error(probs, labels, n_bins=4),
        "nll": calibration.negative_log_likelihood(probs, labels),
        "brier": calibration.brier_score(probs, labels), "accuracy": pytest.approx(np.mean(probs.argmax(1) == labels))}
    assert calibration.calibration_summary(probs, labels) == calibration.calibration_summary(probs, labels, n_bins=15)


def test_no_photos_and_empty_bins_give_nan_without_a_warning():
    empty = np.zeros((0, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bins = calibration.reliability_bins(PROBS, LABELS, n_bins=15)
        for metric in (calibration.expected_calibration_error, calibration.max_calibration_error,
                       calibration.negative_log_likelihood, calibration.brier_score):
            assert np.isnan(metric(empty, []))
    assert bins["count"].sum() == 4 and bins["accuracy"].isna().sum() == 11


def test_malformed_inputs_are_named():
    with pytest.raises(ValueError, match=r"expected logits of shape \(n, classes\), got \(3,\)"):
        calibration.softmax(np.zeros(3))
    with pytest.raises(ValueError, match=r"expected probabilities of shape \(n, classes\), got \(3,\)"):
        calibration.brier_score(np.zeros(3), [0, 0, 0])
    with pytest.raises(ValueError, match="0 labels for 4 rows"):
        calibration.as_probs_and_labels(PROBS, 0)
    with pytest.raises(ValueError, match="n_bins must be at least 1, got 0"):
        calibration.expected_calibration_error(PROBS, LABELS, n_bins=0)
    assert calibration.softmax(np.zeros((2, 1))).tolist() == [[1.0], [1.0]]  # one class: certain


def test_a_fitted_temperature_says_so():
    true_logits, labels, _ = _calibrated_sample(np.random.default_rng(1), n=6000, k=6)
    fit = calibration.fit_temperature(true_logits * 14.0, labels)  # within the range, near its top
    assert fit.fitted is True and fit.temperature == pytest.approx(14.0, rel=0.06)
    assert (fit.reason, fit.n_samples) == ("fitted on the calibration split by minimising NLL", 6000)


def test_thirty_images_are_enough_by_default():
    true_logits, labels, _ = _calibrated_sample(np.random.default_rng(5), n=30, k=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # whether 30 images support a fit is not the question here
        assert "calibration images" not in calibration.fit_temperature(true_logits, labels).reason
    with pytest.warns(calibration.CalibrationWarning):
        fit = calibration.fit_temperature(true_logits[:29], labels[:29])
    assert fit == calibration.TemperatureFit(1.0, False, "only 29 calibration images (need at least 30)",
                                             29, fit.nll_before, fit.nll_before)
    with pytest.warns(calibration.CalibrationWarning, match="only 0 calibration images"):
        calibration.fit_temperature(np.zeros((0, 3)), [], min_samples=0)


def test_an_optimum_below_the_temperature_range_is_not_used():
    true_logits, labels, _ = _calibrated_sample(np.random.default_rng(1), n=6000, k=6)
    errors = int((true_logits.argmax(axis=1) != labels).sum())
    with pytest.warns(calibration.CalibrationWarning):
        fit = calibration.fit_temperature(true_logits * 0.035, labels)  # optimum T = .035 < .05
    assert not fit.fitted and fit.reason == (
        f"NLL still falls at T = 0.05 ({errors} errors in 6000 images): too few mistakes to tell how "
        "confident the model should be")


def test_saturated_right_answers_are_not_sharpened():
    labels = np.arange(40) % 3
    logits = np.zeros((40, 3))
    logits[np.arange(40), labels] = 1000.0  # probabilities exactly 0 and 1 at every T in range
    with pytest.warns(calibration.CalibrationWarning, match=r"0 errors in 40 images"):
        assert calibration.fit_temperature(logits, labels).temperature == 1.0


def test_predictions_that_point_away_from_the_truth_keep_t1():
    labels = np.arange(40) % 4
    logits = np.zeros((40, 4))
    logits[np.arange(40), labels] = -0.5  # the true class always the least likely
    with pytest.warns(calibration.CalibrationWarning) as caught:
        fit = calibration.fit_temperature(logits, labels)
    assert fit.reason == "NLL still falls at T = 20.0: the predictions carry almost no information on this split"
    assert str(caught[0].message) == f"temperature scaling skipped, keeping T = 1: {fit.reason}"


def test_the_ece_check_uses_the_bins_it_is_given():
    # The 40-image case below raises ECE with 15 bins, but not with 14.
    rng = np.random.default_rng(0)
    true_logits = rng.normal(scale=2.0, size=(40, 4))
    labels = (calibration.softmax(true_logits).cumsum(axis=1) > rng.uniform(size=(40, 1))).argmax(axis=1)
    assert calibration.fit_temperature(true_logits * 1.5, labels, n_bins=14).fitted


def test_the_fallback_warning_is_at_the_callers_line():
    with pytest.warns(calibration.CalibrationWarning) as caught:
        calibration.fit_temperature(np.zeros((3, 2)), [0, 1, 1])
    assert caught[0].filename == __file__


def test_a_calibration_keeps_its_fields_through_the_model_file_and_defaults_to_uncalibrated():
    Calibration = fitted.Calibration
    stored = Calibration(temperature=np.float64(1.5), unknown_threshold=0.25, conformal_quantile=0.7,
                         conformal_class_thresholds=[0.1, float("inf")], conformal_u=0.5)
    fields = stored.to_fields()
    assert fields["conformal_class_thresholds"] == [0.1, float("inf")] and type(fields["temperature"]) is float
    assert Calibration.from_fields(fields) == stored
    # None (the ONNX metadata's null) and absent fields keep the uncalibrated defaults.
    assert Calibration.from_fields({"conformal_quantile": None}) == Calibration() == Calibration.from_fields({})
    assert Calibration().conformal_quantile == float("inf") and Calibration().to_fields() == {
        "temperature": 1.0, "unknown_threshold": 0.5, "conformal_quantile": float("inf"), "conformal_u": 0.0}


def test_fit_calibration_scales_first_then_fits_the_threshold_and_sets_on_the_scaled_probabilities():
    true_logits, labels, _ = _calibrated_sample(np.random.default_rng(4), n=600, k=10)
    logits = 2.0 * true_logits  # overconfident: the fit must change T
    groups = np.array(["small", "large"] * 5, dtype=object)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", calibration.CalibrationWarning)
        result = fitted.fit_calibration(logits, labels, groups, min_samples=30, target_accuracy=0.8, alpha=0.1,
                                        confidence=None)
    temperature = calibration.fit_temperature(logits, labels).temperature
    probs = calibration.softmax(logits, temperature=temperature)
    quantiles = mondrian.calibrate_mondrian(probs, labels, groups, alpha=0.1, u=conformal.INFORMATIVE_U)
    assert result.calibration == fitted.Calibration(
        temperature=temperature,
        unknown_threshold=selective.choose_threshold(probs.max(axis=1), probs.argmax(axis=1) == labels,
                                                     target_accuracy=0.8).threshold,
        conformal_quantile=conformal.calibrate_aps(probs, labels, alpha=0.1),
        conformal_class_thresholds=mondrian.class_thresholds(quantiles, groups), conformal_u=conformal.INFORMATIVE_U)
    assert temperature > 1.5 and result.temperature_fit.temperature == temperature
    assert result.group_quantiles == quantiles and (result.alpha, result.target_accuracy) == (0.1, 0.8)
