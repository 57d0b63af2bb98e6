"""Summary metrics, per-class report, confusions and the results table."""

import numpy as np
import pandas as pd
import pytest

from meterlib.evaluate import scoring

CLASSES = ["ALPHA", "BETA", "GAMMA", "DELTA"]  # DELTA has no images in this split
PROBS = np.array([[0.7, 0.2, 0.1, 0.0],
                  [0.6, 0.3, 0.05, 0.05],
                  [0.1, 0.8, 0.1, 0.0],
                  [0.35, 0.4, 0.25, 0.0],
                  [0.1, 0.1, 0.8, 0.0]])
LABELS = np.array([0, 1, 1, 2, 2])  # image 1 (BETA) -> ALPHA, image 3 (GAMMA) -> BETA


def test_classification_metrics_by_hand():
    m = scoring.classification_metrics(PROBS, LABELS)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["balanced_accuracy"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    # F1: ALPHA p=1/2 r=1 -> 2/3; BETA p=1/2 r=1/2 -> 1/2; GAMMA p=1 r=1/2 -> 2/3.
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)
    assert m["top3_accuracy"] == 1.0
    assert scoring.top_k_accuracy(PROBS, LABELS, k=1) == pytest.approx(3 / 5)
    assert scoring.top_k_accuracy(PROBS, LABELS, k=2) == pytest.approx(4 / 5)
    assert m["classes_present"] == 3 and m["images"] == 5


def test_per_class_report_marks_classes_without_images():
    report = scoring.per_class_report(LABELS, PROBS.argmax(axis=1), class_names=CLASSES)
    assert report["class"].tolist() == CLASSES
    assert report["support"].tolist() == [1, 2, 2, 0]
    assert report["predicted"].tolist() == [2, 2, 1, 0]
    delta = report.set_index("class").loc["DELTA"]
    assert np.isnan(delta["recall"]) and np.isnan(delta["f1"]) and delta["note"] == "no images in this split"
    assert report.loc[2, "precision"] == 1.0 and report.loc[2, "recall"] == 0.5


def test_most_confused_pairs():
    labels = [0, 0, 0, 1, 1, 2]
    preds = [1, 1, 0, 0, 1, 1]
    pairs = scoring.most_confused_pairs(labels, preds, class_names=CLASSES[:3], top=2)
    assert pairs[["true_class", "predicted_class", "count"]].values.tolist() == [
        ["ALPHA", "BETA", 2], ["GAMMA", "BETA", 1]]  # GAMMA->BETA: 1 of 1 beats BETA->ALPHA: 1 of 2
    assert pairs["share_of_true_class"].tolist() == pytest.approx([2 / 3, 1.0])


def _table(**overrides):
    calibrated = np.array([[0.5, 0.3, 0.2, 0.0]] * 5)
    sets = calibrated > 0.25
    kwargs = dict(images=[f"img{i}.jpg" for i in range(5)], true_classes=[CLASSES[i] for i in LABELS],
                  class_names=CLASSES, probs=PROBS, calibrated_probs=calibrated,
                  unknown_threshold=0.5, prediction_sets=sets)
    kwargs.update(overrides)
    return scoring.results_table(**kwargs)


def test_results_table_starts_with_the_seed_columns(tmp_path):
    table = _table()
    assert table.columns.tolist()[:5] == ["image", "true_class", "predicted_class", "confidence", "correct"]
    assert table.columns.tolist() == scoring.RESULTS_COLUMNS
    path = tmp_path / "results.csv"
    table.to_csv(path, index=False)
    assert pd.read_csv(path).columns.tolist() == scoring.RESULTS_COLUMNS


def test_results_table_values():
    row = _table().iloc[3]  # GAMMA image predicted BETA 0.4, then ALPHA 0.35, GAMMA 0.25
    assert (row["predicted_class"], row["confidence"], bool(row["correct"])) == ("BETA", 0.4, False)
    assert (row["top2_class"], row["top2_confidence"]) == ("ALPHA", 0.35)
    assert (row["top3_class"], row["top3_confidence"]) == ("GAMMA", 0.25)
    assert row["calibrated_confidence"] == 0.3  # calibrated probability of the predicted class
    assert bool(row["unknown"]) and row["prediction_set"] == "ALPHA|BETA" and row["set_size"] == 2
    assert _table()["correct"].tolist() == [True, False, True, False, True]


def test_results_table_with_two_classes_leaves_top3_empty():
    probs = np.array([[0.4, 0.6]])
    table = scoring.results_table(images=["a.jpg"], true_classes=["B"], class_names=["A", "B"],
                                     probs=probs, calibrated_probs=probs, unknown_threshold=0.5,
                                     prediction_sets=np.array([[False, True]]))
    assert table.loc[0, "top3_class"] is None and np.isnan(table.loc[0, "top3_confidence"])
    assert table.loc[0, "top2_class"] == "A" and not table.loc[0, "unknown"]


def test_results_table_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="4 images and 5 true classes"):
        _table(images=["a"] * 4)


def test_accuracy_by_bins():
    values = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    correct = [True, True, True, True, True, False, False, False]
    table = scoring.accuracy_by_bins(values, correct, bins=2, name="blur")
    assert table["images"].tolist() == [4, 4] and table["accuracy"].tolist() == [1.0, 0.25]
    few = scoring.accuracy_by_bins([0, 0, 1, 1], [True, False, True, True], bins=4, name="occluded")
    assert few["occluded"].tolist() == [0, 1] and few["accuracy"].tolist() == [0.5, 1.0]


def test_accuracy_by_properties_skips_constant_and_missing_columns():
    frame = pd.DataFrame({"blur": [0.1, 0.9, 0.2, 0.8], "jpeg": [90] * 4, "correct": [True, False, True, True]})
    tables = scoring.accuracy_by_properties(frame, ["blur", "jpeg", "absent"], bins=2)
    assert list(tables) == ["blur"] and tables["blur"]["accuracy"].tolist() == [1.0, 0.5]


def test_metrics_do_not_warn_when_a_class_without_images_is_predicted(recwarn):
    probs = np.array([[0.1, 0.9], [0.8, 0.2]])
    m = scoring.classification_metrics(probs, np.array([0, 0]))  # class 1 predicted, never true
    assert m["balanced_accuracy"] == 0.5 and m["macro_f1"] == pytest.approx(2 / 3)
    assert not [w for w in recwarn if "y_pred contains classes" in str(w.message)]


def test_a_common_value_gets_its_own_bin_before_the_quantiles():
    blur = [0.0] * 6 + [1.0, 2.0, 3.0, 4.0]  # most photos not blurred at all
    correct = [True] * 6 + [True, True, False, False]
    table = scoring.accuracy_by_bins(blur, correct, bins=3, name="blur")
    assert [str(v) for v in table["blur"]][0] == "0"
    assert table["images"].tolist() == [6, 2, 2] and table["accuracy"].tolist() == [1.0, 1.0, 0.0]
