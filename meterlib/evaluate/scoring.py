"""Scoring predictions: summary metrics, per-class report, confusions and the image-wise results table."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support, recall_score

from meterlib.confidence.calibration import as_probs_and_labels
from meterlib.errors import DataError
from meterlib.serve.predictor import Prediction

# The seed's audit CSV starts with these columns; keep them first and in this order.
SEED_COLUMNS = ["image", "true_class", "predicted_class", "confidence", "correct"]
RESULTS_COLUMNS = SEED_COLUMNS + [
    "top2_class", "top2_confidence", "top3_class", "top3_confidence",
    "calibrated_confidence", "unknown", "reason", "prediction_set", "set_size",
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


def results_table(predictions: Sequence[Prediction], *, images: Sequence[str], true_classes: Sequence[str],
                  class_names: Sequence[str], probs) -> pd.DataFrame:
    """The image-wise audit table of the Predictor's answers: the seed's five columns, then the rest.

    ``predictions`` come from ``Predictor.predictions`` (top 3). ``confidence`` and the
    top-2/3 probabilities are the model's own softmax ``probs`` (comparable with the seed);
    ``calibrated_confidence``, ``unknown``, its ``reason`` (empty when answered) and the prediction set
    are the Predictor's answer.
    """
    probs = np.asarray(probs, dtype=np.float64)
    n = len(predictions)
    if probs.shape != (n, len(class_names)):
        raise DataError(f"probs {probs.shape} do not fit {n} predictions over {len(class_names)} classes")
    if len(images) != n or len(true_classes) != n:
        raise DataError(f"{len(images)} images and {len(true_classes)} true classes for {n} rows")
    column = {name: j for j, name in enumerate(class_names)}

    def ranked(rank: int) -> tuple[list, list]:
        classes = [p.top_classes[rank] if rank < len(p.top_classes) else None for p in predictions]
        return classes, [np.nan if c is None else probs[i, column[c]] for i, c in enumerate(classes)]

    (first, confidence), (second, second_confidence), (third, third_confidence) = map(ranked, range(3))
    table = pd.DataFrame({
        "image": list(images),
        "true_class": list(true_classes),
        "predicted_class": first,
        "confidence": confidence,
        "correct": [c == t for c, t in zip(first, true_classes)],
        "top2_class": second, "top2_confidence": second_confidence,
        "top3_class": third, "top3_confidence": third_confidence,
        "calibrated_confidence": [p.confidence for p in predictions],
        "unknown": [p.unknown for p in predictions],
        "reason": [p.reason or "" for p in predictions],
        "prediction_set": [SET_SEPARATOR.join(p.prediction_set) for p in predictions],
        "set_size": [len(p.prediction_set) for p in predictions],
    }, columns=RESULTS_COLUMNS)
    table["correct"] = table["correct"].astype(bool)
    return table


def answer_summary(predictions: Sequence[Prediction], true_classes: Sequence[str]) -> dict[str, float]:
    """What the Predictor's answers achieve: accuracy, share answered (not UNKNOWN), set coverage and size."""
    true_classes = list(true_classes)
    if len(true_classes) != len(predictions):
        raise DataError(f"{len(true_classes)} true classes for {len(predictions)} predictions")
    if not predictions:
        return dict.fromkeys(["accuracy", "coverage", "accuracy_answered", "set_coverage", "mean_set_size",
                              "single_class_sets"], float("nan"))
    correct = np.array([p.top_classes[0] == t for p, t in zip(predictions, true_classes)])
    answered = ~np.array([p.unknown for p in predictions])
    sizes = np.array([len(p.prediction_set) for p in predictions])
    return {
        "accuracy": float(correct.mean()),
        "coverage": float(answered.mean()),
        "accuracy_answered": float(correct[answered].mean()) if answered.any() else float("nan"),
        "set_coverage": float(np.mean([t in p.prediction_set for p, t in zip(predictions, true_classes)])),
        "mean_set_size": float(sizes.mean()),
        "single_class_sets": float(np.mean(sizes == 1)),
    }


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
