"""Bootstrap intervals of the calibration metrics: shape, determinism, width and agreement."""

import math

import numpy as np
import pytest

from meterlib.confidence import bootstrap, calibration, metrics


def _overconfident(n, *, seed=0, k=10):
    # Labels drawn from softmax(z); the model reports softmax(1.5 z): measurably miscalibrated.
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=2.0, size=(n, k))
    labels = (calibration.softmax(z).cumsum(axis=1) > rng.uniform(size=(n, 1))).argmax(axis=1)
    return calibration.softmax(1.5 * z), labels


def test_every_metric_has_a_value_inside_its_interval():
    probs, labels = _overconfident(1000)
    summary = bootstrap.summary_with_intervals(probs, labels, n_boot=500)
    assert list(summary) == list(metrics.METRICS)
    for name, entry in summary.items():
        assert set(entry) == {"value", "low", "high"}
        assert entry["low"] < entry["value"] < entry["high"], name


def test_values_are_the_plain_metrics():
    probs, labels = _overconfident(300)
    summary = bootstrap.summary_with_intervals(probs, labels, n_bins=10, n_boot=20)
    plain = calibration.calibration_summary(probs, labels, n_bins=10)
    for name in ("accuracy", "nll", "brier", "ece"):
        assert summary[name]["value"] == pytest.approx(plain[name])
    assert summary["adaptive_ece"]["value"] == pytest.approx(
        calibration.adaptive_calibration_error(probs, labels, n_bins=10))
    assert summary["debiased_l2_ce"]["value"] == pytest.approx(
        calibration.debiased_calibration_error(probs, labels, n_bins=10))


def test_more_photos_give_narrower_intervals():
    small = bootstrap.summary_with_intervals(*_overconfident(200), n_boot=300)
    large = bootstrap.summary_with_intervals(*_overconfident(2000), n_boot=300)
    for name in metrics.METRICS:
        width_small = small[name]["high"] - small[name]["low"]
        width_large = large[name]["high"] - large[name]["low"]
        assert width_large < 0.6 * width_small, name  # about 1/sqrt(10) expected


def test_accuracy_interval_matches_the_binomial_spread():
    probs, labels = _overconfident(1000)
    entry = bootstrap.summary_with_intervals(probs, labels, n_boot=1000)["accuracy"]
    p = entry["value"]
    expected = 2 * 1.96 * math.sqrt(p * (1 - p) / labels.size)
    assert entry["high"] - entry["low"] == pytest.approx(expected, rel=0.15)


def test_the_seed_fixes_the_resamples():
    probs, labels = _overconfident(200)
    first = bootstrap.summary_with_intervals(probs, labels, n_boot=100, seed=3)
    assert bootstrap.summary_with_intervals(probs, labels, n_boot=100, seed=3) == first
    assert bootstrap.summary_with_intervals(probs, labels, n_boot=100, seed=4) != first


def test_bootstrap_weights_are_resample_counts():
    weights = bootstrap.bootstrap_weights(50, n_boot=400, seed=0)
    assert weights.shape == (400, 50)
    assert (weights.sum(axis=1) == 50).all() and (weights >= 0).all()
    assert weights.mean(axis=0) == pytest.approx(np.ones(50), abs=0.2)
    assert (weights == 0).mean() == pytest.approx((1 - 1 / 50) ** 50, abs=0.02)  # photos left out


def test_an_identical_photo_repeated_has_no_spread():
    probs = np.tile([0.7, 0.2, 0.1], (40, 1))
    summary = bootstrap.summary_with_intervals(probs, [0] * 40, n_boot=50)
    assert summary["accuracy"] == {"value": 1.0, "low": 1.0, "high": 1.0}
    assert summary["ece"]["value"] == pytest.approx(0.3) and summary["ece"]["high"] == pytest.approx(0.3)


def test_no_photos_and_bad_options():
    empty = bootstrap.summary_with_intervals(np.zeros((0, 3)), [])
    assert all(math.isnan(v) for entry in empty.values() for v in entry.values())
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap.summary_with_intervals(np.eye(2), [0, 1], n_boot=0)
    with pytest.raises(ValueError, match="level"):
        bootstrap.summary_with_intervals(np.eye(2), [0, 1], level=95)
