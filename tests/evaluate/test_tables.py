"""03's tables: calibration before and after, test intervals, set coverage per group, accuracy by quality."""

import math

import numpy as np
import pandas as pd
import pytest

from meterlib.confidence import bootstrap, calibration, conformal, mondrian, selective
from meterlib.confidence.fitted import Calibration, CalibrationFit
from meterlib.evaluate import tables
from meterlib.run import atomic


def test_calibration_table_compares_each_split_before_and_after():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.5]])
    labels = np.array([0, 1, 1])
    table = tables.calibration_table({"val": (logits, labels), "test": (logits[:2], labels[:2])},
                                     temperature=2.0, n_bins=5)
    assert table.columns.tolist() == ["val before", "val after", "test before", "test after"]
    assert table.index.tolist() == ["ece", "mce", "nll", "brier", "accuracy"]
    assert table.loc["nll", "val after"] == pytest.approx(calibration.negative_log_likelihood(
        calibration.softmax(logits, temperature=2.0), labels))
    assert table.loc["nll", "test before"] == pytest.approx(calibration.negative_log_likelihood(
        calibration.softmax(logits[:2]), labels[:2]))
    assert table.loc["accuracy", "val before"] == table.loc["accuracy", "val after"] == pytest.approx(2 / 3)


def test_intervals_on_test_and_their_table():
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]])
    labels = np.array([0, 1, 2, 1])
    intervals = tables.intervals_on_test({"before": probs, "after": probs[:, ::-1]}, labels, n_bins=5, n_boot=20,
                                         seed=3)
    assert intervals["before"] == bootstrap.summary_with_intervals(probs, labels, n_bins=5, n_boot=20, seed=3)
    assert intervals["after"] == bootstrap.summary_with_intervals(probs[:, ::-1], labels, n_bins=5, n_boot=20, seed=3)
    table = tables.interval_table(intervals)
    assert table.columns.tolist() == [f"{when} {part}" for when in ("before", "after")
                                      for part in ("value", "low", "high")]
    assert table.index.tolist() == list(intervals["before"])
    assert table.loc["ece", "after low"] == intervals["after"]["ece"]["low"]


def test_set_coverage_table_compares_the_per_group_sets_with_the_marginal_ones():
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]])
    labels = np.array([0, 1, 2, 1])
    groups = ("large", "small", "medium")
    quantiles = {"small": math.inf, "medium": 0.9, "large": 0.5}
    calibrated = CalibrationFit(Calibration(conformal_quantile=0.6, conformal_u=0.5), None,
                                selective.ThresholdChoice(0.5, 1.0, 1.0, True), groups, quantiles,
                                target_accuracy=0.9, alpha=0.1, confidence=None)
    table = tables.set_coverage_table(probs, labels, calibrated)
    assert table.index.tolist() == ["small", "medium", "large", "all"]
    assert table.columns.tolist() == ["photos", "coverage", "mean_set_size", "coverage (marginal)",
                                      "mean_set_size (marginal)", "quantile"]
    assert table.loc["small", "coverage"] == 1.0  # an infinite quantile: the class is in every set
    per_group = mondrian.coverage_by_group(mondrian.mondrian_prediction_sets(probs, quantiles, groups, u=0.5),
                                           labels, groups)
    marginal = mondrian.coverage_by_group(conformal.aps_prediction_sets(probs, 0.6), labels, groups)
    pd.testing.assert_series_equal(table["coverage"], per_group["coverage"])
    pd.testing.assert_series_equal(table["coverage (marginal)"], marginal["coverage"], check_names=False)
    assert table.loc["medium", "quantile"] == 0.9 and np.isnan(table.loc["all", "quantile"])


def test_quality_table_adds_audit_and_generator_columns(tmp_path):
    results = pd.DataFrame({"image": ["a.jpg", "b.jpg"], "correct": [True, False]})
    manifest = pd.DataFrame({"path": ["a.jpg", "b.jpg", "c.jpg"], "brightness": [0.1, 0.2, 0.3],
                             "contrast": [1.0, 2.0, 3.0], "sharpness": [5.0, 6.0, 7.0]})
    table, columns = tables.quality_table(results, manifest, nuisance_csv=tmp_path / "absent.csv",
                                          nuisance_columns=["glare"])
    assert columns == ["brightness", "contrast", "sharpness"] and table["contrast"].tolist() == [1.0, 2.0]
    atomic.write_csv(tmp_path / "synth.csv", pd.DataFrame({"path": ["b.jpg", "a.jpg"], "glare": [0.9, 0.0],
                                                           "zoom": [1.0, 1.1]}))
    table, columns = tables.quality_table(results, manifest, nuisance_csv=tmp_path / "synth.csv",
                                          nuisance_columns=["glare", "blur"])
    assert columns == ["brightness", "contrast", "sharpness", "glare (generator)"]
    assert table["glare (generator)"].tolist() == [0.0, 0.9]
