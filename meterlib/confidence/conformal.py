"""Conformal prediction sets (APS): a set of classes that holds the true one with chosen probability.

Adaptive Prediction Sets (Romano, Sesia & Candes, 2020). A class's score is the probability
mass of the classes ranked above it plus ``u`` times its own probability. Calibration takes the
finite-sample (1 - alpha) quantile of the true classes' scores; a test image's set holds every
class whose score is within that quantile. With ``u`` uniform on [0, 1) (randomized) coverage is
1 - alpha on average (up to 1/(n+1)) but a set may be empty. With ``u = 0`` (deterministic, the
default: the same image always gets the same set) coverage is at least 1 - alpha, the top class
is always in the set, and a model already right on at least 1 - alpha of the calibration images
answers with single classes. (``u = 1`` would put classes of zero probability into the sets of
confident models, since their cumulative mass ties at 1.)
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from meterlib.confidence.calibration import CalibrationWarning, as_probs_and_labels


def _tie_breaks(n: int, randomized: bool, rng: np.random.Generator | None) -> np.ndarray:
    if not randomized:
        return np.zeros(n)
    if rng is None:
        raise ValueError("randomized APS needs an rng (np.random.default_rng(seed))")
    return rng.uniform(size=n)


def _class_scores(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    # Score of every class: mass strictly ranked above it + u * its own probability.
    order = np.argsort(-probs, axis=1, kind="stable")
    sorted_probs = np.take_along_axis(probs, order, axis=1)
    mass_above = np.cumsum(sorted_probs, axis=1) - sorted_probs
    scores_sorted = mass_above + u[:, None] * sorted_probs
    scores = np.empty_like(probs)
    np.put_along_axis(scores, order, scores_sorted, axis=1)
    return scores


def aps_scores(probs, labels, *, randomized: bool = False,
               rng: np.random.Generator | None = None) -> np.ndarray:
    """Conformity score of each image's true class (lower = more typical)."""
    probs, labels = as_probs_and_labels(probs, labels)
    u = _tie_breaks(labels.size, randomized, rng)
    return _class_scores(probs, u)[np.arange(labels.size), labels]


def conformal_quantile(scores, *, alpha: float) -> float:
    """The finite-sample (1 - alpha) quantile of calibration scores; inf when too few scores."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    n = scores.size
    rank = math.ceil((n + 1) * (1 - alpha))
    if rank > n:
        warnings.warn(f"{n} calibration images cannot certify {1 - alpha:.0%} coverage "
                      f"(need at least {math.ceil((1 - alpha) / alpha)}); every class goes into "
                      "every prediction set", CalibrationWarning, stacklevel=2)
        return float("inf")
    return float(scores[rank - 1])


def calibrate_aps(probs, labels, *, alpha: float, randomized: bool = False,
                  rng: np.random.Generator | None = None) -> float:
    """Threshold (qhat) for APS sets with 1 - alpha coverage, from a calibration split."""
    return conformal_quantile(aps_scores(probs, labels, randomized=randomized, rng=rng), alpha=alpha)


def aps_prediction_sets(probs, qhat: float, *, randomized: bool = False,
                        rng: np.random.Generator | None = None) -> np.ndarray:
    """Boolean (n, k) membership of each class in each image's prediction set."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"expected probabilities of shape (n, classes), got {probs.shape}")
    u = _tie_breaks(probs.shape[0], randomized, rng)
    return _class_scores(probs, u) <= qhat


def empirical_coverage(sets, labels) -> float:
    """Fraction of images whose prediction set holds the true class."""
    sets = np.asarray(sets, dtype=bool)
    labels = np.asarray(labels, dtype=np.int64)
    if not labels.size:
        return float("nan")
    return float(sets[np.arange(labels.size), labels].mean())


def mean_set_size(sets) -> float:
    """Average number of classes per prediction set."""
    sets = np.asarray(sets, dtype=bool)
    return float(sets.sum(axis=1).mean()) if sets.shape[0] else float("nan")
