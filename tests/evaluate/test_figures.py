"""Evaluation figures draw what they claim to draw."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from meterlib.confidence import calibration, selective
from meterlib.evaluate import figures

CLASSES = ["A", "B", "C", "D"]


def teardown_function():
    plt.close("all")


def _numbers(ax) -> list[str]:
    return sorted(t.get_text() for t in ax.texts if t.get_text())


def test_confusion_matrices_show_only_classes_that_occur():
    fig = figures.plot_confusion_matrices([0, 0, 2], [0, 2, 2], class_names=CLASSES)
    assert len(fig.axes) == 4  # two heatmaps, then their colour bars
    counts, rates = fig.axes[:2]
    assert [t.get_text() for t in counts.get_yticklabels()] == ["A", "C"]
    assert [t.get_text() for t in counts.get_xticklabels()] == ["A", "C"]
    assert "row-normalised" in rates.get_title()
    assert counts.collections[0].get_array().size == 4  # 2 x 2 cells
    assert _numbers(counts) == ["1", "1", "1"]  # the zero cell stays blank
    assert _numbers(rates) == ["0.50", "0.50", "1.00"]


def test_a_class_without_images_has_a_blank_row_of_rates():
    fig = figures.plot_confusion_matrices([0, 0], [0, 1], class_names=CLASSES)
    rates = fig.axes[1]
    cells = rates.collections[0].get_array()
    assert cells.mask.tolist() == [[False, False], [True, True]]  # B was only predicted
    assert _numbers(rates) == ["0.50", "0.50"]


def test_reliability_titles_carry_the_ece():
    probs = np.array([[0.9, 0.1], [0.6, 0.4]])
    bins = calibration.reliability_bins(probs, [0, 1])
    fig = figures.plot_reliability({"before": bins, "after": bins}, eces={"before": 0.25})
    assert [ax.get_title() for ax in fig.axes] == ["before: ECE 0.250", "after"]


def test_risk_coverage_and_confidence_histograms_label_their_data():
    curve = selective.risk_coverage_curve([0.9, 0.8, 0.3], [True, True, False])
    fig = figures.plot_risk_coverage({"val": curve}, threshold=0.8, target_accuracy=0.95)
    assert "threshold 0.80" in [t.get_text() for t in fig.axes[0].texts]
    fig = figures.plot_confidence_by_correctness([0.9, 0.8, 0.3], [True, True, False], bins=10)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["right (n=2, median 0.85)", "wrong (n=1, median 0.30)"]
    assert len(ax.patches) == 2 * 10  # one bar per bin and group
    # Each group is scaled to its own total: right and wrong each sum to 1.
    assert sum(p.get_height() for p in ax.patches) == pytest.approx(2.0)
    assert ax.get_xlabel() == "confidence" and ax.get_ylabel() == "share of predictions"


def test_confidence_histogram_without_mistakes_draws_one_group():
    fig = figures.plot_confidence_by_correctness([0.9, 0.8], [True, True], bins=5)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["right (n=2, median 0.85)"]
    assert len(ax.patches) == 5 and sum(p.get_height() for p in ax.patches) == pytest.approx(1.0)


def test_gallery_captions_and_unreadable_files(tmp_path):
    Image.new("RGB", (20, 30), "white").save(tmp_path / "ok.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    rows = pd.DataFrame({"image": ["ok.png", "broken.jpg"], "true_class": ["A", "B"],
                         "predicted_class": ["B", "A"], "confidence": [0.61, 0.4], "correct": [False, False]})
    fig = figures.plot_image_gallery(rows, tmp_path, columns=2)
    assert fig.axes[0].get_title() == "true A\npred B 0.61" and len(fig.axes[0].images) == 1
    assert len(fig.axes[1].images) == 0 and fig.axes[1].texts


def test_accuracy_by_property_and_unknown_scores_panels():
    table = pd.DataFrame({"blur": ["low", "high"], "images": [3, 2], "accuracy": [1.0, 0.5]})
    fig = figures.plot_accuracy_by_property({"blur": table})
    assert fig.axes[0].get_title() == "blur" and [p.get_height() for p in fig.axes[0].patches] == [1.0, 0.5]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["low\nn=3", "high\nn=2"]
    fig = figures.plot_unknown_scores({"energy": (np.array([3.0, 4.0]), np.array([1.0])),
                                       "max-softmax": (np.array([0.9]), np.array([]))},
                                      aurocs={"energy": 1.0}, bins=6)
    energy, softmax = fig.axes
    assert energy.get_title() == "energy: AUROC 1.000" and softmax.get_title() == "max-softmax"
    assert [t.get_text() for t in energy.get_legend().get_texts()] == ["known classes (n=2)",
                                                                      "unseen classes (n=1)"]
    assert len(energy.patches) == 2 * 6 and sum(p.get_height() for p in energy.patches) == pytest.approx(2.0)
    assert [t.get_text() for t in softmax.get_legend().get_texts()] == ["known classes (n=1)"]


def test_confusion_matrices_of_many_classes_show_the_most_confused():
    rng = np.random.default_rng(0)
    names = [f"type {i:04d}" for i in range(1000)]
    labels = np.repeat(np.arange(1000), 3)
    predictions = labels.copy()
    confused = rng.choice(1000, size=60, replace=False)
    predictions[confused * 3] = (confused + 1) % 1000  # one mistake in each of 60 classes
    fig = figures.plot_confusion_matrices(labels, predictions, class_names=names)
    counts, rates = fig.axes[:2]
    shown = [t.get_text() for t in counts.get_yticklabels()]
    assert len(shown) == 40 and fig.get_size_inches().max() < 30
    assert fig.get_suptitle().startswith("the 40 most-confused of 1000 classes")
    assert set(shown) <= {names[i] for i in np.r_[confused, (confused + 1) % 1000]}
    assert counts.collections[0].get_array().size == 40 * 40
    assert rates.collections[0].get_array().max() <= 1.0


def test_most_confused_counts_mistakes_both_ways_then_support():
    counts = np.array([[5, 0, 0, 0], [0, 9, 0, 0], [2, 0, 1, 0], [0, 0, 0, 1]])
    assert figures.most_confused(counts, limit=2).tolist() == [0, 2]
    assert figures.most_confused(counts, limit=3).tolist() == [0, 1, 2]


def test_reason_scores_draw_each_limit_over_known_and_unseen_photos():
    scores = {"brightness": (np.array([0.5, 0.6, 0.7]), np.array([0.1])),
              "short_side": (np.array([120.0, 120.0]), np.array([120.0]))}  # one value throughout
    fig = figures.plot_reason_scores("poor_photo", scores, limits={"brightness": 0.2, "short_side": 100.0}, bins=5)
    brightness, short_side = fig.axes
    assert fig.get_suptitle() == "poor_photo"
    assert brightness.get_title() == "brightness (poor_photo limit 0.2)" and brightness.get_xlabel() == "brightness"
    assert [line.get_xdata()[0] for line in brightness.lines] == [0.2]
    assert [line.get_xdata()[0] for line in short_side.lines] == [100.0]
    assert [t.get_text() for t in brightness.get_legend().get_texts()] == ["known classes (n=3)",
                                                                          "unseen classes (n=1)"]
    # Equal values still get bins of some width (around the value), each group summing to 1.
    assert len(short_side.patches) == 2 * 5 and min(p.get_width() for p in short_side.patches) > 0
    assert sum(p.get_height() for p in short_side.patches) == pytest.approx(2.0)
