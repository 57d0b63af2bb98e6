"""Prediction sets that keep their promise per class-size group (Mondrian conformal prediction).

One marginal threshold reaches 1 - alpha coverage on average over photos, which the many photos
of large classes dominate: the classes with few photos, where the model errs most, get less.
Here classes fall into size groups, each group gets its own quantile from the calibration photos
whose true class is in it, and class y enters a set iff its APS score is within the quantile of
y's group. Then coverage is at least 1 - alpha for the photos of each group (Vovk et al., 2003), on
average over calibration draws, or with a chosen probability for this draw (``confidence``).

A group with too few calibration photos to certify 1 - alpha gets an infinite quantile, with a
CalibrationWarning: its classes go into every set. The marginal quantile would be no fallback:
it is the very threshold that under-covers small classes, and nothing was measured to say more.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from meterlib.confidence.calibration import as_probs_and_labels
from meterlib.confidence.conformal import INFORMATIVE_U, aps_prediction_sets, aps_scores, conformal_quantile
from meterlib.errors import DataError, SettingsError

SIZE_GROUPS = ("small", "medium", "large")


def size_groups(photo_counts, *, small_below: int = 28, large_from: int = 50) -> np.ndarray:
    """Each class's size group from its photo count: small, medium or large.

    The defaults are the split rule's min_images_test and min_images_val: given each class's usable
    photos (as 01 counts them), small classes are the train-only ones (no test photos), medium ones
    also have test photos and large ones val photos too. Other counts (e.g. training photos) work
    with thresholds in the same unit.
    """
    counts = np.asarray(photo_counts)
    if counts.ndim != 1 or (counts.size and counts.min() < 0):
        raise DataError("photo_counts must be one count >= 0 per class")
    if not 0 <= small_below <= large_from:
        raise SettingsError(f"need 0 <= small_below <= large_from, got {small_below} and {large_from}")
    index = (counts >= small_below).astype(int) + (counts >= large_from)
    return np.array(SIZE_GROUPS, dtype=object)[index]


def _group_array(groups, n_classes: int) -> np.ndarray:
    groups = np.asarray(groups, dtype=object)
    if groups.shape != (n_classes,):
        raise DataError(f"expected one group per class ({n_classes}), got shape {groups.shape}")
    return groups


def _ordered(groups: np.ndarray) -> list:
    # Size groups in size order, any other group names after them, sorted.
    return sorted(set(groups), key=lambda g: (SIZE_GROUPS.index(g) if g in SIZE_GROUPS else len(SIZE_GROUPS), str(g)))


def calibrate_mondrian(probs, labels, groups, *, alpha: float, u: float = INFORMATIVE_U,
                       confidence: float | None = None) -> dict[str, float]:
    """One APS quantile per group, from the calibration photos whose true class is in that group.

    ``groups`` names each class's group (e.g. ``size_groups``); a group short of calibration photos
    gets inf (see the module docstring). ``confidence``: see ``conformal.conformal_quantile``.
    """
    probs, labels = as_probs_and_labels(probs, labels)
    groups = _group_array(groups, probs.shape[1])
    scores = aps_scores(probs, labels, u=u)
    photo_group = groups[labels]
    return {group: conformal_quantile(scores[photo_group == group], alpha=alpha, confidence=confidence,
                                      what=f"calibration photos of {group!r} classes")
            for group in _ordered(groups)}


def class_thresholds(quantiles: dict[str, float], groups) -> np.ndarray:
    """Each class's score threshold: the quantile of its group (aps_prediction_sets takes these)."""
    groups = np.asarray(groups, dtype=object)
    missing = set(groups) - set(quantiles)
    if missing:
        raise DataError(f"no quantile for group(s) {sorted(map(str, missing))}")
    return np.array([quantiles[group] for group in groups], dtype=np.float64)


def mondrian_prediction_sets(probs, quantiles: dict[str, float], groups, *,
                             u: float = INFORMATIVE_U) -> np.ndarray:
    """Boolean (n, k) sets: class y is in iff its score is within its group's quantile (top class always)."""
    probs = np.asarray(probs, dtype=np.float64)
    groups = _group_array(groups, probs.shape[-1])
    return aps_prediction_sets(probs, class_thresholds(quantiles, groups), u=u)


def coverage_by_group(sets, labels, groups) -> pd.DataFrame:
    """Per group of the true class, then "all": photos, coverage and mean set size (NaN without photos)."""
    sets = np.asarray(sets, dtype=bool)
    labels = np.asarray(labels, dtype=np.int64)
    groups = _group_array(groups, sets.shape[1])
    covered = sets[np.arange(labels.size), labels]
    sizes = sets.sum(axis=1)
    photo_group = groups[labels]
    masks = {group: photo_group == group for group in _ordered(groups)}
    masks["all"] = np.ones(labels.size, dtype=bool)
    rows = {group: {"photos": int(mask.sum()),
                    "coverage": float(covered[mask].mean()) if mask.any() else np.nan,
                    "mean_set_size": float(sizes[mask].mean()) if mask.any() else np.nan}
            for group, mask in masks.items()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("group")
