"""Evaluation figures draw what they claim to draw."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from meterlib.confidence import calibration, selective
from meterlib.evaluate import figures

CLASSES = ["A", "B", "C", "D"]


def teardown_function():
    plt.close("all")


def test_confusion_matrices_show_only_classes_that_occur():
    fig = figures.plot_confusion_matrices([0, 0, 2], [0, 2, 2], class_names=CLASSES)
    counts, rates = fig.axes[:2]  # the colour bars come after the two heatmaps
    assert [t.get_text() for t in counts.get_yticklabels()] == ["A", "C"]
    assert "row-normalised" in rates.get_title()
    assert sorted(t.get_text() for t in counts.texts) == ["1", "1", "1"]
    assert sorted(t.get_text() for t in rates.texts) == ["0.50", "0.50", "1.00"]


def test_reliability_titles_carry_the_ece():
    probs = np.array([[0.9, 0.1], [0.6, 0.4]])
    bins = calibration.reliability_bins(probs, [0, 1])
    fig = figures.plot_reliability({"before": bins, "after": bins}, eces={"before": 0.25})
    assert [ax.get_title() for ax in fig.axes] == ["before: ECE 0.250", "after"]


def test_risk_coverage_and_confidence_histograms_label_their_data():
    curve = selective.risk_coverage_curve([0.9, 0.8, 0.3], [True, True, False])
    fig = figures.plot_risk_coverage({"val": curve}, threshold=0.8, target_accuracy=0.95)
    assert "threshold 0.80" in [t.get_text() for t in fig.axes[0].texts]
    fig = figures.plot_confidence_by_correctness([0.9, 0.8, 0.3], [True, True, False])
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["right (n=2, median 0.85)", "wrong (n=1, median 0.30)"]


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
    fig = figures.plot_unknown_scores({"energy": (np.array([3.0, 4.0]), np.array([1.0]))},
                                                 aurocs={"energy": 1.0})
    assert fig.axes[0].get_title() == "energy: AUROC 1.000"


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
    assert rates.images[0].get_array().max() <= 1.0


def test_most_confused_counts_mistakes_both_ways_then_support():
    counts = np.array([[5, 0, 0, 0], [0, 9, 0, 0], [2, 0, 1, 0], [0, 0, 0, 1]])
    assert figures.most_confused(counts, limit=2).tolist() == [0, 2]
    assert figures.most_confused(counts, limit=3).tolist() == [0, 1, 2]
