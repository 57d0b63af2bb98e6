"""Figures that show a dataset: class counts, one photo per class, samples, quality, flagged files."""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from meterlib.data.flags import has_flag, is_unusable, parse_flags
from meterlib.data.photos import load_thumbnail
from meterlib.errors import DataError

SPLIT_COLOURS = {"train": "#4c72b0", "val": "#dd8452", "test": "#55a868", "excluded": "#c44e52"}
# Informational flags describe a file's format; the gallery shows only the quality problems.
GALLERY_SKIPS = ("grayscale", "alpha", "palette", "cmyk", "16bit", "exif_rotated")
# Beyond this many classes a figure shows the largest ones and says how many it leaves out,
# so its size (and the notebook's) stays bounded for any number of classes.
MAX_CLASSES = 40


def largest(counts: pd.Series, *, limit: int) -> list:
    """The index labels of the ``limit`` largest counts (ties by label), largest first."""
    return sorted(counts.index, key=lambda label: (-counts[label], str(label)))[:limit]


def _left_out(shown: int, total: int) -> str:
    return "" if shown >= total else f"the {shown} largest of {total} classes shown"


def plot_class_counts(manifest: pd.DataFrame, *, classes: list[str] | None = None,
                      max_classes: int = MAX_CLASSES):
    """Horizontal bars of photos per class, stacked by split (the largest ``max_classes`` classes)."""
    table = pd.crosstab(manifest["class"], manifest["split"])
    table = table.reindex(columns=[c for c in SPLIT_COLOURS if c in table.columns])
    if classes is not None:
        table = table.reindex(sorted(set(classes) | set(table.index) - {""}), fill_value=0)
    total, n_classes = int(table.to_numpy().sum()), len(table)
    table = table.loc[largest(table.sum(axis=1), limit=max_classes)[::-1]]
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.22 * len(table) + 1)))
    left = np.zeros(len(table))
    for split in table.columns:
        ax.barh(table.index.astype(str), table[split], left=left, color=SPLIT_COLOURS[split],
                label=split)
        left += table[split].to_numpy()
    ax.set_xlabel("photos")
    note = _left_out(len(table), n_classes)
    ax.set_title(f"{total} files in {n_classes} classes" + (f"\n({note})" if note else ""))
    ax.legend(loc="lower right", frameon=False)
    ax.margins(y=0.01)
    return fig


def _usable(manifest: pd.DataFrame, *, max_classes: int | None = None) -> pd.DataFrame:
    usable = manifest[~is_unusable(manifest)]
    if max_classes is None:
        return usable
    return usable[usable["class"].isin(largest(usable["class"].value_counts(), limit=max_classes))]


def _show_thumbnail(ax, path: Path, *, title: str, max_side: int, error: str = "") -> None:
    """The photo, or the reason it cannot be shown: ``error`` (then it is not opened) or its own."""
    ax.set_axis_off()
    # A file the audit could not read is not opened again (it may be a FIFO that blocks).
    if not error:
        try:
            ax.imshow(load_thumbnail(path, max_side=max_side))
        except DataError as exc:
            error = exc.problem
    if error:
        ax.text(0.5, 0.5, error[:40], ha="center", va="center", fontsize=6, wrap=True,
                transform=ax.transAxes)
    ax.set_title(title, fontsize=7)


def _grid(n: int, *, columns: int, cell: tuple[float, float]):
    rows = max(1, math.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(cell[0] * columns, cell[1] * rows),
                             squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    return fig, axes.flat


def plot_contact_sheet(manifest: pd.DataFrame, dataset_dir: str | os.PathLike, *,
                       columns: int = 8, max_side: int = 160, max_classes: int = MAX_CLASSES):
    """One photo per class (of the largest ``max_classes``): its first usable, unflagged photo."""
    usable = _usable(manifest, max_classes=max_classes).sort_values(["class", "path"])
    clean = usable[usable["flags"].fillna("") == ""]
    picks = pd.concat([clean, usable]).drop_duplicates("class").sort_values("class")
    fig, axes = _grid(len(picks), columns=columns, cell=(1.3, 2.0))
    for ax, row in zip(axes, picks.to_dict("records")):
        _show_thumbnail(ax, Path(dataset_dir) / row["path"], title=row["class"], max_side=max_side)
    note = _left_out(len(picks), _usable(manifest)["class"].nunique())
    fig.suptitle("one photo per class" + (f" ({note})" if note else ""), y=1.0)
    fig.tight_layout()
    return fig


def plot_class_samples(manifest: pd.DataFrame, dataset_dir: str | os.PathLike, *,
                       per_class: int = 5, seed: int = 0, max_side: int = 96,
                       max_classes: int = MAX_CLASSES):
    """A row of randomly chosen photos for every class (of the largest ``max_classes``)."""
    usable = _usable(manifest, max_classes=max_classes)
    classes = sorted(usable["class"].unique())
    fig, axes = plt.subplots(max(1, len(classes)), per_class,
                             figsize=(0.75 * per_class, 1.15 * max(1, len(classes))), squeeze=False)
    for r, cls in enumerate(classes):
        rows = usable[usable["class"] == cls].sort_values("path")
        rows = rows.sample(n=min(per_class, len(rows)), random_state=seed).sort_values("path")
        for c in range(per_class):
            ax = axes[r, c]
            ax.set_axis_off()
            if c < len(rows):
                _show_thumbnail(ax, Path(dataset_dir) / rows["path"].iat[c], title="",
                                max_side=max_side)
        axes[r, 0].text(-0.1, 0.5, cls, ha="right", va="center", fontsize=8,
                        transform=axes[r, 0].transAxes)
    note = _left_out(len(classes), _usable(manifest)["class"].nunique())
    if note:
        fig.suptitle(note, fontsize=8)
    fig.tight_layout()
    return fig


def plot_size_and_quality(files: pd.DataFrame, settings: dict):
    """Histograms of photo size, brightness, contrast and sharpness, with the flag thresholds."""
    readable = files[files["error"].fillna("") == ""]
    panels = [("width", "width (px)", None), ("height", "height (px)", None),
              ("brightness", "mean brightness (0-1)", settings.get("dark_below")),
              ("contrast", "contrast (std, 0-1)", settings.get("low_contrast_below")),
              ("sharpness", "sharpness (Laplacian variance, log)", settings.get("blurry_below"))]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 2.6))
    for ax, (column, label, threshold) in zip(axes, panels):
        values = readable[column].astype(float).to_numpy()
        if column == "sharpness":
            values = np.log10(np.maximum(values, 1e-3))
            threshold = math.log10(threshold) if threshold else None
        ax.hist(values, bins=30, color="#4c72b0")
        if threshold is not None:
            ax.axvline(threshold, color="#c44e52", linestyle="--", label="flag below")
            ax.legend(frameon=False, fontsize=7)
        ax.set_xlabel(label, fontsize=8)
    axes[0].set_ylabel("photos")
    fig.tight_layout()
    return fig


def plot_flagged(files: pd.DataFrame, dataset_dir: str | os.PathLike, *, per_flag: int = 6,
                 max_side: int = 128):
    """A row of example files for every problem flag (unreadable files show their error)."""
    present = sorted(set().union(*files["flags"].map(parse_flags)) - set(GALLERY_SKIPS))
    if not present:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no flagged files", ha="center", va="center")
        return fig
    fig, axes = plt.subplots(len(present), per_flag, figsize=(1.3 * per_flag, 1.8 * len(present)),
                             squeeze=False)
    for r, flag in enumerate(present):
        rows = files[has_flag(files, flag)].head(per_flag)
        for c in range(per_flag):
            ax = axes[r, c]
            ax.set_axis_off()
            if c < len(rows):
                path, error = rows["path"].iat[c], rows["error"].fillna("").iat[c]
                _show_thumbnail(ax, Path(dataset_dir) / path, title=Path(path).name[:18],
                                max_side=max_side, error=error)
        axes[r, 0].text(-0.1, 0.5, flag, ha="right", va="center", fontsize=8,
                        transform=axes[r, 0].transAxes)
    fig.tight_layout()
    return fig

