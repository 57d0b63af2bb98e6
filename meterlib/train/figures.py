"""Figures of a training run: augmented samples and learning curves."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd


def plot_augmented_grid(images: Sequence, titles: Sequence[str], *, views: int = 4, augment=None):
    """Each row: a photo as the model sees it at eval time, then ``views`` random augmentations."""
    rows = len(images)
    fig, axes = plt.subplots(rows, views + 1, figsize=(1.5 * (views + 1), 1.6 * rows), squeeze=False)
    for row, (image, title) in enumerate(zip(images, titles)):
        shown = [image] + [augment(image) if augment else image for _ in range(views)]
        for col, picture in enumerate(shown):
            ax = axes[row, col]
            ax.imshow(picture)
            ax.set_axis_off()
            if col == 0:
                ax.set_title(title[:22], fontsize=7)
            elif row == 0:
                ax.set_title(f"augmented {col}", fontsize=7)
    fig.tight_layout()
    return fig


def plot_learning_curves(history: pd.DataFrame, *, best_epoch: int | None = None):
    """Loss and accuracy per epoch for train and val, the phase boundary and the kept epoch marked."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, metric in ((ax_loss, "loss"), (ax_acc, "acc")):
        ax.plot(history["epoch"], history[f"train_{metric}"], marker="o", ms=3, label="train (augmented)")
        if history[f"val_{metric}"].notna().any():
            ax.plot(history["epoch"], history[f"val_{metric}"], marker="o", ms=3, label="val")
        phase2 = history.loc[history["phase"] == 2, "epoch"]
        if len(phase2):
            ax.axvline(phase2.min() - 0.5, color="grey", ls=":", lw=1)
        if best_epoch:
            ax.axvline(best_epoch, color="green", ls="--", lw=1, label=f"kept (epoch {best_epoch})")
        ax.set_xlabel("epoch (dotted line: fine-tuning starts)")
        ax.set_ylabel("accuracy" if metric == "acc" else "cross-entropy")
    ax_acc.set_ylim(0, 1.02)
    ax_acc.legend(frameon=False, fontsize=8, loc="lower right")
    ax_loss.xaxis.get_major_locator().set_params(integer=True)
    ax_acc.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return fig
