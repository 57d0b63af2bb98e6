"""A static figure of the panel's answers, for the executed notebook and reports/figures."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt

from meterlib.data.listing import shown_name
from meterlib.panel.answers import PanelAnswer


def plot_answers(answers: Sequence[PanelAnswer]):
    """One row per answered photo: the photo, its heat-map, the top classes as bars (an UNKNOWN's with its reason)."""
    shown = [answer for answer in answers if answer.ok]
    fig, axes = plt.subplots(max(len(shown), 1), 3, figsize=(9, 2.8 * max(len(shown), 1)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1, 1.6]})
    for row, answer in zip(axes, shown):
        p = answer.prediction
        row[0].imshow(answer.preview)
        row[0].set_title(shown_name(answer.name), fontsize=9)
        if answer.heatmap is not None:
            row[1].imshow(answer.heatmap)
            row[1].set_title("heat-map", fontsize=9)
        for ax in row[:2]:
            ax.axis("off")
        colours = ["tab:red" if p.unknown else "tab:blue"] + ["tab:gray"] * (len(p.top_classes) - 1)
        row[2].barh([shown_name(name) for name in p.top_classes[::-1]], p.top_probabilities[::-1], color=colours[::-1])
        row[2].set_xlim(0, 1)
        row[2].axvline(answer.threshold, color="tab:red", linestyle="--", linewidth=1)
        verdict = (f"{p.label}, {p.reason} ({p.confidence:.1%}, best guess {shown_name(p.top_classes[0])})"
                   if p.unknown else f"{shown_name(p.label)} ({p.confidence:.1%})")
        row[2].set_title(f"{verdict}; dashed: UNKNOWN threshold", fontsize=9)
    if not shown:
        axes[0, 0].text(0.5, 0.5, "no photo answered", ha="center", va="center")
        for ax in axes[0]:
            ax.axis("off")
    fig.tight_layout()
    return fig
