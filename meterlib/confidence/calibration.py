"""Is the confidence honest? Calibration metrics and temperature scaling.

Conventions: ``logits`` and ``probs`` are (n, k) arrays over the checkpoint's classes in order,
``labels`` are integer class indices. A class absent from a split simply never appears in its
labels; nothing here needs every class to be present.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from meterlib.errors import DataError, SettingsError
from meterlib.confidence import metrics

# Temperatures outside this range mean the fit ran away (no errors to learn from, or garbage).
TEMPERATURE_RANGE = (0.05, 20.0)


class CalibrationWarning(UserWarning):
    """The calibration data cannot support a trustworthy fit; a fallback was used."""


def _as_logits(logits) -> np.ndarray:
    arr = np.asarray(logits, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise DataError(f"expected logits of shape (n, classes), got {arr.shape}")
    return arr


def as_probs_and_labels(probs, labels) -> tuple[np.ndarray, np.ndarray]:
    """Validate an (n, k) probability array and n integer labels; return them as arrays."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2:
        raise DataError(f"expected probabilities of shape (n, classes), got {probs.shape}")
    if labels.shape != (probs.shape[0],):
        raise DataError(f"{labels.shape[0] if labels.ndim else 0} labels for {probs.shape[0]} rows")
    if labels.size and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise DataError(f"labels must lie in 0..{probs.shape[1] - 1}")
    return probs, labels.astype(np.int64)


def softmax(logits, *, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` (numerically stable, float64)."""
    if not temperature > 0:
        raise SettingsError(f"temperature must be positive, got {temperature}")
    z = _as_logits(logits) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def reliability_bins(probs, labels, *, n_bins: int = 15) -> pd.DataFrame:
    """Top-label reliability table: per equal-width confidence bin, count, accuracy and mean confidence."""
    probs, labels = as_probs_and_labels(probs, labels)
    _check_bins(n_bins)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    index = metrics.equal_width_bins(confidence, n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    count = np.bincount(index, minlength=n_bins)
    hits = np.bincount(index, weights=correct, minlength=n_bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame({
            "lower": edges[:-1], "upper": edges[1:], "count": count,
            "accuracy": np.where(count > 0, hits / count, np.nan),
            "mean_confidence": np.where(count > 0, conf_sum / count, np.nan),
        })


def _check_bins(n_bins: int) -> None:
    if n_bins < 1:
        raise SettingsError(f"n_bins must be at least 1, got {n_bins}")


def _metric(probs, labels, name: str, n_bins: int = 15) -> float:
    # One metric of the photos themselves (every weight 1); NaN without photos.
    probs, labels = as_probs_and_labels(probs, labels)
    _check_bins(n_bins)
    if not labels.size:
        return float("nan")
    weights = np.ones((1, labels.size))
    return float(metrics.weighted_metrics(probs, labels, weights, n_bins=n_bins)[name][0])


def expected_calibration_error(probs, labels, *, n_bins: int = 15) -> float:
    """ECE: count-weighted mean |accuracy - confidence| over equal-width top-label bins."""
    return _metric(probs, labels, "ece", n_bins)


def adaptive_calibration_error(probs, labels, *, n_bins: int = 15) -> float:
    """Adaptive ECE: as ECE, over ``n_bins`` bins that each hold the same number of photos."""
    return _metric(probs, labels, "adaptive_ece", n_bins)


def debiased_calibration_error(probs, labels, *, n_bins: int = 15) -> float:
    """Debiased top-label L2 calibration error (Kumar, Liang & Ma 2019), over equal-mass bins.

    sqrt(max(0, sum_b w_b * [(conf_b - acc_b)^2 - acc_b (1 - acc_b) / (n_b - 1)])), where w_b is
    the share of photos in bin b, conf_b and acc_b its mean confidence and accuracy and n_b its size
    (bins of one photo count 0). The subtracted term is the sampling variance of acc_b, which the
    plain estimate adds on average: near 0 for a calibrated model even on few photos, where ECE
    stays well above 0. A root mean square, so for the same gaps it reads at least as high as ECE.
    """
    return _metric(probs, labels, "debiased_l2_ce", n_bins)


def max_calibration_error(probs, labels, *, n_bins: int = 15) -> float:
    """MCE: the largest |accuracy - confidence| over non-empty bins."""
    bins = reliability_bins(probs, labels, n_bins=n_bins)
    filled = bins[bins["count"] > 0]
    if filled.empty:
        return float("nan")
    return float((filled["accuracy"] - filled["mean_confidence"]).abs().max())


def negative_log_likelihood(probs, labels) -> float:
    """Mean negative log probability of the true class."""
    return _metric(probs, labels, "nll")


def brier_score(probs, labels) -> float:
    """Multiclass Brier score: mean over images of sum_k (p_k - onehot_k)^2 (0 best, 2 worst)."""
    return _metric(probs, labels, "brier")


def calibration_summary(probs, labels, *, n_bins: int = 15) -> dict[str, float]:
    """ECE, MCE, NLL, Brier and accuracy in one dict."""
    return {
        "ece": expected_calibration_error(probs, labels, n_bins=n_bins),
        "mce": max_calibration_error(probs, labels, n_bins=n_bins),
        "nll": negative_log_likelihood(probs, labels),
        "brier": brier_score(probs, labels),
        "accuracy": _metric(probs, labels, "accuracy"),
    }


@dataclass(frozen=True)
class TemperatureFit:
    """The outcome of temperature scaling: the temperature to use and why."""

    temperature: float
    fitted: bool  # False: the fallback T = 1 was used, see ``reason``
    reason: str
    n_samples: int
    nll_before: float
    nll_after: float


def _nll_slope(logits: np.ndarray, labels: np.ndarray, beta: float) -> float:
    # d/d(beta) of the mean NLL of softmax(beta * logits); it increases with beta (convexity).
    p = softmax(logits * beta)
    rows = np.arange(labels.size)
    return float(((p * logits).sum(axis=1) - logits[rows, labels]).mean())


def fit_temperature(logits, labels, *, min_samples: int = 30, n_bins: int = 15) -> TemperatureFit:
    """Fit the temperature T > 0 that minimises validation NLL of softmax(logits / T).

    The NLL is convex in 1/T, so its slope is monotone and the optimum is found by a bracketed
    root search. Fallback T = 1 (probabilities as trained) with a CalibrationWarning when the
    split has fewer than ``min_samples`` images; when the optimum lies outside TEMPERATURE_RANGE
    (e.g. a split without errors, where the NLL keeps falling as T -> 0 and a fit would make
    every later mistake look certain); or when the fitted T raises the split's ECE (``n_bins``
    bins), which on a small split means the fit chases noise.
    """
    logits = _as_logits(logits)
    probs_before = softmax(logits)
    probs_before, labels = as_probs_and_labels(probs_before, labels)
    n = int(labels.size)
    nll_before = negative_log_likelihood(probs_before, labels)

    def fallback(reason: str) -> TemperatureFit:
        warnings.warn(f"temperature scaling skipped, keeping T = 1: {reason}", CalibrationWarning,
                      stacklevel=3)
        return TemperatureFit(1.0, False, reason, n, nll_before, nll_before)

    if n < max(min_samples, 1):
        return fallback(f"only {n} calibration images (need at least {min_samples})")
    beta_lo, beta_hi = 1.0 / TEMPERATURE_RANGE[1], 1.0 / TEMPERATURE_RANGE[0]
    slope_lo, slope_hi = _nll_slope(logits, labels, beta_lo), _nll_slope(logits, labels, beta_hi)
    if slope_hi <= 0:  # exactly 0 once the probabilities saturate at 1
        errors = int((probs_before.argmax(axis=1) != labels).sum())
        return fallback(f"NLL still falls at T = {TEMPERATURE_RANGE[0]} ({errors} errors in {n} "
                        "images): too few mistakes to tell how confident the model should be")
    if slope_lo >= 0:
        return fallback(f"NLL still falls at T = {TEMPERATURE_RANGE[1]}: the predictions carry "
                        "almost no information on this split")
    from scipy import optimize  # here: serving photos never needs scipy

    beta = optimize.brentq(lambda b: _nll_slope(logits, labels, b), beta_lo, beta_hi, xtol=1e-10)
    temperature = 1.0 / beta
    probs_after = softmax(logits, temperature=temperature)
    ece_before = expected_calibration_error(probs_before, labels, n_bins=n_bins)
    ece_after = expected_calibration_error(probs_after, labels, n_bins=n_bins)
    if ece_after > ece_before:
        return fallback(f"the fitted T = {temperature:.2f} lowers NLL but raises ECE from "
                        f"{ece_before:.3f} to {ece_after:.3f} on these {n} images")
    nll_after = negative_log_likelihood(probs_after, labels)
    return TemperatureFit(float(temperature), True, "fitted on the calibration split by minimising NLL",
                          n, nll_before, nll_after)
