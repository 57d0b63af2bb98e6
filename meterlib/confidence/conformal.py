"""Conformal prediction sets (APS): a set of classes that holds the true one with chosen probability.

Adaptive Prediction Sets (Romano, Sesia & Candes, 2020). A class's score is the probability
mass of the classes ranked above it plus ``u`` times its own probability. Calibration takes the
finite-sample (1 - alpha) quantile of the true classes' scores; a test image's set holds every
class whose score is within that quantile (``qhat``, or one threshold per class: see mondrian).

Any fixed ``u`` in [0, 1] makes a fixed score function, so coverage stays at least 1 - alpha.
``u = 0`` (the default, which stored checkpoints were calibrated with) scores every correct top
class 0: a model right on at least 1 - alpha of the calibration images gets qhat = 0 and answers
with single classes whatever its confidence. ``u = INFORMATIVE_U`` (0.5) scores a correct top
class by half its probability, so qhat separates confident from doubtful images and the doubtful
ones get more classes. Fixed, not drawn per photo: a photo gets the same set whatever its name or
order, and 03 and the Predictor need no shared seed. With u > 0 a very confident top class can
score above qhat, so sets always keep the top class: never empty, and coverage only rises.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from meterlib.confidence.calibration import CalibrationWarning, as_probs_and_labels
from meterlib.errors import DataError, SettingsError

INFORMATIVE_U = 0.5


def _class_scores(probs: np.ndarray, u: float) -> np.ndarray:
    # Score of every class: mass strictly ranked above it + u * its own probability.
    if not 0 <= u <= 1:
        raise SettingsError(f"u must lie in [0, 1], got {u}")
    order = np.argsort(-probs, axis=1, kind="stable")
    sorted_probs = np.take_along_axis(probs, order, axis=1)
    mass_above = np.cumsum(sorted_probs, axis=1) - sorted_probs
    scores_sorted = mass_above + u * sorted_probs
    scores = np.empty_like(probs)
    np.put_along_axis(scores, order, scores_sorted, axis=1)
    return scores


def aps_scores(probs, labels, *, u: float = 0.0) -> np.ndarray:
    """Conformity score of each image's true class (lower = more typical)."""
    probs, labels = as_probs_and_labels(probs, labels)
    return _class_scores(probs, u)[np.arange(labels.size), labels]


def conformal_quantile(scores, *, alpha: float, confidence: float | None = None,
                       what: str = "calibration images") -> float:
    """The finite-sample (1 - alpha) quantile of calibration scores; inf when too few scores.

    The rank is ceil((n + 1)(1 - alpha)) of n scores: coverage is at least 1 - alpha on average
    over calibration draws. With ``confidence`` (e.g. 0.9) it is the smallest rank k whose
    threshold covers at least 1 - alpha of new photos with that probability over the draw of
    these n scores, that is P(Binomial(n, 1 - alpha) >= k) <= 1 - confidence (training-conditional
    validity, Vovk 2012): one unlucky calibration split then rarely under-covers, at the price of
    larger sets. Too few scores for that keep the average rank; too few for any rank (beyond n)
    give inf. Both warn, naming the scores by ``what``.
    """
    if not 0 < alpha < 1:
        raise SettingsError(f"alpha must lie in (0, 1), got {alpha}")
    if confidence is not None and not 0 < confidence < 1:
        raise SettingsError(f"confidence must lie in (0, 1) or be None, got {confidence}")
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    n = scores.size
    rank = math.ceil((n + 1) * (1 - alpha))
    if rank > n:
        warnings.warn(f"{n} {what} cannot certify {1 - alpha:.0%} coverage (need at least "
                      f"{math.ceil((1 - alpha) / alpha)}); every class they stand for goes into every "
                      "prediction set", CalibrationWarning, stacklevel=2)
        return float("inf")
    if confidence is not None:
        confident = _confident_rank(n, alpha, confidence)
        if confident > n:
            needed = math.ceil(math.log(1 - confidence) / math.log(1 - alpha))
            warnings.warn(f"{n} {what} cannot certify {1 - alpha:.0%} coverage with {confidence:.0%} "
                          f"confidence (need at least {needed}); their threshold keeps it on average only",
                          CalibrationWarning, stacklevel=2)
        else:
            rank = confident
    return float(scores[rank - 1])


def _confident_rank(n: int, alpha: float, confidence: float) -> int:
    """Smallest rank k (n + 1 when none) with P(Binomial(n, 1 - alpha) >= k) <= 1 - confidence."""
    from scipy import stats

    ranks = np.arange(1, n + 1)
    certified = ranks[stats.binom.sf(ranks - 1, n, 1 - alpha) <= 1 - confidence]
    return int(certified[0]) if certified.size else n + 1


def calibrate_aps(probs, labels, *, alpha: float, u: float = 0.0) -> float:
    """Threshold (qhat) for APS sets with 1 - alpha coverage, from a calibration split."""
    return conformal_quantile(aps_scores(probs, labels, u=u), alpha=alpha)


def aps_prediction_sets(probs, qhat, *, u: float = 0.0) -> np.ndarray:
    """Boolean (n, k) membership of each class in each image's prediction set.

    ``qhat`` is one threshold or one per class; sets always hold the top class.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise DataError(f"expected probabilities of shape (n, classes), got {probs.shape}")
    scores = _class_scores(probs, u)
    sets = scores <= np.asarray(qhat, dtype=np.float64)
    # For u in [0, 1] the top class has the lowest score of its row.
    sets[np.arange(probs.shape[0]), scores.argmin(axis=1)] = True
    return sets


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
