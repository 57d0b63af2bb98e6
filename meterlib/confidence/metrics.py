"""Calibration metrics of weighted photos: one row of weights per estimate, so that one call
scores the sample itself (weights all 1) or a thousand bootstrap resamples (weights = counts).

Inputs are already validated: ``probs`` (n, k), ``labels`` (n,) integer classes, ``weights``
(b, n) non-negative with positive row sums. Every function returns one value per weight row.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-12
METRICS = ("accuracy", "nll", "brier", "ece", "adaptive_ece", "debiased_l2_ce")


def equal_width_bins(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Index of each confidence's equal-width bin; bins are (lo, hi], with 0 put into the first."""
    return np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)


def equal_mass_bins(confidence: np.ndarray, weights: np.ndarray, n_bins: int) -> np.ndarray:
    """(b, n) bin of each photo per weight row: bins of equal total weight, in confidence order.

    A photo goes into the bin where its weighted rank starts, so all copies of a resampled photo
    share a bin; with unit weights photo i of n (by confidence) lands in bin floor(i * n_bins / n).
    """
    order = np.argsort(confidence, kind="stable")
    ranked = weights[:, order]
    before = np.cumsum(ranked, axis=1) - ranked
    total = ranked.sum(axis=1, keepdims=True)
    bins = np.empty(weights.shape, dtype=np.int64)
    bins[:, order] = np.minimum((before * n_bins / total).astype(np.int64), n_bins - 1)
    return bins


def _bin_sums(weights: np.ndarray, bins: np.ndarray, values: tuple[np.ndarray, ...],
              n_bins: int) -> list[np.ndarray]:
    # Per weight row and bin: the weighted sum of each value (bins may be (n,) or (b, n)).
    rows = weights.shape[0]
    flat = (np.arange(rows)[:, None] * n_bins + np.broadcast_to(bins, weights.shape)).ravel()
    return [np.bincount(flat, weights=(weights * v).ravel(), minlength=rows * n_bins).reshape(rows, n_bins)
            for v in values]


def _debiased_l2(count: np.ndarray, hits: np.ndarray, conf: np.ndarray, total: np.ndarray) -> np.ndarray:
    # Kumar, Liang & Ma (2019): per bin (conf - acc)^2 less the variance of the bin's accuracy.
    with np.errstate(invalid="ignore", divide="ignore"):
        acc, mean_conf = hits / count, conf / count
        term = (mean_conf - acc) ** 2 - acc * (1 - acc) / (count - 1)
    squared = (np.where(count > 1, term, 0.0) * count).sum(axis=1) / total
    return np.sqrt(np.maximum(squared, 0.0))


def weighted_metrics(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray, *,
                     n_bins: int) -> dict[str, np.ndarray]:
    """Every metric of METRICS for each weight row (see calibration.calibration_summary for meanings)."""
    rows = np.arange(labels.size)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    onehot = np.zeros_like(probs)
    onehot[rows, labels] = 1.0
    per_photo = {"accuracy": correct,
                 "nll": -np.log(np.clip(probs[rows, labels], _EPS, 1.0)),
                 "brier": ((probs - onehot) ** 2).sum(axis=1)}
    total = weights.sum(axis=1)
    scores = {name: weights @ values / total for name, values in per_photo.items()}
    hits, conf = _bin_sums(weights, equal_width_bins(confidence, n_bins), (correct, confidence), n_bins)
    scores["ece"] = np.abs(hits - conf).sum(axis=1) / total
    count, hits, conf = _bin_sums(weights, equal_mass_bins(confidence, weights, n_bins),
                                  (np.ones(labels.size), correct, confidence), n_bins)
    scores["adaptive_ece"] = np.abs(hits - conf).sum(axis=1) / total
    scores["debiased_l2_ce"] = _debiased_l2(count, hits, conf, total)
    return scores
