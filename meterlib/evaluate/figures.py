"""Figures that judge a model: confusions, reliability, confidence, risk-coverage, unseen types, mistakes, quality."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from sklearn.metrics import confusion_matrix

from meterlib.data.photos import load_thumbnail
from meterlib.errors import DataError

RIGHT, WRONG = "#55a868", "#c44e52"


def plot_confusion_matrices(labels, predictions, *, class_names: Sequence[str],
                            max_classes: int = 40):
    """Counts and row-normalised confusion heatmaps over the classes that occur in labels or predictions.

    With more than ``max_classes`` such classes only the most-confused ones are drawn (the title says so).
    """
    occurring = np.union1d(np.unique(labels), np.unique(predictions)).astype(int)
    counts = confusion_matrix(labels, predictions, labels=occurring)
    with np.errstate(invalid="ignore"):
        rates = counts / counts.sum(axis=1, keepdims=True)  # rows without images stay blank (NaN)
    keep = most_confused(counts, limit=max_classes)
    counts, rates = counts[np.ix_(keep, keep)], rates[np.ix_(keep, keep)]
    names = [class_names[i] for i in occurring[keep]]
    side = max(4.0, 0.28 * len(names) + 2)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1, side))
    small = len(names) <= 40
    for ax, matrix, title, fmt in ((axes[0], counts, "counts", "d"),
                                   (axes[1], rates, "row-normalised (recall on the diagonal)", ".2f")):
        # Only non-zero cells get a number: a grid of zeros would hide the mistakes.
        annot = [[format(value, fmt) if value else "" for value in row] for row in matrix] if small else False
        sns.heatmap(matrix.astype(float), mask=np.isnan(matrix.astype(float)), ax=ax, cmap="Blues",
                    vmin=0, vmax=None if fmt == "d" else 1, square=True, xticklabels=names, yticklabels=names,
                    annot=annot, fmt="", annot_kws={"fontsize": 5.5}, cbar_kws={"fraction": 0.046, "pad": 0.02})
        ax.tick_params(axis="x", labelrotation=90, labelsize=7)
        ax.tick_params(axis="y", labelrotation=0, labelsize=7)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(title)
    if len(keep) < len(occurring):
        fig.suptitle(f"the {len(keep)} most-confused of {len(occurring)} classes "
                     "(most images of other classes predicted as them, or of them as others)")
    fig.tight_layout()
    return fig


def most_confused(counts: np.ndarray, *, limit: int) -> np.ndarray:
    """Positions (ascending) of the ``limit`` classes with the most mistakes in a confusion matrix.

    A class's mistakes are its images predicted as another class plus other images predicted as
    it; ties go to the class with more images, then the earlier one.
    """
    counts = np.asarray(counts)
    wrong = counts.sum(axis=0) + counts.sum(axis=1) - 2 * np.diag(counts)
    order = np.lexsort((np.arange(len(counts)), -counts.sum(axis=1), -wrong))
    return np.sort(order[:limit])


def plot_reliability(tables: Mapping[str, pd.DataFrame], *, eces: Mapping[str, float] | None = None):
    """Reliability diagrams side by side (e.g. before/after temperature scaling) from reliability_bins tables."""
    fig, axes = plt.subplots(1, len(tables), figsize=(4.2 * len(tables), 4.2), squeeze=False)
    for ax, (name, bins) in zip(axes.flat, tables.items()):
        width = bins["upper"] - bins["lower"]
        filled = bins["count"] > 0
        ax.bar(bins["lower"][filled], bins["accuracy"][filled], width=width[filled], align="edge",
               color="#4c72b0", edgecolor="white", label="accuracy")
        ax.bar(bins["lower"][filled], bins["mean_confidence"][filled], width=width[filled],
               align="edge", fill=False, edgecolor=WRONG, linewidth=1.2, label="mean confidence")
        ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        title = name if not eces or name not in eces else f"{name}: ECE {eces[name]:.3f}"
        ax.set_title(title)
        ax.legend(loc="upper left", fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def plot_confidence_by_correctness(confidence, correct, *, bins: int = 20, title: str = "confidence"):
    """Histograms of top-class confidence for right and wrong predictions (each scaled to its own total)."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    groups = {f"{label} (n={mask.sum()}, median {np.median(confidence[mask]):.2f})": (confidence[mask], colour)
              for mask, colour, label in ((correct, RIGHT, "right"), (~correct, WRONG, "wrong")) if mask.any()}
    _share_histograms(ax, groups, bins=np.linspace(0, 1, bins + 1), fontsize=8)
    ax.set_xlabel(title)
    ax.set_ylabel("share of predictions")
    fig.tight_layout()
    return fig


def plot_risk_coverage(curves: Mapping[str, pd.DataFrame], *, threshold: float | None = None,
                       target_accuracy: float | None = None):
    """Selective accuracy against coverage for one or more risk_coverage_curve tables."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        ax.step(curve["coverage"], curve["accuracy"], where="post", label=name)
        if threshold is not None and not curve.empty:
            at = curve[curve["threshold"] >= threshold]
            if not at.empty:
                point = at.iloc[-1]
                ax.plot(point["coverage"], point["accuracy"], "o", color="black")
                ax.annotate(f"threshold {threshold:.2f}", (point["coverage"], point["accuracy"]),
                            textcoords="offset points", xytext=(-10, -14), ha="right", fontsize=8)
    if target_accuracy is not None:
        ax.axhline(target_accuracy, color="grey", linestyle=":", label=f"target {target_accuracy:.0%}")
    ax.set_xlabel("coverage (share of images answered)")
    ax.set_ylabel("accuracy of answered images")
    ax.set_xlim(0, 1.01)
    ax.legend(frameon=False, fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def plot_image_gallery(rows: pd.DataFrame, dataset_dir: str | os.PathLike, *, max_images: int = 24,
                       columns: int = 6, max_side: int = 160, words: tuple[str, str] = ("true", "pred")):
    """Thumbnails of result rows (e.g. the mistakes) captioned true / predicted / confidence.

    ``words`` name the two classes in the captions (e.g. "given" and "suggested" for suspect labels).
    """
    rows = rows.head(max_images)
    if rows.empty:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no images to show", ha="center", va="center")
        return fig
    n_rows = math.ceil(len(rows) / columns)
    fig, axes = plt.subplots(n_rows, columns, figsize=(1.9 * columns, 2.6 * n_rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, row in zip(axes.flat, rows.to_dict("records")):
        try:
            ax.imshow(load_thumbnail(Path(dataset_dir) / row["image"], max_side=max_side))
        except DataError as exc:
            ax.text(0.5, 0.5, exc.problem[:40], ha="center", va="center",
                    fontsize=6, transform=ax.transAxes)
        ax.set_title(f"{words[0]} {row['true_class']}\n{words[1]} {row['predicted_class']} "
                     f"{row['confidence']:.2f}", fontsize=7, color=WRONG if not row["correct"] else "black")
    fig.tight_layout()
    return fig


def plot_accuracy_by_property(tables: Mapping[str, pd.DataFrame], *, columns: int = 3):
    """One bar panel per image property: accuracy in each bin, the image count under each bar."""
    n = max(1, len(tables))
    n_rows = math.ceil(n / columns)
    fig, axes = plt.subplots(n_rows, min(columns, n), figsize=(3.6 * min(columns, n), 2.9 * n_rows),
                             squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (name, table) in zip(axes.flat, tables.items()):
        ax.set_axis_on()
        labels = [f"{value}\nn={count}" for value, count in zip(table[name], table["images"])]
        ax.bar(range(len(table)), table["accuracy"], color="#4c72b0")
        ax.set_xticks(range(len(table)), labels, rotation=30, ha="right", fontsize=7)
        ax.set_ylim(0, 1.05)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("accuracy")
    fig.tight_layout()
    return fig


def plot_unknown_scores(scores: Mapping[str, tuple[np.ndarray, np.ndarray]], *,
                        aurocs: Mapping[str, float] | None = None, bins: int = 30):
    """Per score: histograms for known-class images against images of classes the model never saw."""
    fig, axes = plt.subplots(1, len(scores), figsize=(4.2 * len(scores), 3.4), squeeze=False)
    for ax, (name, (known, unknown)) in zip(axes.flat, scores.items()):
        both = np.r_[known, unknown]
        # One value throughout (e.g. photos all of one size) still gets bins around it.
        low, high = (both.min(), both.max()) if both.size else (0.0, 1.0)
        edges = np.linspace(low, high, bins + 1) if high > low else np.linspace(low - 0.5, low + 0.5, bins + 1)
        groups = {f"{label} (n={len(values)})": (np.asarray(values), colour) for values, colour, label in
                  ((known, RIGHT, "known classes"), (unknown, WRONG, "unseen classes")) if len(values)}
        _share_histograms(ax, groups, bins=edges, fontsize=7)
        auroc = (aurocs or {}).get(name)
        ax.set_title(name if auroc is None else f"{name}: AUROC {auroc:.3f}", fontsize=9)
        ax.set_xlabel("score")
        ax.set_ylabel("share of images")
    fig.tight_layout()
    return fig


def plot_reason_scores(reason: str, scores: Mapping[str, tuple[np.ndarray, np.ndarray]], *,
                       limits: Mapping[str, float], bins: int = 30):
    """The scores one reason judges (``reasons.reason_scores``), known against unseen, each with its limit:
    a photo below the dashed line gets ``reason``."""
    fig = plot_unknown_scores(scores, bins=bins)
    for ax, name in zip(fig.axes, scores):
        ax.axvline(limits[name], color="black", linestyle="--", linewidth=1)
        ax.set_title(f"{name} ({reason} limit {limits[name]:.3g})", fontsize=9)
        ax.set_xlabel(name)
    fig.suptitle(reason, fontsize=10)
    fig.tight_layout()
    return fig


def _share_histograms(ax, groups: Mapping[str, tuple[np.ndarray, str]], *, bins, fontsize: float) -> None:
    """Overlaid histograms of {label: (values, colour)}, each summing to 1 so unequal groups compare."""
    frame = pd.DataFrame({"value": np.concatenate([values for values, _ in groups.values()] or [[]]),
                          "group": [label for label, (values, _) in groups.items() for _ in values]})
    if frame.empty:
        return
    sns.histplot(frame, x="value", hue="group", hue_order=list(groups), bins=bins, stat="probability",
                 common_norm=False, palette={label: colour for label, (_, colour) in groups.items()},
                 alpha=0.55, ax=ax)
    sns.move_legend(ax, "best", title=None, frameon=False, fontsize=fontsize)


def plot_suspect_labels(table: pd.DataFrame, dataset_dir: str | os.PathLike, *, max_images: int = 24):
    """Thumbnails of suspect labels (``suspects.suspect_labels``): given and suggested class, its probability."""
    rows = pd.DataFrame({"image": table["photo"], "true_class": table["given_class"],
                         "predicted_class": table["suggested_class"],
                         "confidence": table["suggested_probability"], "correct": False})
    return plot_image_gallery(rows, dataset_dir, max_images=max_images, words=("given", "suggested"))
