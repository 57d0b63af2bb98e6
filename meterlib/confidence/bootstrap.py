"""Error bars for the calibration metrics: percentile bootstrap over photos.

A test split of a few hundred photos gives an accuracy or an ECE that would move by points on
another draw of photos; the interval says by how much. Resamples are drawn as counts per photo
(one row of weights each), so all of them are scored in a few vectorised passes.

The binned calibration errors (ece, adaptive_ece) read high on few photos, and a resample, which
repeats photos, reads them higher still: on a small, well calibrated split their interval can lie
above the value. The debiased error (debiased_l2_ce) is the one to judge such a split by.
"""

from __future__ import annotations

import numpy as np

from meterlib.confidence import metrics
from meterlib.confidence.calibration import as_probs_and_labels
from meterlib.errors import SettingsError


def bootstrap_weights(n: int, *, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) counts: how often each of ``n`` photos is drawn into each resample of ``n``."""
    if n_boot < 1:
        raise SettingsError(f"n_boot must be at least 1, got {n_boot}")
    draws = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    flat = (np.arange(n_boot)[:, None] * n + draws).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def summary_with_intervals(probs, labels, *, n_bins: int = 15, n_boot: int = 1000, seed: int = 0,
                           level: float = 0.95) -> dict[str, dict[str, float]]:
    """Each metric of ``metrics.METRICS`` as {"value", "low", "high"}: the estimate and its interval.

    ``low`` and ``high`` are the (1 - level) / 2 and (1 + level) / 2 percentiles of the metric over
    ``n_boot`` resamples of the photos (drawn with ``seed``); all NaN without photos.
    """
    probs, labels = as_probs_and_labels(probs, labels)
    if not 0 < level < 1:
        raise SettingsError(f"level must lie in (0, 1), got {level}")
    if n_bins < 1:
        raise SettingsError(f"n_bins must be at least 1, got {n_bins}")
    if not labels.size:
        return {name: dict.fromkeys(("value", "low", "high"), float("nan")) for name in metrics.METRICS}
    value = metrics.weighted_metrics(probs, labels, np.ones((1, labels.size)), n_bins=n_bins)
    resampled = metrics.weighted_metrics(probs, labels, bootstrap_weights(labels.size, n_boot=n_boot, seed=seed),
                                         n_bins=n_bins)
    tails = 100 * np.array([(1 - level) / 2, (1 + level) / 2])
    summary = {}
    for name in metrics.METRICS:
        low, high = np.percentile(resampled[name], tails)
        summary[name] = {"value": float(value[name][0]), "low": float(low), "high": float(high)}
    return summary
