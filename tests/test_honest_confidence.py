"""Per-size-group prediction sets served as measured, and the checkpoint checks of their fields."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from meterlib.confidence import calibration, conformal, mondrian
from meterlib.confidence.fitted import Calibration
from meterlib.evaluate import report
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
    with pytest.raises(checkpoint.CheckpointError, match=field):
        checkpoint.release(saved, saved, out_of_fold=value)


@pytest.mark.parametrize("fields", [{"conformal_class_thresholds": [0.5, 0.5]},
                                    {"conformal_class_thresholds": [0.5, -0.1, 0.5, math.inf]},
                                    {"conformal_class_thresholds": [0.5, math.nan, 0.5, 0.5]},
                                    {"conformal_u": 1.5}])
def test_malformed_conformal_fields_are_refused(saved, fields):
    with pytest.raises(checkpoint.CheckpointError, match=next(iter(fields))):
        checkpoint.release(saved, saved, **fields)


def test_calibration_data_takes_out_of_fold_photos_of_the_classes_val_lacks_or_all_while_val_is_small():
    oof = _out_of_fold(12)  # labels 0, 1, 2, 3, 0, 1, ...
    val_logits, val_labels = _logits(5, seed=1), np.array([0, 1, 1, 3, 0])  # no val photo of class 2
    data = report.calibration_data({"out_of_fold": oof}, val_logits, val_labels, min_val=5)
    rows = np.flatnonzero(oof["labels"].numpy() == 2)
    assert data.sources == {"out_of_fold": 3, "val": 5}
    np.testing.assert_array_equal(data.labels, np.r_[[2, 2, 2], val_labels])
    np.testing.assert_allclose(data.logits, np.r_[oof["logits"].double().numpy()[rows], val_logits])
    every_class = report.calibration_data({"out_of_fold": oof}, val_logits, np.array([0, 1, 2, 3, 0]), min_val=5)
    assert every_class.sources == {"out_of_fold": 0, "val": 5}
    small_val = report.calibration_data({"out_of_fold": oof}, val_logits, val_labels, min_val=6)
    assert small_val.sources == {"out_of_fold": 12, "val": 5}
    np.testing.assert_array_equal(small_val.labels, np.r_[oof["labels"].numpy(), val_labels])
    without_val = report.calibration_data({"out_of_fold": oof}, np.empty((0, 4)), np.empty(0, dtype=np.int64),
                                          min_val=0)
    assert without_val.sources == {"out_of_fold": 12, "val": 0}
    fallback = report.calibration_data({}, val_logits, val_labels, min_val=5)
    assert fallback.sources == {"val": 5}
    np.testing.assert_array_equal(fallback.logits, val_logits)


def test_size_groups_count_training_photos():
    manifest = pd.DataFrame({"class": ["a"] * 3 + ["b"] * 6 + ["b"] * 4,
                             "split": ["train"] * 9 + ["test"] * 4})
    groups = report.training_size_groups(manifest, ["a", "b", "c"], small_below=4, large_from=6)
    assert groups.tolist() == ["small", "large", "small"]


def test_suspect_table_skips_with_a_reason():
    table, note = report.suspect_table({"class_names": CLASSES}, temperature=1.0)
    assert table is None and "no out-of-fold" in note
    oof = _out_of_fold(5)  # one photo of most classes: cleanlab's requirement fails
    table, note = report.suspect_table({"class_names": CLASSES, "out_of_fold": oof}, temperature=1.0)
    assert table is None and note.startswith("skipped") and "at least" in note


def test_suspects_are_ranked_by_the_feature_probabilities_when_stored():
    oof = _out_of_fold(40)
    labels = oof["labels"].numpy()
    confident = np.full((40, len(CLASSES)), 0.01)
    confident[np.arange(40), labels] = 0.97
    oof["logits"] = torch.tensor(np.log(confident), dtype=torch.float32)  # agrees with every label
    wrong = (labels + 1) % len(CLASSES)
    flipped = confident.copy()
    flipped[:3] = 0.01
    flipped[np.arange(3), wrong[:3]] = 0.97  # the feature model puts photos 0-2 in another class
    content = {"class_names": CLASSES, "out_of_fold": oof}
    table, _ = report.suspect_table(content, temperature=1.0)
    assert table.empty
    oof["feature_probs"] = torch.tensor(flipped)
    table, note = report.suspect_table(content, temperature=1.0)
    assert sorted(table["photo"]) == ["p0.jpg", "p1.jpg", "p2.jpg"] and note.startswith("3 suspect labels")


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
    assert not (mine / "processed" / "val").exists()  # the user's tree is left as it was
    metrics = json.loads(p.metrics_json.read_text())
    assert metrics["calibration"]["calibration_photos"]["out_of_fold"] == trained
