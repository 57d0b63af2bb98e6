"""Scoring predictions: summary metrics, per-class report, confusions and the image-wise results table."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support, recall_score

from meterlib.confidence.calibration import as_probs_and_labels

# The seed's audit CSV starts with these columns; keep them first and in this order.
SEED_COLUMNS = ["image", "true_class", "predicted_class", "confidence", "correct"]
RESULTS_COLUMNS = SEED_COLUMNS + [
    "top2_class", "top2_confidence", "top3_class", "top3_confidence",
    "calibrated_confidence", "unknown", "prediction_set", "set_size",
]
SET_SEPARATOR = "|"


def top_k_accuracy(probs, labels, *, k: int) -> float:
    """Fraction of images whose true class is among the k most probable (k capped at the class count)."""
    probs, labels = as_probs_and_labels(probs, labels)
    if not labels.size:
        return float("nan")
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def classification_metrics(probs, labels) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro-F1 and top-3 accuracy over the classes present in ``labels``.

    Classes without images in this split have no recall to average, so balanced accuracy and
    macro-F1 average over the classes that do appear (as the seed's 24 test classes).
    """
    probs, labels = as_probs_and_labels(probs, labels)
    predictions = probs.argmax(axis=1)
    present = np.unique(labels)
    return {
        "images": int(labels.size),
        "classes_present": int(present.size),
        "accuracy": float((predictions == labels).mean()) if labels.size else float("nan"),
        # Balanced accuracy = mean recall over the present classes (sklearn's own function warns
        # whenever a class is predicted that has no images here).
        "balanced_accuracy": float(recall_score(labels, predictions, labels=present, average="macro",
                                                zero_division=0)) if labels.size else float("nan"),
        "macro_f1": float(f1_score(labels, predictions, labels=present, average="macro",
                                   zero_division=0)) if labels.size else float("nan"),
        "top3_accuracy": top_k_accuracy(probs, labels, k=3),
    }


def per_class_report(labels, predictions, *, class_names: Sequence[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support for every class; classes without images are marked."""
    k = len(class_names)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=np.arange(k), zero_division=np.nan)
    predicted = np.bincount(np.asarray(predictions, dtype=np.int64), minlength=k)
    report = pd.DataFrame({"class": list(class_names), "precision": precision, "recall": recall,
                           "f1": f1, "support": support, "predicted": predicted})
    # Recall and F1 are undefined without images of the class; say so instead of printing 0.
    report.loc[report["support"] == 0, ["recall", "f1"]] = np.nan
    report["note"] = np.where(report["support"] == 0, "no images in this split", "")
    return report


def most_confused_pairs(labels, predictions, *, class_names: Sequence[str], top: int = 10) -> pd.DataFrame:
    """The most frequent (true, predicted) mistakes with their share of the true class's images."""
    k = len(class_names)
    matrix = confusion_matrix(labels, predictions, labels=np.arange(k))
    support = matrix.sum(axis=1)
    np.fill_diagonal(matrix, 0)
    true_idx, pred_idx = np.nonzero(matrix)
    pairs = pd.DataFrame({
        "true_class": [class_names[i] for i in true_idx],
        "predicted_class": [class_names[j] for j in pred_idx],
        "count": matrix[true_idx, pred_idx],
        "share_of_true_class": matrix[true_idx, pred_idx] / support[true_idx],
    })
    return (pairs.sort_values(["count", "share_of_true_class", "true_class"],
                              ascending=[False, False, True], kind="stable")
            .head(top).reset_index(drop=True))


def results_table(*, images: Sequence[str], true_classes: Sequence[str], class_names: Sequence[str],
                  probs, calibrated_probs, unknown_threshold: float, prediction_sets) -> pd.DataFrame:
    """The image-wise audit table: the seed's five columns, then top-2/3, calibration, UNKNOWN and sets.

    ``confidence`` and the top-2/3 probabilities are the model's own softmax (comparable with the
    seed); ``calibrated_confidence`` uses the fitted temperature and decides ``unknown``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    calibrated = np.asarray(calibrated_probs, dtype=np.float64)
    sets = np.asarray(prediction_sets, dtype=bool)
    n, k = probs.shape
    if calibrated.shape != probs.shape or sets.shape != probs.shape or len(class_names) != k:
        raise ValueError("probs, calibrated_probs, prediction_sets and class_names disagree in shape")
    if len(images) != n or len(true_classes) != n:
        raise ValueError(f"{len(images)} images and {len(true_classes)} true classes for {n} rows")
    names = np.asarray(class_names, dtype=object)
    order = np.argsort(-probs, axis=1, kind="stable")
    ranked = np.take_along_axis(probs, order, axis=1)

    def ranked_class(rank: int):
        return names[order[:, rank]] if rank < k else np.full(n, None, dtype=object)

    def ranked_prob(rank: int):
        return ranked[:, rank] if rank < k else np.full(n, np.nan)

    predicted = ranked_class(0)
    top_calibrated = calibrated[np.arange(n), order[:, 0]] if n else np.empty(0)
    set_order = np.argsort(-calibrated, axis=1, kind="stable")
    members = [SET_SEPARATOR.join(names[j] for j in row if sets[i, j]) for i, row in enumerate(set_order)]
    table = pd.DataFrame({
        "image": list(images),
        "true_class": list(true_classes),
        "predicted_class": predicted,
        "confidence": ranked_prob(0),
        "correct": predicted == np.asarray(true_classes, dtype=object),
        "top2_class": ranked_class(1), "top2_confidence": ranked_prob(1),
        "top3_class": ranked_class(2), "top3_confidence": ranked_prob(2),
        "calibrated_confidence": top_calibrated,
        "unknown": top_calibrated < unknown_threshold,
        "prediction_set": members,
        "set_size": sets.sum(axis=1),
    }, columns=RESULTS_COLUMNS)
    table["correct"] = table["correct"].astype(bool)
    return table


def _quantile_bins(values: pd.Series, bins: int) -> pd.Series:
    # A value shared by more than a bin's worth of images (e.g. "no blur at all": 0) is a bin of
    # its own, listed first; quantile bins split the rest, so that value cannot swallow them.
    top_value, top_count = values.value_counts().index[0], values.value_counts().iloc[0]
    if top_count <= len(values) / bins:
        return pd.qcut(values, q=bins, duplicates="drop")
    rest = values != top_value
    cut = pd.qcut(values[rest], q=max(1, bins - 1), duplicates="drop")
    point = f"{top_value:g}"
    labels = pd.Series(point, index=values.index, dtype=object)
    labels[rest] = cut.astype(str)
    return pd.Series(pd.Categorical(labels, categories=[point, *map(str, cut.cat.categories)], ordered=True),
                     index=values.index, name=values.name)


def accuracy_by_bins(values, correct, *, bins: int = 4, name: str = "value") -> pd.DataFrame:
    """Accuracy per bin of an image property (quantile bins; one row per value when few distinct)."""
    frame = pd.DataFrame({name: values, "correct": np.asarray(correct, dtype=bool)}).dropna()
    if frame.empty:
        return pd.DataFrame(columns=[name, "images", "accuracy"])
    if frame[name].nunique() <= bins or not pd.api.types.is_numeric_dtype(frame[name]):
        key = frame[name]
    else:
        key = _quantile_bins(frame[name], bins)
    grouped = frame.groupby(key, observed=True)["correct"].agg(images="size", accuracy="mean")
    return grouped.reset_index()


def accuracy_by_properties(frame: pd.DataFrame, columns: Sequence[str], *, correct: str = "correct",
                           bins: int = 4) -> dict[str, pd.DataFrame]:
    """accuracy_by_bins for each listed column of ``frame`` that varies (constant columns are skipped)."""
    return {name: accuracy_by_bins(frame[name], frame[correct], bins=bins, name=name)
            for name in columns if name in frame and frame[name].nunique(dropna=True) > 1}
