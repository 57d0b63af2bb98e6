"""Summary metrics, per-class report, confusions and the results table."""

import math

import numpy as np
import pandas as pd
import pytest

from meterlib.confidence.fitted import Calibration
from meterlib.errors import DataError
from meterlib.evaluate import scoring
from meterlib.serve import Predictor

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


# The model's own probabilities for two photos (a true ALPHA and a true GAMMA) and their logits.
RAW = np.array([[0.6, 0.25, 0.1, 0.05], [0.35, 0.4, 0.2, 0.05]])
LOGITS = np.log(RAW)


def _answers(logits=LOGITS, *, class_names=CLASSES, temperature=2.0, threshold=0.4, quantile=0.5):
    calibrated = Calibration(temperature=temperature, unknown_threshold=threshold, conformal_quantile=quantile)
    predictor = Predictor(model=None, class_names=list(class_names), image_size=32, mean=[0.5] * 3,
                          std=[0.25] * 3, calibration=calibrated)
    return predictor.predictions_from_logits(logits)


def _table(predictions=None, **overrides):
    kwargs = dict(images=["a.jpg", "b.jpg"], true_classes=["ALPHA", "GAMMA"], class_names=CLASSES, probs=RAW)
    kwargs.update(overrides)
    return scoring.results_table(predictions or _answers(), **kwargs)


def test_results_table_starts_with_the_seed_columns(tmp_path):
    table = _table()
    assert table.columns.tolist()[:5] == ["image", "true_class", "predicted_class", "confidence", "correct"]
    assert table.columns.tolist() == scoring.RESULTS_COLUMNS
    path = tmp_path / "results.csv"
    table.to_csv(path, index=False)
    assert pd.read_csv(path).columns.tolist() == scoring.RESULTS_COLUMNS


def test_results_table_values():
    row = _table().iloc[1]  # GAMMA photo predicted BETA 0.4, then ALPHA 0.35, GAMMA 0.2
    assert (row["predicted_class"], bool(row["correct"])) == ("BETA", False)
    assert row["confidence"] == pytest.approx(0.4)  # uncalibrated, as in the seed's CSV
    assert (row["top2_class"], row["top3_class"]) == ("ALPHA", "GAMMA")
    assert (row["top2_confidence"], row["top3_confidence"]) == pytest.approx((0.35, 0.2))
    # T = 2: calibrated probabilities go with the square roots of the raw ones.
    root = np.sqrt(RAW[1])
    assert row["calibrated_confidence"] == pytest.approx(root[1] / root.sum())
    assert bool(row["unknown"]) and row["prediction_set"] == "BETA|ALPHA" and row["set_size"] == 2
    assert row["reason"] == "unsure"
    first = _table().iloc[0]  # calibrated 0.43 >= threshold 0.4: answered
    assert not first["unknown"] and first["correct"] and first["prediction_set"] == "ALPHA|BETA"
    assert first["reason"] == ""


def test_results_table_follows_the_predictions():
    answers = _answers()
    table = _table(predictions=answers)
    assert table["calibrated_confidence"].tolist() == [a.confidence for a in answers]
    assert table["unknown"].tolist() == [a.unknown for a in answers]
    assert table["reason"].tolist() == [a.reason or "" for a in answers] == ["", "unsure"]
    assert table["prediction_set"].tolist() == ["|".join(a.prediction_set) for a in answers]


def test_results_table_with_two_classes_leaves_top3_empty():
    raw = np.array([[0.4, 0.6]])
    table = scoring.results_table(_answers(np.log(raw), class_names=["A", "B"], threshold=0.5),
                                  images=["a.jpg"], true_classes=["B"], class_names=["A", "B"], probs=raw)
    assert table.loc[0, "top3_class"] is None and np.isnan(table.loc[0, "top3_confidence"])
    assert table.loc[0, "top2_class"] == "A" and not table.loc[0, "unknown"]


def test_results_table_rejects_mismatched_inputs():
    with pytest.raises(DataError, match="1 images and 2 true classes"):
        _table(images=["a"])
    with pytest.raises(DataError, match=r"probs \(1, 4\) do not fit 2 predictions"):
        _table(probs=RAW[:1])


def test_answer_summary_scores_the_served_answers():
    summary = scoring.answer_summary(_answers(), ["ALPHA", "GAMMA"])
    assert summary == {"accuracy": 0.5, "coverage": 0.5, "accuracy_answered": 1.0, "set_coverage": 0.5,
                       "mean_set_size": 2.0, "single_class_sets": 0.0}
    everything = scoring.answer_summary(_answers(threshold=1.0, quantile=math.inf), ["ALPHA", "GAMMA"])
    assert everything["coverage"] == 0.0 and np.isnan(everything["accuracy_answered"])
    assert everything["set_coverage"] == 1.0 and everything["mean_set_size"] == 4.0
    assert all(np.isnan(v) for v in scoring.answer_summary([], []).values())
    with pytest.raises(DataError, match="1 true classes for 2 predictions"):
        scoring.answer_summary(_answers(), ["ALPHA"])


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
