"""Photos whose class label is probably wrong, found by confident learning (cleanlab).

It reads out-of-fold probabilities: each photo scored by a model that did not train on it, so a
wrong label cannot have been learnt. Nothing here changes a label or a file; the table is for a
person to look at the photos.

How photos are chosen: confident learning (Northcutt, Jiang & Chuang, 2021) counts a photo as
confidently of class j when its probability of j reaches the mean probability that the photos
labelled j get. From those counts, calibrated to the label counts (cleanlab's
``num_label_issues(estimation_method="off_diagonal_calibrated")``), comes the number of wrong
labels to expect; the photos whose given label gets the lowest probability (cleanlab's
self-confidence) are that many suspects, less any the model itself assigns to the given label.
On the demo data with planted label swaps this ranking found more of them than the normalized
margin did, and cleanlab's default filter flagged far more clean photos; benchmarks/bench_suspects.py
measures how many swaps the list finds and how many clean photos it flags.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from meterlib.confidence import calibration
from meterlib.errors import DataError

# A class's photos set its confidence threshold; and out of fold, a class's only photo is scored
# by a model that never saw the class.
MIN_PHOTOS_PER_CLASS = 2
_SUM_TOLERANCE = 1e-3
COLUMNS = ["photo", "given_class", "suggested_class", "label_quality", "given_probability",
           "suggested_probability"]


def _checked(pred_probs, labels, class_names: Sequence[str], photos: Sequence) -> tuple[np.ndarray, np.ndarray]:
    probs = np.array(pred_probs, dtype=np.float64)  # a copy: the caller's array is never touched
    labels = np.array(labels)
    if probs.ndim != 2 or probs.shape[1] != len(class_names):
        raise DataError(f"pred_probs must have one column per class ({len(class_names)}), got {probs.shape}")
    if labels.shape != (probs.shape[0],) or len(photos) != probs.shape[0]:
        raise DataError(f"need one label and one photo per row: {probs.shape[0]} rows, "
                         f"{labels.size} labels, {len(photos)} photos")
    in_range = not labels.size or 0 <= labels.min() <= labels.max() < len(class_names)
    if not np.issubdtype(labels.dtype, np.integer) or not in_range:
        raise DataError(f"labels must be class indices in 0..{len(class_names) - 1}")
    counts = np.bincount(labels, minlength=len(class_names))
    few = [f"{class_names[i]!r} ({counts[i]})" for i in np.flatnonzero(counts < MIN_PHOTOS_PER_CLASS)]
    if few:
        raise DataError(f"confident learning needs at least {MIN_PHOTOS_PER_CLASS} photos of every class; "
                         f"too few for {', '.join(few)}: leave those classes out or add photos")
    sums = probs.sum(axis=1)
    if not np.isfinite(probs).all() or probs.min() < 0 or np.abs(sums - 1).max() > _SUM_TOLERANCE:
        raise DataError("pred_probs must be probabilities (softmax outputs): finite, >= 0, each row "
                         f"summing to 1 (rows sum to {sums.min():.4f}..{sums.max():.4f})")
    return probs / sums[:, None], labels.astype(np.int64)


def suspect_labels(pred_probs, labels, *, class_names: Sequence[str], photos: Sequence) -> pd.DataFrame:
    """Photos whose given label is probably wrong, most suspect first, with the class the model suggests.

    ``pred_probs`` (n, classes) are out-of-fold probabilities, ``labels`` the given class indices,
    ``photos`` one identifier (e.g. path) per row. ``label_quality`` is the probability of the given
    label (cleanlab's self-confidence): near 0 the model is sure the label is wrong.
    """
    from cleanlab.count import num_label_issues  # imported here: cleanlab takes seconds to import
    from cleanlab.rank import get_label_quality_scores

    probs, labels = _checked(pred_probs, labels, class_names, photos)
    expected = int(num_label_issues(labels, probs, estimation_method="off_diagonal_calibrated"))
    quality = get_label_quality_scores(labels, probs, method="self_confidence")
    rows = np.arange(labels.size)
    others = probs.copy()
    others[rows, labels] = -1.0
    suggested = others.argmax(axis=1)
    chosen = np.argsort(quality, kind="stable")[:expected]
    chosen = chosen[probs[chosen].argmax(axis=1) != labels[chosen]]
    names = np.asarray(class_names, dtype=object)
    return pd.DataFrame({
        "photo": [photos[i] for i in chosen],
        "given_class": names[labels[chosen]],
        "suggested_class": names[suggested[chosen]],
        "label_quality": quality[chosen],
        "given_probability": probs[chosen, labels[chosen]],
        "suggested_probability": probs[chosen, suggested[chosen]],
    }, columns=COLUMNS)


def suspect_table(content: dict, *, temperature: float) -> tuple[pd.DataFrame | None, str]:
    """``suspect_labels`` among a checkpoint's training photos out of fold, or None and why not."""
    oof = content.get("out_of_fold")
    if oof is None:
        return None, "skipped: the checkpoint holds no out-of-fold predictions (02 made none)"
    # The final model's features separate the classes far better than the phase-1 folds' heads, so
    # they rank suspects when 02 stored them (a weak model flags many clean photos).
    probs = (oof["feature_probs"].double().numpy() if "feature_probs" in oof
             else calibration.softmax(oof["logits"].double().numpy(), temperature=temperature))
    try:
        table = suspect_labels(probs, oof["labels"].numpy(), class_names=content["class_names"],
                               photos=oof["photos"])
    except ValueError as exc:  # a DataError, e.g. a class with fewer than MIN_PHOTOS_PER_CLASS photos
        return None, f"skipped: {exc}"
    return table, f"{len(table)} suspect labels among {len(probs)} training photos"
