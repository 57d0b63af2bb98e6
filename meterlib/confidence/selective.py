"""Knowing when not to answer: risk-coverage, the UNKNOWN threshold, and unknown-class scores.

``confidence`` is each image's top-class probability and ``correct`` whether the top class was
right. An image is answered when its confidence is at or above the threshold, otherwise the
prediction is reported as UNKNOWN (``is_unknown``: the one place that rule lives).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from meterlib.confidence.calibration import softmax
from meterlib.errors import DataError, SettingsError

# The seed flagged predictions below 50% confidence; kept wherever no threshold was chosen.
DEFAULT_UNKNOWN_THRESHOLD = 0.5
MAX_DIGITS = 6  # decimals tried to tell a confidence from the threshold above it; closer is "just below"


def is_unknown(confidence, threshold: float) -> np.ndarray | np.bool_:
    """Whether to answer UNKNOWN: the (calibrated) top-class probability is below ``threshold``."""
    return np.asarray(confidence) < threshold


def _as_confidence_and_correct(confidence, correct) -> tuple[np.ndarray, np.ndarray]:
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if confidence.ndim != 1 or confidence.shape != correct.shape:
        raise DataError(f"confidence {confidence.shape} and correct {correct.shape} must be "
                        "1-D and of equal length")
    return confidence, correct


def risk_coverage_curve(confidence, correct) -> pd.DataFrame:
    """Per distinct threshold (highest first): coverage, selective accuracy and risk of answered images."""
    confidence, correct = _as_confidence_and_correct(confidence, correct)
    n = confidence.size
    columns = ["threshold", "answered", "coverage", "accuracy", "risk"]
    if not n:
        return pd.DataFrame(columns=columns)
    order = np.argsort(-confidence, kind="stable")
    conf_sorted, hits = confidence[order], np.cumsum(correct[order])
    # Images with equal confidence are answered together: keep the last index of each tie run.
    last_of_run = np.r_[conf_sorted[1:] != conf_sorted[:-1], True]
    answered = np.arange(1, n + 1)[last_of_run]
    accuracy = hits[last_of_run] / answered
    return pd.DataFrame({"threshold": conf_sorted[last_of_run], "answered": answered,
                         "coverage": answered / n, "accuracy": accuracy, "risk": 1.0 - accuracy},
                        columns=columns)


def area_under_risk_coverage(confidence, correct) -> float:
    """AURC: mean selective risk over all coverages, answering images one at a time (lower is better)."""
    confidence, correct = _as_confidence_and_correct(confidence, correct)
    if not confidence.size:
        return float("nan")
    curve = risk_coverage_curve(confidence, correct)
    # Within a tie run each image gets the run's risk, so ties do not depend on input order.
    per_image = np.repeat(curve["risk"].to_numpy(), np.diff(np.r_[0, curve["answered"].to_numpy()]))
    return float(per_image.mean())


def threshold_table(confidence, correct, *, thresholds=(0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
                    ) -> pd.DataFrame:
    """For each threshold: answered/unknown counts, coverage, accuracy of the answered, errors left."""
    confidence, correct = _as_confidence_and_correct(confidence, correct)
    rows = []
    for t in thresholds:
        answered = ~is_unknown(confidence, t)
        n_answered = int(answered.sum())
        rows.append({
            "threshold": float(t), "answered": n_answered, "unknown": int((~answered).sum()),
            "coverage": n_answered / confidence.size if confidence.size else float("nan"),
            "accuracy": float(correct[answered].mean()) if n_answered else float("nan"),
            "errors_answered": int((answered & ~correct).sum()),
            "correct_withheld": int((~answered & correct).sum()),
        })
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class ThresholdChoice:
    """The UNKNOWN threshold and what it achieved on the data it was chosen on."""

    threshold: float
    coverage: float
    accuracy: float
    target_met: bool


def choose_threshold(confidence, correct, *, target_accuracy: float) -> ThresholdChoice:
    """Lowest confidence threshold whose answered images reach ``target_accuracy`` (max coverage).

    When no threshold reaches the target, a warning names the best achievable accuracy and the
    threshold with that accuracy (the highest coverage among equals) is returned.
    """
    if not 0 < target_accuracy <= 1:
        raise SettingsError(f"target_accuracy must lie in (0, 1], got {target_accuracy}")
    curve = risk_coverage_curve(confidence, correct)
    if curve.empty:
        raise DataError("cannot choose a threshold without any images")
    meeting = curve[curve["accuracy"] >= target_accuracy]
    met = not meeting.empty
    if met:
        best = meeting.iloc[-1]  # rows run from high to low threshold: the last has most coverage
    else:
        best = curve[curve["accuracy"] == curve["accuracy"].max()].iloc[-1]
        warnings.warn(f"no confidence threshold reaches {target_accuracy:.1%} accuracy; the best "
                      f"is {best['accuracy']:.1%} at threshold {best['threshold']:.3f}",
                      UserWarning, stacklevel=2)
    return ThresholdChoice(float(best["threshold"]), float(best["coverage"]),
                           float(best["accuracy"]), met)


def max_softmax_score(logits, *, temperature: float = 1.0) -> np.ndarray:
    """Top-class probability; higher means more likely a known class."""
    return softmax(logits, temperature=temperature).max(axis=1)


def energy_score(logits, *, temperature: float = 1.0) -> np.ndarray:
    """Negative free energy T * logsumexp(logits / T); higher means more likely a known class."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    top = z.max(axis=1)
    return temperature * (top + np.log(np.exp(z - top[:, None]).sum(axis=1)))


def separation_auroc(high_scores, low_scores) -> float:
    """AUROC of a score separating two groups, e.g. known vs unseen or right vs wrong (1 perfect, 0.5 chance)."""
    from sklearn.metrics import roc_auc_score  # here: the predict command never needs sklearn

    high = np.asarray(high_scores, dtype=np.float64)
    low = np.asarray(low_scores, dtype=np.float64)
    if not high.size or not low.size:
        return float("nan")
    is_high = np.r_[np.ones(high.size), np.zeros(low.size)]
    return float(roc_auc_score(is_high, np.r_[high, low]))


def told_apart(low: float, high: float, *, digits: int, percent: bool = False) -> tuple[str, str] | None:
    """``low`` and ``high`` printed with the fewest decimals (``digits`` at least) that differ; None if none do.

    Rounding never reverses an order, so printed apart they also read in the right order:
    0.8996 below 0.9 is shown as "0.8996" and "0.9000", not as "0.90" and "0.90".
    """
    kind = "%" if percent else "f"
    for shown in range(digits, MAX_DIGITS + 1):
        pair = f"{low:.{shown}{kind}}", f"{high:.{shown}{kind}}"
        if pair[0] != pair[1]:
            return pair
    return None
