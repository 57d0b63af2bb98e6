"""APS prediction sets: hand cases and coverage on synthetic logits."""

import math

import numpy as np
import pytest

from meterlib.confidence import calibration, conformal

ALPHA = 0.1


def test_aps_score_is_the_mass_ranked_above_the_true_class():
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.1, 0.2, 0.7]])
    np.testing.assert_allclose(conformal.aps_scores(probs, [1, 2, 0]), [0.5, 0.0, 0.9])
    u_half = conformal.aps_scores(probs[:1], [1], randomized=True, rng=FixedRng(0.5))
    np.testing.assert_allclose(u_half, [0.5 + 0.5 * 0.3])


class FixedRng:
    def __init__(self, value):
        self.value = value

    def uniform(self, size):
        return np.full(size, self.value)


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
    scores = np.arange(1, 20) / 20  # 19 scores: rank ceil(20 * 0.9) = 18
    assert conformal.conformal_quantile(scores, alpha=ALPHA) == pytest.approx(18 / 20)


def test_too_few_calibration_images_put_every_class_in_the_set():
    probs = np.array([[0.7, 0.2, 0.1]] * 5)
    with pytest.warns(calibration.CalibrationWarning, match="5 calibration images"):
        qhat = conformal.calibrate_aps(probs, [0] * 5, alpha=ALPHA)
    assert qhat == math.inf
    assert conformal.aps_prediction_sets(probs, qhat).all()


def test_randomized_mode_needs_an_rng():
    with pytest.raises(ValueError, match="rng"):
        conformal.aps_scores(np.array([[0.6, 0.4]]), [0], randomized=True)


def _synthetic(rng, n, k=10):
    # A somewhat overconfident model: labels drawn from softmax(z), reported logits 1.5 * z.
    z = rng.normal(scale=1.5, size=(n, k))
    labels = (calibration.softmax(z).cumsum(axis=1) > rng.uniform(size=(n, 1))).argmax(axis=1)
    return calibration.softmax(1.5 * z), labels


def _sampling_error(n_cal, n_test):
    # One standard deviation of empirical coverage: calibration quantile noise plus test binomial noise.
    return math.sqrt(ALPHA * (1 - ALPHA) * (1 / n_cal + 1 / n_test))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_randomized_aps_coverage_is_within_sampling_error_of_target(seed):
    rng = np.random.default_rng(seed)
    n_cal, n_test = 2000, 5000
    cal_probs, cal_labels = _synthetic(rng, n_cal)
    test_probs, test_labels = _synthetic(rng, n_test)
    qhat = conformal.calibrate_aps(cal_probs, cal_labels, alpha=ALPHA, randomized=True, rng=rng)
    sets = conformal.aps_prediction_sets(test_probs, qhat, randomized=True, rng=rng)
    coverage = conformal.empirical_coverage(sets, test_labels)
    assert abs(coverage - (1 - ALPHA)) < 4 * _sampling_error(n_cal, n_test) + 1 / (n_cal + 1)
    # Sets must adapt: far fewer classes than all ten, yet more than one on average.
    assert 1.0 < conformal.mean_set_size(sets) < 8.0


def test_deterministic_aps_covers_at_least_the_target():
    rng = np.random.default_rng(5)
    n_cal, n_test = 2000, 5000
    cal_probs, cal_labels = _synthetic(rng, n_cal)
    test_probs, test_labels = _synthetic(rng, n_test)
    sets = conformal.aps_prediction_sets(test_probs, conformal.calibrate_aps(cal_probs, cal_labels, alpha=ALPHA))
    assert conformal.empirical_coverage(sets, test_labels) > 1 - ALPHA - 4 * _sampling_error(n_cal, n_test)
    assert sets.sum(axis=1).min() >= 1
