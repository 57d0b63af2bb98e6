"""The photos 03 judges: the rows it selects, the split it refuses, its scores, and answers equal to the Predictor's."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from meterlib.confidence import calibration, fitted
from meterlib.confidence.fitted import Calibration
from meterlib.confidence.photo_limits import PhotoLimits
from meterlib.errors import DataError
from meterlib.evaluate import photos, scoring
from meterlib.model import backbones, checkpoint, reference
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
    """A random 3-class checkpoint with its training photos' reference features, and a photo per manifest row."""
    rng = np.random.default_rng(0)
    for path in MANIFEST["path"]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(tmp_path / path)
    torch.manual_seed(0)
    model = backbones.build_classifier("random", len(CLASSES), pretrained=False).eval()
    spec = checkpoint.ModelSpec(backbone="random", class_names=CLASSES, image_size=32, mean=(0.5,) * 3,
                                std=(0.25,) * 3)
    train = MANIFEST[MANIFEST["split"] == "train"]
    features = reference.build(model, [tmp_path / path for path in train["path"]],
                               photos.class_indices(train["class"], CLASSES), spec=spec)
    checkpoint.save(tmp_path / "model.uncalibrated.pt", model=model, spec=spec, reference_features=features)
    return tmp_path


def test_rows_of_the_checkpoint_classes_and_the_unseen_ones():
    rows = photos.evaluation_rows(MANIFEST, CLASSES)
    assert rows.val["class"].tolist() == ["zeta", "alpha", "mu"]
    assert rows.test["class"].tolist() == ["alpha", "zeta", "mu", "mu"]
    assert rows.unseen["path"].tolist() == ["raw/new/6.png"]  # the excluded photo of "new" is left out
    assert rows.test.index.tolist() == [0, 1, 2, 3]
    assert photos.class_indices(rows.test["class"], CLASSES).tolist() == [1, 0, 2, 2]


def test_a_changed_splits_csv_is_refused_as_changed_data(tmp_path):
    splits = tmp_path / "splits.csv"
    splits.write_text("path,class,split\n")
    content = {"splits_sha256": checkpoint.file_sha256(splits)}
    photos.check_same_splits(content, splits)
    photos.check_same_splits({"splits_sha256": ""}, splits)  # a model without a recorded manifest
    splits.write_text("path,class,split\na.jpg,x,test\n")
    with pytest.raises(DataError, match="splits.csv changed since the model was trained"):
        photos.check_same_splits(content, splits)


def test_scores_follow_the_calibration_and_keep_the_predicted_classes():
    rows = photos.evaluation_rows(MANIFEST, CLASSES).test
    logits = np.array([[2.0, 0.0, 1.0], [0.0, 3.0, 0.5], [1.0, 0.5, 0.0], [0.0, 0.0, 2.0]])
    scored = photos.Scored.of(rows, logits, class_names=CLASSES)
    assert scored.labels.tolist() == [1, 0, 2, 2]
    np.testing.assert_array_equal(scored.probs, calibration.softmax(logits))  # uncalibrated by default
    assert scored.predicted.tolist() == [0, 1, 0, 2] and scored.correct.tolist() == [False, False, False, True]
    np.testing.assert_array_equal(scored.confidence, calibration.softmax(logits).max(axis=1))
    scaled = scored.calibrated(Calibration(temperature=2.0))
    np.testing.assert_array_equal(scaled.probs, calibration.softmax(logits, temperature=2.0))
    assert (scaled.predicted == scored.predicted).all() and (scaled.confidence < scored.confidence).all()
    assert scaled.rows is rows and scored.calibration == Calibration()  # the original is unchanged


def test_notebook_03_results_are_the_predictors_answers(dataset):
    # 03's way: evidence of the evaluated checkpoint, a calibration, rule and limits fitted on val, the results.
    predictor = Predictor.from_checkpoint(dataset / "model.uncalibrated.pt", device="cpu")
    rows = photos.evaluation_rows(MANIFEST, CLASSES)
    evidence = {name: predictor.evidence([dataset / path for path in split["path"]])
                for name, split in (("val", rows.val), ("test", rows.test))}
    val, test = (photos.Scored.of(split, evidence[name].logits, class_names=CLASSES)
                 for name, split in (("val", rows.val), ("test", rows.test)))
    temperature = 0.7
    threshold = float(np.median(calibration.softmax(test.logits, temperature=temperature).max(axis=1)))
    fit = calibration.TemperatureFit(temperature, True, "set by the test", len(val.labels), 1.0, 0.9)
    record = fitted.calibration_record(fit, table=pd.DataFrame({"val before": {"ece": 0.1}}), ece_bins=5,
                                       sources={"val": len(val.labels)})
    calibrated = fitted.CalibrationFit(Calibration(temperature=temperature, unknown_threshold=threshold), fit, None,
                                       ("large",) * 3, {}, target_accuracy=0.9, alpha=0.34, confidence=0.8)
    rule, note = fitted.unseen_type_rule(val.logits, evidence["val"].similarity, temperature=temperature,
                                         alpha=0.3, min_photos=3)
    darkest = min(measures["brightness"] for measures in evidence["test"].quality)
    limits = PhotoLimits(brightness=darkest + 1e-9, contrast=0.0, sharpness=0.0, short_side=0)  # one poor photo
    calibrated = fitted.with_rules(calibrated, unseen_type=rule, photo_limits=limits)
    served = calibrated.calibration
    answers = predictor.with_calibration(served).predictions(evidence["test"])
    results = scoring.results_table(answers, images=test.rows["path"].tolist(),
                                    true_classes=test.rows["class"].tolist(), class_names=CLASSES, probs=test.probs)
    # What 04 and the CLI answer for the same photos after 03 released the checkpoint.
    checkpoint.release(dataset / "model.uncalibrated.pt", dataset / "model.pt",
                       **fitted.checkpoint_fields(calibrated, record=record))
    released = Predictor.from_checkpoint(dataset / "model.pt", device="cpu")
    assert note == "" and released.calibration == served and released.unseen_type_note == ""
    answered = released.predict_many([dataset / path for path in rows.test["path"]])
    assert results["predicted_class"].tolist() == [a.top_classes[0] for a in answered]
    assert results["calibrated_confidence"].tolist() == pytest.approx([a.confidence for a in answered], abs=1e-6)
    assert results["calibrated_confidence"].tolist() == pytest.approx(test.calibrated(served).confidence.tolist())
    assert results["unknown"].tolist() == [a.unknown for a in answered]
    assert results["reason"].tolist() == [a.reason or "" for a in answered]
    assert 0 < results["unknown"].sum() < len(results) and results["reason"].tolist().count("poor_photo") == 1
    assert [a.unseen_p for a in answers] == pytest.approx([a.unseen_p for a in answered], abs=1e-6)
    assert results["prediction_set"].tolist() == ["|".join(a.prediction_set) for a in answered]
    assert results["confidence"].tolist() == pytest.approx(test.confidence.tolist())
