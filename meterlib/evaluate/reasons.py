"""Why the served answers name no type: the scores that tell unseen types from known ones, and each reason's share.

Every score here is higher for a photo that looks known, so ``selective.separation_auroc(known, unseen)``
reads 1 for a perfect separation and 0.5 for chance. The known photos are the test photos; the
unseen ones are photos of classes the model never trained on (01's holdout classes).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from meterlib.confidence import photo_limits, selective
from meterlib.confidence.fitted import Calibration
from meterlib.evaluate import scoring
from meterlib.serve.predictor import POOR_PHOTO, REASONS, UNSEEN_TYPE, UNSURE, Evidence, Prediction

MAX_SOFTMAX, ENERGY, SIMILARITY, FUSED = "max-softmax", "energy", "k-NN similarity", "fused p-value"
SCORES = (MAX_SOFTMAX, ENERGY, SIMILARITY, FUSED)  # in the order 03 reports them

Pair = tuple[np.ndarray, np.ndarray]  # a score's values on (known, unseen) photos


def scores(evidence: Evidence, calibration: Calibration) -> dict[str, np.ndarray]:
    """Each unknown-type score of photos that ``calibration`` can compute (similarity: reference features;
    fused p-value: also an unseen-type rule), at its temperature."""
    temperature = calibration.temperature
    found = {MAX_SOFTMAX: selective.max_softmax_score(evidence.logits, temperature=temperature),
             ENERGY: selective.energy_score(evidence.logits, temperature=temperature)}
    if evidence.similarity is not None:
        found[SIMILARITY] = np.asarray(evidence.similarity, dtype=np.float64)
        if calibration.unseen_type is not None:
            found[FUSED] = calibration.unseen_type.p_value(evidence.logits, evidence.similarity,
                                                           temperature=temperature)
    return found


def unseen_scores(known: Evidence, unseen: Evidence, calibration: Calibration) -> dict[str, Pair]:
    """Each score available on both groups of photos, as (known values, unseen values)."""
    on_known, on_unseen = scores(known, calibration), scores(unseen, calibration)
    return {name: (on_known[name], on_unseen[name]) for name in on_known if name in on_unseen}


def aurocs(pairs: Mapping[str, Pair]) -> dict[str, float]:
    """Each score's AUROC of known against unseen photos (NaN when a group has no photos)."""
    return {name: selective.separation_auroc(known, unseen) for name, (known, unseen) in pairs.items()}


def reason_summary(predictions: Sequence[Prediction], true_classes: Sequence[str]) -> dict:
    """The share of photos each reason refuses, the share answered and the accuracy of the answered ones."""
    outcome = scoring.answer_summary(predictions, true_classes)
    given = [p.reason for p in predictions]
    return {"reasons": {reason: given.count(reason) / len(given) if given else math.nan for reason in REASONS},
            "answered": outcome["coverage"], "accuracy_answered": outcome["accuracy_answered"]}


def reason_table(summaries: Mapping[str, Mapping]) -> pd.DataFrame:
    """``reason_summary`` of each split (e.g. test, unseen) side by side: a row per reason, then answered."""
    return pd.DataFrame({split: {**summary["reasons"], "answered": summary["answered"],
                                 "accuracy of answered": summary["accuracy_answered"]}
                         for split, summary in summaries.items()})


def reason_scores(known: Evidence, unseen: Evidence,
                  calibration: Calibration) -> dict[str, tuple[dict[str, Pair], dict[str, float]]]:
    """Per reason the served calibration can give: the scores it judges, as (known, unseen) values, and
    each score's limit (a photo below it gets the reason)."""
    found = {}
    if calibration.photo_limits is not None and known.quality is not None and unseen.quality is not None:
        limits = calibration.photo_limits
        found[POOR_PHOTO] = ({name: (_measure(known, name), _measure(unseen, name)) for name in photo_limits.MEASURES},
                             {name: getattr(limits, name) for name in photo_limits.MEASURES})
    pairs = unseen_scores(known, unseen, calibration)
    if FUSED in pairs:
        found[UNSEEN_TYPE] = ({FUSED: pairs[FUSED]}, {FUSED: calibration.unseen_type.alpha})
    found[UNSURE] = ({"calibrated confidence": pairs[MAX_SOFTMAX]},
                     {"calibrated confidence": calibration.unknown_threshold})
    return found


def _measure(evidence: Evidence, name: str) -> np.ndarray:
    return np.array([measures[name] for measures in evidence.quality], dtype=np.float64)
