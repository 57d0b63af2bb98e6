"""The calibration 03 fits and serves: its photos, its size groups, its model-file fields and their checks."""

import dataclasses
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from meterlib.confidence import calibration, conformal, fitted, mondrian, selective, unseen
from meterlib.confidence.photo_limits import PhotoLimits
from meterlib.confidence.fitted import Calibration, CalibrationFit
from meterlib.errors import ModelFileError
from meterlib.model import backbones, checkpoint
from meterlib.serve import Predictor

CLASSES = ["zeta", "alpha", "mu", "nu"]
GROUPS = np.array(["large", "small", "medium", "large"], dtype=object)


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = backbones.build_classifier("random", len(CLASSES), pretrained=False).eval()
    path = tmp_path / "ckpt.pt"
    spec = checkpoint.ModelSpec(backbone="random", class_names=CLASSES, image_size=32,
                                mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    checkpoint.save(path, model=model, spec=spec)
    return path


def _logits(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=2.0, size=(n, len(CLASSES)))


def _out_of_fold(n: int = 12) -> dict:
    return {"logits": torch.tensor(_logits(n), dtype=torch.float32),
            "labels": torch.arange(n, dtype=torch.int64) % len(CLASSES), "photos": [f"p{i}.jpg" for i in range(n)],
            "fold": torch.arange(n, dtype=torch.int64) % 3, "method": "3-fold cross-fitting"}


def test_predictor_serves_the_mondrian_sets(saved):
    quantiles = {"small": 0.95, "medium": math.inf, "large": 0.4}
    thresholds = mondrian.class_thresholds(quantiles, GROUPS)
    checkpoint.release(saved, saved, temperature=1.5, conformal_u=conformal.INFORMATIVE_U,
                       conformal_class_thresholds=thresholds.tolist())
    predictor = Predictor.from_checkpoint(saved, device="cpu")
    logits = _logits(50)
    expected = mondrian.mondrian_prediction_sets(calibration.softmax(logits, temperature=1.5), quantiles, GROUPS,
                                                 u=conformal.INFORMATIVE_U)
    served = predictor.predictions_from_logits(logits, top_k=1)
    assert [sorted(a.prediction_set) for a in served] == [sorted(np.array(CLASSES)[row]) for row in expected]
    assert any(len(a.prediction_set) < len(CLASSES) for a in served)
    again = Predictor.from_checkpoint(saved).with_calibration(Calibration(
        temperature=1.5, unknown_threshold=0.5, conformal_quantile=math.inf,
        conformal_class_thresholds=thresholds, conformal_u=conformal.INFORMATIVE_U))
    assert [a.prediction_set for a in again.predictions_from_logits(logits)] == [a.prediction_set for a in served]


def test_a_checkpoint_without_the_fields_serves_the_marginal_sets(saved):
    checkpoint.release(saved, saved, conformal_quantile=0.8)
    predictor = Predictor.from_checkpoint(saved, device="cpu")
    assert predictor.calibration.conformal_class_thresholds is None and predictor.calibration.conformal_u == 0.0
    logits = _logits(20)
    expected = conformal.aps_prediction_sets(calibration.softmax(logits), 0.8)
    served = predictor.predictions_from_logits(logits)
    assert [sorted(a.prediction_set) for a in served] == [sorted(np.array(CLASSES)[row]) for row in expected]


@pytest.mark.parametrize("change, field", [
    (lambda f: f.update(logits=f["logits"][:, :2]), "out_of_fold"),
    (lambda f: f.update(labels=f["labels"][:-1]), "out_of_fold"),
    (lambda f: f.update(labels=f["labels"] + 10), "out_of_fold"),
    (lambda f: f.update(photos=f["photos"][:3]), "out_of_fold"),
    (lambda f: f.pop("method"), "out_of_fold"),
])
def test_malformed_out_of_fold_is_refused(saved, change, field):
    value = _out_of_fold()
    change(value)
    with pytest.raises(ModelFileError, match=field):
        checkpoint.release(saved, saved, out_of_fold=value)


@pytest.mark.parametrize("fields", [{"conformal_class_thresholds": [0.5, 0.5]},
                                    {"conformal_class_thresholds": [0.5, -0.1, 0.5, math.inf]},
                                    {"conformal_class_thresholds": [0.5, math.nan, 0.5, 0.5]},
                                    {"conformal_u": 1.5}])
def test_malformed_conformal_fields_are_refused(saved, fields):
    with pytest.raises(ModelFileError, match=next(iter(fields))):
        checkpoint.release(saved, saved, **fields)


def test_calibration_data_takes_out_of_fold_photos_of_the_classes_val_lacks_or_all_while_val_is_small():
    oof = _out_of_fold(12)  # labels 0, 1, 2, 3, 0, 1, ...
    val_logits, val_labels = _logits(5, seed=1), np.array([0, 1, 1, 3, 0])  # no val photo of class 2
    data = fitted.calibration_data(val_logits, val_labels, out_of_fold=oof, min_val=5)
    rows = np.flatnonzero(oof["labels"].numpy() == 2)
    assert data.sources == {"out_of_fold": 3, "val": 5}
    np.testing.assert_array_equal(data.labels, np.r_[[2, 2, 2], val_labels])
    np.testing.assert_array_equal(data.logits, np.r_[oof["logits"].double().numpy()[rows], val_logits])
    assert data.logits.dtype == np.float64 and data.labels.dtype == np.int64
    every_class = fitted.calibration_data(val_logits, np.array([0, 1, 2, 3, 0]), out_of_fold=oof, min_val=5)
    assert every_class.sources == {"out_of_fold": 0, "val": 5}
    small_val = fitted.calibration_data(val_logits, val_labels, out_of_fold=oof, min_val=6)
    assert small_val.sources == {"out_of_fold": 12, "val": 5}
    np.testing.assert_array_equal(small_val.labels, np.r_[oof["labels"].numpy(), val_labels])
    without_val = fitted.calibration_data(np.empty((0, 4)), np.empty(0, dtype=np.int64), out_of_fold=oof,
                                          min_val=0)
    assert without_val.sources == {"out_of_fold": 12, "val": 0}
    fallback = fitted.calibration_data(val_logits, val_labels, out_of_fold=None, min_val=5)
    assert fallback.sources == {"val": 5}
    np.testing.assert_array_equal(fallback.logits, val_logits)


def test_size_groups_count_training_photos():
    manifest = pd.DataFrame({"class": ["a"] * 3 + ["b"] * 6 + ["b"] * 4,
                             "split": ["train"] * 9 + ["test"] * 4})
    groups = fitted.training_size_groups(manifest, ["a", "b", "c"], small_below=4, large_from=6)
    assert groups.tolist() == ["small", "large", "small"]


def test_without_calibration_photos_the_default_threshold_is_kept():
    choice = fitted.unknown_threshold_choice(np.array([]), np.array([], dtype=bool), target_accuracy=0.9)
    assert choice.threshold == selective.DEFAULT_UNKNOWN_THRESHOLD and not choice.target_met
    assert math.isnan(choice.coverage) and math.isnan(choice.accuracy)
    chosen = fitted.unknown_threshold_choice(np.array([0.9, 0.6]), np.array([True, False]), target_accuracy=1.0)
    assert chosen == selective.ThresholdChoice(0.9, 0.5, 1.0, True)


def test_the_fit_keeps_the_groups_its_class_thresholds_come_from():
    logits, labels = _logits(60, seed=2), np.arange(60) % len(CLASSES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random logits: no temperature, no threshold reaches the target
        result = fitted.fit_calibration(logits, labels, list(GROUPS), min_samples=1000, target_accuracy=0.5,
                                        alpha=0.2, confidence=None)
    assert result.groups == tuple(GROUPS)
    assert list(result.calibration.conformal_class_thresholds) == list(
        mondrian.class_thresholds(result.group_quantiles, GROUPS))


def _calibrated(**sets) -> CalibrationFit:
    fit = calibration.TemperatureFit(1.3, True, "set by the test", 2, 1.0, 0.9)
    served = Calibration(temperature=1.3, unknown_threshold=0.6, conformal_quantile=0.8, **sets)
    return CalibrationFit(served, fit, selective.ThresholdChoice(0.6, 0.5, 1.0, True), tuple(GROUPS), {},
                          target_accuracy=0.9, alpha=0.34, confidence=0.8)


def test_the_calibration_record_holds_the_fit_and_every_metric_before_and_after():
    table = pd.DataFrame({"val before": {"ece": 0.2, "nll": 0.9}, "val after": {"ece": 0.1, "nll": 0.8},
                          "test before": {"ece": 0.3, "nll": 1.0}})
    fit = calibration.TemperatureFit(1.3, False, "too few photos", 12, 1.0, 0.9)
    record = fitted.calibration_record(fit, table=table, ece_bins=15, sources={"out_of_fold": 4, "val": 8})
    assert record == {"temperature": 1.3, "fitted": False, "reason": "too few photos", "val_images": 12,
                      "calibration_photos": {"out_of_fold": 4, "val": 8}, "ece_bins": 15,
                      "ece_val_before": 0.2, "ece_val_after": 0.1, "ece_test_before": 0.3,
                      "nll_val_before": 0.9, "nll_val_after": 0.8, "nll_test_before": 1.0}
    assert all(type(value) is float for name, value in record.items() if name.endswith(("_before", "_after")))


def test_checkpoint_fields_are_the_calibration_its_alpha_and_its_record():
    calibrated, record = _calibrated(), {"temperature": 1.3, "fitted": True}
    fields = fitted.checkpoint_fields(calibrated, record=record)
    assert list(fields) == ["unseen_type", "photo_limits", "temperature", "unknown_threshold", "conformal_quantile",
                            "conformal_u", "conformal_alpha", "calibration"]
    assert fields["unseen_type"] is None and fields["photo_limits"] is None  # none fitted: cleared
    assert Calibration.from_fields(fields) == calibrated.calibration
    assert (fields["conformal_alpha"], fields["calibration"]) == (0.34, record)
    thresholds = fitted.checkpoint_fields(_calibrated(conformal_class_thresholds=(0.5, math.inf, 0.5, 0.5),
                                                      conformal_u=0.5), record=record)
    assert thresholds["conformal_class_thresholds"] == [0.5, math.inf, 0.5, 0.5] and thresholds["conformal_u"] == 0.5


LIMITS = PhotoLimits(brightness=0.1, contrast=0.05, sharpness=20.0, short_side=64)


def _val_scores(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Val photos' logits and similarities to the nearest training photo."""
    return _logits(n, seed=3), np.random.default_rng(3).normal(0.8, 0.05, n)


def test_the_unseen_type_rule_is_fitted_on_val_photos_or_says_why_not():
    logits, similarity = _val_scores(40)
    rule, note = fitted.unseen_type_rule(logits, similarity, temperature=1.5, alpha=0.1, min_photos=30)
    assert note == "" and rule == unseen.fit_unseen_rule(logits, similarity, temperature=1.5, alpha=0.1,
                                                         min_photos=30)
    assert rule.photos == 40 and rule.alpha == 0.1
    assert fitted.unseen_type_rule(logits, similarity, temperature=1.5, alpha=0.1, min_photos=41) == (
        None, "only 40 val photos, fewer than min_unseen_photos (41)")
    rule, note = fitted.unseen_type_rule(logits, None, temperature=1.5, alpha=0.1, min_photos=30)
    assert rule is None and "no reference features" in note


def test_with_rules_adds_the_rule_and_the_limits_and_keeps_the_rest():
    rule, _ = fitted.unseen_type_rule(*_val_scores(40), temperature=1.3, alpha=0.1, min_photos=30)
    before = _calibrated()
    after = fitted.with_rules(before, unseen_type=rule, photo_limits=LIMITS)
    assert (after.calibration.unseen_type, after.calibration.photo_limits) == (rule, LIMITS)
    assert dataclasses.replace(after.calibration, unseen_type=None, photo_limits=None) == before.calibration
    assert dataclasses.replace(after, calibration=before.calibration) == before
    assert fitted.with_rules(after, unseen_type=None, photo_limits=None).calibration == before.calibration


def test_the_rules_record_says_what_was_fitted_and_why_not():
    rule, _ = fitted.unseen_type_rule(*_val_scores(40), temperature=1.3, alpha=0.1, min_photos=30)
    served = fitted.with_rules(_calibrated(), unseen_type=rule, photo_limits=LIMITS).calibration
    assert fitted.rules_record(served) == {
        "unseen_type": {"fitted": True, "reason": "", "alpha": 0.1, "calibration_photos": 40},
        "photo_limits": {"fitted": True, "reason": "", "quantile": LIMITS.quantile}}
    assert fitted.rules_record(Calibration(), unseen_note="only 3 val photos", limits_note="too few") == {
        "unseen_type": {"fitted": False, "reason": "only 3 val photos", "alpha": None, "calibration_photos": 0},
        "photo_limits": {"fitted": False, "reason": "too few", "quantile": None}}


def test_a_recalibrated_model_file_keeps_no_stale_rule(saved):
    rule, _ = fitted.unseen_type_rule(*_val_scores(40), temperature=1.3, alpha=0.1, min_photos=30)
    with_both = fitted.with_rules(_calibrated(), unseen_type=rule, photo_limits=LIMITS)
    checkpoint.release(saved, saved, **fitted.checkpoint_fields(with_both, record={}))
    with pytest.warns(UserWarning, match="no reference features"):  # this test model has none
        assert Predictor.from_checkpoint(saved, device="cpu").calibration == with_both.calibration
    # 03 run again where the rule cannot be fitted: the old rule and limits go, not only stay unset.
    checkpoint.release(saved, saved, **fitted.checkpoint_fields(_calibrated(), record={}))
    stored = checkpoint.load(saved)
    assert stored["unseen_type"] is None and stored["photo_limits"] is None
    with pytest.warns(UserWarning, match="unseen_type is unavailable"):
        served = Predictor.from_checkpoint(saved, device="cpu").calibration
    assert served == _calibrated().calibration


def test_released_checkpoint_fields_are_what_the_predictor_serves(saved):
    calibrated = _calibrated(conformal_class_thresholds=(0.5, math.inf, 0.5, 0.5), conformal_u=0.5)
    checkpoint.release(saved, saved, **fitted.checkpoint_fields(calibrated, record={"fitted": True}))
    stored = checkpoint.load(saved)
    assert Predictor.from_checkpoint(saved, device="cpu").calibration == calibrated.calibration
    assert (stored["conformal_alpha"], stored["calibration"]) == (0.34, {"fitted": True})


@pytest.mark.slow
def test_a_train_test_tree_without_val_is_calibrated(smoke_run, tmp_path):
    """A user's processed/{train,test} tree (no val/): the calibration is fitted on out-of-fold predictions."""
    import json
    import shutil

    from meterlib.run import paths, runner

    mine = tmp_path / "data" / "mine"
    for folder in sorted(p for p in smoke_run.raw_dir.iterdir() if p.is_dir()):
        for i, photo in enumerate(sorted(folder.glob("*.jpg"))):
            target = mine / "processed" / ("test" if i % 4 == 3 else "train") / folder.name / photo.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(photo, target)
    runner.run(profile="smoke", overrides={"dataset": "mine", "holdout_classes": ""}, only=["01", "02", "03"],
               data_dir=str(tmp_path / "data"), reports_dir=str(tmp_path / "reports"), echo=lambda _: None)
    p = paths.resolve(dataset="mine", data_dir=tmp_path / "data", reports_dir=tmp_path / "reports")
    trained = len(list((mine / "processed" / "train").rglob("*.jpg")))

    saved = checkpoint.load(p.checkpoint)
    record = saved["calibration"]
    assert record["calibration_photos"] == {"out_of_fold": trained, "val": 0}
    assert record["fitted"] and saved["temperature"] != 1.0
    assert 0.0 < saved["conformal_quantile"] < 1.0  # informative sets: neither single classes nor all classes
    assert 0.0 < saved["unknown_threshold"] < 1.0
    # Without val photos the unseen-type rule is not fitted (out-of-fold photos never fit it), and says why.
    assert not record["unseen_type"]["fitted"] and saved["unseen_type"] is None
    assert record["unseen_type"]["reason"].startswith("only 0 val photos")
    assert record["photo_limits"]["fitted"] and saved["photo_limits"] is not None
    assert not (mine / "processed" / "val").exists()  # the user's tree is left as it was
    metrics = json.loads(p.metrics_json.read_text())
    assert metrics["calibration"]["calibration_photos"]["out_of_fold"] == trained
