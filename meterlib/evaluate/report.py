"""metrics.json, the schema of what notebook 03 measured: one function builds all of it.

To add a metric, add it here and to ``tests/evaluate/test_report.py``. ``atomic.write_json`` writes the
result as strict JSON: NaN (e.g. a size group without test photos) and inf (an uncalibrated group's
quantile) become null.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd

from meterlib.confidence import fitted
from meterlib.serve import predictor


def build_metrics(*, checkpoint_created: str, test_metrics: Mapping[str, float], calibrated: fitted.CalibrationFit,
                  record: Mapping, test_outcome: Mapping[str, float], set_coverage: pd.DataFrame,
                  intervals: Mapping[str, Mapping], unseen_rows: pd.DataFrame, aurocs: Mapping[str, float],
                  reasons: Mapping[str, Mapping], untested: Sequence[str], data_warnings: Sequence[str]) -> dict:
    """metrics.json: the test metrics, the calibration and what the served answers achieve on test.

    ``record`` is ``fitted.calibration_record`` of the fit with ``fitted.rules_record`` of the served
    calibration; ``test_outcome`` is ``scoring.answer_summary`` of the served test answers;
    ``set_coverage`` is ``tables.set_coverage_table`` on test; ``intervals`` is ``tables.intervals_on_test``;
    ``aurocs`` (``evaluate.reasons.aurocs``) separate known test photos from unseen-class ones per score;
    ``reasons`` is ``evaluate.reasons.reason_summary`` of the served "test" and "unseen" answers.
    """
    choice = calibrated.threshold
    return {
        "checkpoint_created": checkpoint_created,
        "test": dict(test_metrics),
        # Measured on the calibration photos (val, and out of fold where val lacks them).
        "calibration": dict(record),
        "unknown_threshold": {"threshold": choice.threshold, "target_accuracy": calibrated.target_accuracy,
                              "target_met_on_calibration": choice.target_met,
                              "calibration_coverage": choice.coverage, "test_coverage": test_outcome["coverage"],
                              "test_accuracy_answered": test_outcome["accuracy_answered"]},
        "conformal": {"method": "APS", "alpha": calibrated.alpha, "confidence": calibrated.confidence,
                      "quantile": calibrated.calibration.conformal_quantile,
                      "test_coverage": test_outcome["set_coverage"],
                      "test_mean_set_size": test_outcome["mean_set_size"],
                      "groups": set_coverage.to_dict(orient="index")},
        "test_calibration_intervals": {when: dict(summary) for when, summary in intervals.items()},
        # Photos of classes the model never trained on, and the rule that should refuse them.
        "unseen_type": {"classes": sorted(unseen_rows["class"].unique()), "photos": len(unseen_rows),
                        **record["unseen_type"], "auroc": dict(aurocs),
                        # Known test photos flagged unseen_type: at most about alpha when the rule holds.
                        "test_false_alarm_rate": reasons["test"]["reasons"][predictor.UNSEEN_TYPE],
                        # Unseen-class photos given no known type (for any reason).
                        "unseen_not_answered": 1 - reasons["unseen"]["answered"]},
        "reasons": {split: {"reasons": dict(summary["reasons"]), "answered": summary["answered"],
                            "accuracy_answered": summary["accuracy_answered"]} for split, summary in reasons.items()},
        "classes_without_test_photos": list(untested),
        # Non-empty when a user's own split leaks (near-)copies across splits: test accuracy is inflated.
        "data_warnings": list(data_warnings),
    }
