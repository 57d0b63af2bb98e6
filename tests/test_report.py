"""Notebook 03's report: the rows it judges, its fallbacks, metrics.json, and answers equal to the Predictor's."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from meterlib.confidence import calibration, conformal, fitted, selective
from meterlib.confidence.fitted import Calibration, CalibrationFit
from meterlib.evaluate import report, scoring
from meterlib.model import backbones, checkpoint
from meterlib.run import atomic
from meterlib.serve import Predictor

CLASSES = ["zeta", "alpha", "mu"]  # not alphabetical: the order comes from the checkpoint
MANIFEST = pd.DataFrame({
    "path": [f"raw/{c}/{i}.png" for i, c in enumerate(["zeta", "alpha", "mu", "alpha", "zeta", "mu", "new",
                                                        "new", "alpha", "mu"])],
    "class": ["zeta", "alpha", "mu", "alpha", "zeta", "mu", "new", "new", "alpha", "mu"],
    "split": ["val", "val", "val", "test", "test", "test", "holdout", "excluded", "train", "test"],
})


@pytest.fixture()
def dataset(tmp_path):
    """A random 3-class checkpoint and a photo for each manifest row."""
    rng = np.random.default_rng(0)
    for path in MANIFEST["path"]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(tmp_path / path)
    torch.manual_seed(0)
    model = backbones.build_classifier("random", len(CLASSES), pretrained=False)
    spec = checkpoint.ModelSpec(backbone="random", class_names=CLASSES, image_size=32, mean=(0.5,) * 3,
                                std=(0.25,) * 3)
    checkpoint.save(tmp_path / "model.uncalibrated.pt", model=model, spec=spec)
    return tmp_path


def _fitted(val_probs_calibrated, val_labels, *, temperature, threshold, **sets) -> tuple[CalibrationFit, dict]:
    """A calibration as 03 fits it (``sets``: class thresholds and u), and its record."""
    fit = calibration.TemperatureFit(temperature, True, "set by the test", len(val_labels), 1.0, 0.9)
    table = report.calibration_table({"val": (np.log(val_probs_calibrated), val_labels)}, temperature=1.0,
                                     n_bins=5)
    served = Calibration(temperature=temperature, unknown_threshold=threshold,
                         conformal_quantile=conformal.calibrate_aps(val_probs_calibrated, val_labels, alpha=0.34),
                         **sets)
    calibrated = CalibrationFit(served, fit, selective.ThresholdChoice(threshold, 0.5, 1.0, True), {},
                                target_accuracy=0.9, alpha=0.34, confidence=0.8)
    return calibrated, report.calibration_record(fit, table=table, ece_bins=5, sources={"val": len(val_labels)})


def test_notebook_03_results_are_the_predictors_answers(dataset):
    # 03's way: logits of the evaluated checkpoint, a calibration fitted on val, the results table.
    predictor = Predictor.from_checkpoint(dataset / "model.uncalibrated.pt", device="cpu")
    rows = report.evaluation_rows(MANIFEST, CLASSES)
    val_logits = predictor.logits([dataset / path for path in rows.val["path"]])
    test_files = [dataset / path for path in rows.test["path"]]
    test_logits = predictor.logits(test_files)
    temperature = 0.7
    val_cal = calibration.softmax(val_logits, temperature=temperature)
    test_cal = calibration.softmax(test_logits, temperature=temperature)
    threshold = float(np.median(test_cal.max(axis=1)))  # some photos answered, some UNKNOWN
    calibrated, record = _fitted(val_cal, report.class_indices(rows.val["class"], CLASSES), temperature=temperature,
                                 threshold=threshold)
    answers = predictor.with_calibration(calibrated.calibration).predictions_from_logits(test_logits)
    results = scoring.results_table(answers, images=rows.test["path"].tolist(),
                                    true_classes=rows.test["class"].tolist(), class_names=CLASSES,
                                    probs=calibration.softmax(test_logits))
    # What 04 and the CLI answer for the same photos after 03 released the checkpoint.
    checkpoint.release(dataset / "model.uncalibrated.pt", dataset / "model.pt",
                       **report.checkpoint_fields(calibrated, record=record))
    served = Predictor.from_checkpoint(dataset / "model.pt", device="cpu").predict_many(test_files)
    assert results["predicted_class"].tolist() == [a.top_classes[0] for a in served]
    assert results["calibrated_confidence"].tolist() == pytest.approx([a.confidence for a in served], abs=1e-6)
    assert results["unknown"].tolist() == [a.unknown for a in served]
    assert 0 < results["unknown"].sum() < len(results)
    assert results["prediction_set"].tolist() == ["|".join(a.prediction_set) for a in served]
    assert results["confidence"].tolist() == pytest.approx(calibration.softmax(test_logits).max(axis=1).tolist())


def test_rows_of_the_checkpoint_classes_and_the_unseen_ones():
    rows = report.evaluation_rows(MANIFEST, CLASSES)
    assert rows.val["class"].tolist() == ["zeta", "alpha", "mu"]
    assert rows.test["class"].tolist() == ["alpha", "zeta", "mu", "mu"]
    assert rows.unseen["path"].tolist() == ["raw/new/6.png"]  # the excluded photo of "new" is left out
    assert rows.test.index.tolist() == [0, 1, 2, 3]
    assert report.class_indices(rows.test["class"], CLASSES).tolist() == [1, 0, 2, 2]


def test_without_val_photos_the_default_threshold_is_kept():
    choice = fitted.unknown_threshold_choice(np.array([]), np.array([], dtype=bool), target_accuracy=0.9)
    assert choice.threshold == selective.DEFAULT_UNKNOWN_THRESHOLD and not choice.target_met
    assert math.isnan(choice.coverage) and math.isnan(choice.accuracy)
    chosen = fitted.unknown_threshold_choice(np.array([0.9, 0.6]), np.array([True, False]), target_accuracy=1.0)
    assert chosen == selective.ThresholdChoice(0.9, 0.5, 1.0, True)


def test_calibration_table_compares_each_split_before_and_after():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.5]])
    labels = np.array([0, 1, 1])
    table = report.calibration_table({"val": (logits, labels), "test": (logits[:2], labels[:2])},
                                     temperature=2.0, n_bins=5)
    assert table.columns.tolist() == ["val before", "val after", "test before", "test after"]
    assert table.index.tolist() == ["ece", "mce", "nll", "brier", "accuracy"]
    assert table.loc["nll", "val after"] == pytest.approx(calibration.negative_log_likelihood(
        calibration.softmax(logits, temperature=2.0), labels))
    assert table.loc["accuracy", "val before"] == table.loc["accuracy", "val after"] == pytest.approx(2 / 3)


def test_metrics_json_schema():
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]])
    calibrated, record = _fitted(probs, np.array([0, 1, 2]), temperature=1.3, threshold=0.6)
    served = Predictor(model=None, class_names=CLASSES, image_size=32, mean=[0.5] * 3, std=[0.25] * 3,
                       calibration=calibrated.calibration)
    answers = served.predictions_from_logits(np.log(probs))
    outcome = scoring.answer_summary(answers, CLASSES)
    metrics = report.build_metrics(
        checkpoint_created="2026-01-01T00:00:00+00:00", test_metrics=scoring.classification_metrics(probs, [0, 1, 2]),
        calibrated=calibrated, record=record, test_outcome=outcome, unseen_rows=MANIFEST[MANIFEST["class"] == "new"],
        aurocs={"energy": 0.75}, untested=["mu"], data_warnings=[])
    assert list(metrics) == ["checkpoint_created", "test", "calibration", "unknown_threshold", "conformal",
                             "unseen_classes", "classes_without_test_photos", "data_warnings"]
    assert set(metrics["test"]) == {"images", "classes_present", "accuracy", "balanced_accuracy", "macro_f1",
                                    "top3_accuracy"}
    assert metrics["calibration"] == record and record["temperature"] == 1.3 and record["fitted"] is True
    assert record["calibration_photos"] == {"val": 3}
    assert {"reason", "val_images", "ece_bins", "ece_val_before", "brier_val_after"} <= set(record)
    assert metrics["unknown_threshold"] == {
        "threshold": 0.6, "target_accuracy": 0.9, "target_met_on_calibration": True, "calibration_coverage": 0.5,
        "test_coverage": outcome["coverage"], "test_accuracy_answered": outcome["accuracy_answered"]}
    assert metrics["conformal"] == {"method": "APS", "alpha": 0.34, "confidence": 0.8,
                                    "quantile": calibrated.calibration.conformal_quantile,
                                    "test_coverage": outcome["set_coverage"],
                                    "test_mean_set_size": outcome["mean_set_size"]}
    assert metrics["unseen_classes"] == {"classes": ["new"], "photos": 2, "auroc": {"energy": 0.75}}
    assert metrics["classes_without_test_photos"] == ["mu"] and metrics["data_warnings"] == []
    # Plain Python values all the way down, so json writes them (write_json: NaN and inf as null).
    assert {type(value) for value in _leaves(metrics)} <= {str, int, float, bool}
    assert json.loads(json.dumps(metrics))["unseen_classes"]["classes"] == ["new"]


def _strict_loads(text: str):
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def test_write_json_writes_strict_json(tmp_path):
    data = {"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "f32": np.float32(0.5), "i64": np.int64(7),
            "bool": np.bool_(True), "array": np.array([[1.0, np.nan], [np.inf, 2.0]]),
            "nested": [{"x": np.float64("nan")}, (1, np.float32("-inf"))], "path": tmp_path / "a",
            np.int64(3): "numpy key"}
    text = atomic.write_json(tmp_path / "m.json", data).read_text()
    assert _strict_loads(text) == {
        "nan": None, "inf": None, "ninf": None, "f32": 0.5, "i64": 7, "bool": True,
        "array": [[1.0, None], [None, 2.0]], "nested": [{"x": None}, [1, None]], "path": str(tmp_path / "a"),
        "3": "numpy key"}
    with pytest.raises(ValueError, match="not strict JSON: NaN"):
        _strict_loads(json.dumps({"x": math.nan}))  # the parser does refuse what json.dumps writes by default


def _leaves(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def test_checkpoint_fields_are_the_calibration_its_alpha_and_its_record():
    calibrated, record = _fitted(np.array([[0.8, 0.2], [0.3, 0.7]]), np.array([0, 1]), temperature=1.3,
                                 threshold=0.6)
    fields = report.checkpoint_fields(calibrated, record=record)
    assert list(fields) == ["temperature", "unknown_threshold", "conformal_quantile", "conformal_u",
                            "conformal_alpha", "calibration"]
    assert Calibration.from_fields(fields) == calibrated.calibration
    assert (fields["conformal_alpha"], fields["calibration"]) == (0.34, record)


def test_a_changed_splits_csv_is_refused(tmp_path):
    splits = tmp_path / "splits.csv"
    splits.write_text("path,class,split\n")
    content = {"splits_sha256": checkpoint.file_sha256(splits)}
    report.check_same_splits(content, splits)
    report.check_same_splits({"splits_sha256": ""}, splits)  # a model without a recorded manifest
    splits.write_text("path,class,split\na.jpg,x,test\n")
    with pytest.raises(checkpoint.CheckpointError, match="splits.csv changed since the model was trained"):
        report.check_same_splits(content, splits)


def test_quality_table_adds_audit_and_generator_columns(tmp_path):
    results = pd.DataFrame({"image": ["a.jpg", "b.jpg"], "correct": [True, False]})
    manifest = pd.DataFrame({"path": ["a.jpg", "b.jpg", "c.jpg"], "brightness": [0.1, 0.2, 0.3],
                             "contrast": [1.0, 2.0, 3.0], "sharpness": [5.0, 6.0, 7.0]})
    table, columns = report.quality_table(results, manifest, nuisance_csv=tmp_path / "absent.csv",
                                          nuisance_columns=["glare"])
    assert columns == ["brightness", "contrast", "sharpness"] and table["contrast"].tolist() == [1.0, 2.0]
    atomic.write_csv(tmp_path / "synth.csv", pd.DataFrame({"path": ["b.jpg", "a.jpg"], "glare": [0.9, 0.0],
                                                           "zoom": [1.0, 1.1]}))
    table, columns = report.quality_table(results, manifest, nuisance_csv=tmp_path / "synth.csv",
                                          nuisance_columns=["glare", "blur"])
    assert columns == ["brightness", "contrast", "sharpness", "glare (generator)"]
    assert table["glare (generator)"].tolist() == [0.0, 0.9]


def test_per_group_sets_and_intervals_go_into_strict_metrics_json(tmp_path):
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]])
    labels = np.array([0, 1, 2, 1])
    groups = np.array(["large", "small", "medium"], dtype=object)
    quantiles = {"small": math.inf, "medium": 0.9, "large": 0.5}
    table = report.set_coverage_table(probs, labels, groups, marginal_quantile=0.6, quantiles=quantiles, u=0.5)
    assert table.index.tolist() == ["small", "medium", "large", "all"]
    assert {"photos", "coverage", "mean_set_size", "coverage (marginal)", "mean_set_size (marginal)",
            "quantile"} <= set(table.columns)
    assert table.loc["small", "coverage"] == 1.0  # an infinite quantile: the class is in every set
    intervals = report.intervals_on_test({"before": probs, "after": probs}, labels, n_bins=5, n_boot=20, seed=0)
    assert report.interval_table(intervals).columns.tolist()[:3] == ["before value", "before low", "before high"]
    metrics = report.honest_confidence_metrics({"conformal": {"method": "APS"}}, groups=table, intervals=intervals)
    stored = _strict_loads(atomic.write_json(tmp_path / "m.json", metrics).read_text())
    assert stored["conformal"]["method"] == "APS" and stored["conformal"]["groups"]["small"]["quantile"] is None
    assert set(stored["test_calibration_intervals"]["after"]["ece"]) == {"value", "low", "high"}


def test_per_class_thresholds_go_into_the_checkpoint():
    calibrated, record = _fitted(np.array([[0.8, 0.2], [0.3, 0.7]]), np.array([0, 1]), temperature=1.3,
                                 threshold=0.6, conformal_class_thresholds=(0.5, math.inf), conformal_u=0.5)
    fields = report.checkpoint_fields(calibrated, record=record)
    assert fields["conformal_class_thresholds"] == [0.5, math.inf] and fields["conformal_u"] == 0.5
