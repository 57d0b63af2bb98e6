"""metrics.json: its schema, built in one place (``evaluate.report.build_metrics``), and written as strict JSON."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from meterlib.confidence import calibration, conformal, fitted, selective
from meterlib.confidence.fitted import Calibration, CalibrationFit
from meterlib.evaluate import reasons, report, scoring, tables
from meterlib.run import atomic
from meterlib.serve import Predictor

CLASSES = ["zeta", "alpha", "mu"]
UNSEEN = pd.DataFrame({"path": ["raw/new/6.png", "raw/new/7.png"], "class": ["new", "new"]})


def fitted_calibration(val_probs_calibrated, val_labels, *, temperature, threshold, groups=None, quantiles=None,
                       **sets) -> tuple[CalibrationFit, dict]:
    """A calibration as 03 fits it (``sets``: class thresholds and u), and its record; one "large" group by default."""
    fit = calibration.TemperatureFit(temperature, True, "set by the test", len(val_labels), 1.0, 0.9)
    table = tables.calibration_table({"val": (np.log(val_probs_calibrated), val_labels)}, temperature=1.0,
                                     n_bins=5)
    served = Calibration(temperature=temperature, unknown_threshold=threshold,
                         conformal_quantile=conformal.calibrate_aps(val_probs_calibrated, val_labels, alpha=0.34),
                         **sets)
    groups = ("large",) * val_probs_calibrated.shape[1] if groups is None else groups
    calibrated = CalibrationFit(served, fit, selective.ThresholdChoice(threshold, 0.5, 1.0, True), groups,
                                quantiles or {"large": 0.5}, target_accuracy=0.9, alpha=0.34, confidence=0.8)
    record = {**fitted.calibration_record(fit, table=table, ece_bins=5, sources={"val": len(val_labels)}),
              **fitted.rules_record(served, unseen_note="only 3 val photos")}
    return calibrated, record


def _reasons(served: Predictor, probs, labels) -> dict:
    """reason_summary of served answers on test photos (``probs``) and on two unseen ones."""
    test = served.predictions_from_logits(np.log(probs))
    unseen = served.predictions_from_logits(np.log([[0.34, 0.33, 0.33], [0.9, 0.05, 0.05]]))
    return {"test": reasons.reason_summary(test, [CLASSES[i] for i in labels]),
            "unseen": reasons.reason_summary(unseen, UNSEEN["class"])}


def _strict_loads(text: str):
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def _leaves(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def test_metrics_json_schema(tmp_path):
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]])
    labels = np.array([0, 1, 2])
    groups = ("large", "small", "medium")
    calibrated, record = fitted_calibration(probs, labels, temperature=1.3, threshold=0.6, groups=groups,
                                            quantiles={"small": math.inf, "medium": 0.9, "large": 0.5})
    served = Predictor(model=None, class_names=CLASSES, image_size=32, mean=[0.5] * 3, std=[0.25] * 3,
                       calibration=calibrated.calibration)
    outcome = scoring.answer_summary(served.predictions_from_logits(np.log(probs)), CLASSES)
    summaries = _reasons(served, probs, labels)
    coverage = tables.set_coverage_table(probs, labels, calibrated)
    intervals = tables.intervals_on_test({"before": probs, "after": probs}, labels, n_bins=5, n_boot=20, seed=0)
    metrics = report.build_metrics(
        checkpoint_created="2026-01-01T00:00:00+00:00", test_metrics=scoring.classification_metrics(probs, labels),
        calibrated=calibrated, record=record, test_outcome=outcome, set_coverage=coverage, intervals=intervals,
        unseen_rows=UNSEEN, aurocs={"energy": 0.75, "fused p-value": 0.9}, reasons=summaries, untested=["mu"],
        data_warnings=["a leak"])
    assert list(metrics) == ["checkpoint_created", "test", "calibration", "unknown_threshold", "conformal",
                             "test_calibration_intervals", "unseen_type", "reasons", "classes_without_test_photos",
                             "data_warnings"]
    assert metrics["checkpoint_created"] == "2026-01-01T00:00:00+00:00"
    assert metrics["test"] == scoring.classification_metrics(probs, labels)
    assert metrics["calibration"] == record and record["temperature"] == 1.3 and record["fitted"] is True
    assert metrics["unknown_threshold"] == {
        "threshold": 0.6, "target_accuracy": 0.9, "target_met_on_calibration": True, "calibration_coverage": 0.5,
        "test_coverage": outcome["coverage"], "test_accuracy_answered": outcome["accuracy_answered"]}
    sets = dict(metrics["conformal"])
    groups_stored = sets.pop("groups")
    assert list(metrics["conformal"]) == ["method", "alpha", "confidence", "quantile", "test_coverage",
                                          "test_mean_set_size", "groups"]
    assert sets == {"method": "APS", "alpha": 0.34, "confidence": 0.8,
                    "quantile": calibrated.calibration.conformal_quantile, "test_coverage": outcome["set_coverage"],
                    "test_mean_set_size": outcome["mean_set_size"]}
    assert list(groups_stored) == ["small", "medium", "large", "all"]
    pd.testing.assert_frame_equal(pd.DataFrame.from_dict(groups_stored, orient="index"), coverage,
                                  check_names=False)
    assert metrics["test_calibration_intervals"] == intervals and list(intervals) == ["before", "after"]
    assert metrics["unseen_type"] == {
        "classes": ["new"], "photos": 2, "fitted": False, "reason": "only 3 val photos", "alpha": None,
        "calibration_photos": 0, "auroc": {"energy": 0.75, "fused p-value": 0.9},
        "test_false_alarm_rate": summaries["test"]["reasons"]["unseen_type"],
        "unseen_not_answered": 0.5}  # the flat answer is unsure, the confident one names a known type
    assert metrics["reasons"] == summaries and list(summaries) == ["test", "unseen"]
    assert metrics["reasons"]["test"]["reasons"] == {"poor_photo": 0.0, "unseen_type": 0.0, "unsure": 1 / 3}
    assert metrics["reasons"]["test"]["answered"] == outcome["coverage"]
    assert metrics["classes_without_test_photos"] == ["mu"] and metrics["data_warnings"] == ["a leak"]
    # Strict JSON: the uncalibrated group's infinite quantile becomes null.
    stored = _strict_loads(atomic.write_json(tmp_path / "m.json", metrics).read_text())
    assert stored["conformal"]["groups"]["small"]["quantile"] is None
    assert stored["conformal"]["groups"]["medium"]["quantile"] == 0.9
    assert set(stored["test_calibration_intervals"]["after"]["ece"]) == {"value", "low", "high"}
    assert stored["unseen_type"]["classes"] == ["new"] and stored["unseen_type"]["alpha"] is None


def test_metrics_json_holds_plain_values():
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]])
    labels = np.array([0, 1, 2])
    calibrated, record = fitted_calibration(probs, labels, temperature=1.3, threshold=0.6)
    outcome = scoring.answer_summary([], [])
    metrics = report.build_metrics(
        checkpoint_created="", test_metrics=scoring.classification_metrics(probs, labels), calibrated=calibrated,
        record=record, test_outcome=outcome, set_coverage=tables.set_coverage_table(probs, labels, calibrated),
        intervals={}, unseen_rows=UNSEEN.iloc[:0], aurocs={}, reasons={"test": reasons.reason_summary([], []),
                                                                       "unseen": reasons.reason_summary([], [])},
        untested=[], data_warnings=[])
    unseen_type = metrics["unseen_type"]
    assert (unseen_type["classes"], unseen_type["photos"], unseen_type["auroc"]) == ([], 0, {})
    assert math.isnan(unseen_type["test_false_alarm_rate"]) and math.isnan(unseen_type["unseen_not_answered"])
    # Plain Python values all the way down (json writes them; write_json turns NaN and inf into null).
    assert {type(value) for value in _leaves(metrics)} <= {str, int, float, bool, type(None)}


def test_write_json_writes_strict_json(tmp_path):
    data = {"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "f32": np.float32(0.5), "i64": np.int64(7),
            "bool": np.bool_(True), "array": np.array([[1.0, np.nan], [np.inf, 2.0]]),
            "nested": [{"x": np.float64("nan")}, (1, np.float32("-inf"))], "path": tmp_path / "a",
            np.int64(3): "numpy key"}
    text = atomic.write_json(tmp_path / "m.json", data).read_text()
    assert _strict_loads(text) == {
        "nan": None, "inf": None, "ninf": None, "f32": 0.5, "i64": 7, "bool": True,
        "array": [[1.0, None], [None, 2.0]], "nested": [{"x": None}, [1, None]], "path": str(tmp_path / "a"),
        "3": "numpy key"}
    with pytest.raises(ValueError, match="not strict JSON: NaN"):
        _strict_loads(json.dumps({"x": math.nan}))  # the parser does refuse what json.dumps writes by default
