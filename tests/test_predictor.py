"""Predictor: one checkpoint in, calibrated top-k, UNKNOWN flag and prediction set out."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from meterlib.confidence import calibration
from meterlib.model import backbones, checkpoint, inference
from meterlib.serve.predictor import UNKNOWN, Predictor

CLASSES = ["zeta", "alpha", "mu"]  # deliberately not alphabetical: order comes from the checkpoint


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = backbones.build_classifier("random", len(CLASSES), pretrained=False).eval()
    path = tmp_path / "model" / "ckpt.pt"
    checkpoint.save(path, model=model, backbone="random", class_names=CLASSES, image_size=32,
                    mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    return path


@pytest.fixture()
def photos(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for i in range(3):
        files.append(tmp_path / f"photo {i}.png")
        Image.fromarray(rng.integers(0, 255, (48, 30, 3), dtype=np.uint8)).save(files[-1])
    return files


def test_predictions_use_the_checkpoint_temperature_and_class_order(saved, photos):
    checkpoint.update_fields(saved, temperature=2.0, unknown_threshold=0.0, conformal_quantile=math.inf)
    predictor = Predictor.from_checkpoint(saved, device="cpu")
    assert predictor.class_names == CLASSES and predictor.temperature == 2.0
    raw = inference.checkpoint_logits(checkpoint.load(saved), photos, device="cpu").numpy()
    expected = calibration.softmax(raw, temperature=2.0)
    probs = predictor.probabilities(photos)
    np.testing.assert_allclose(probs, expected, rtol=1e-5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    first = predictor.predict(photos[0], top_k=2)
    assert first.top_classes == [CLASSES[i] for i in np.argsort(-expected[0])[:2]]
    assert first.top_probabilities == pytest.approx(np.sort(expected[0])[::-1][:2].tolist(), rel=1e-5)
    assert first.label == first.top_classes[0] and not first.unknown
    assert sorted(first.prediction_set) == sorted(CLASSES)  # uncalibrated sets hold every class


def test_unknown_threshold_and_conformal_quantile_come_from_the_checkpoint(saved, photos):
    checkpoint.update_fields(saved, unknown_threshold=1.0, conformal_quantile=0.0)
    predictor = Predictor.from_checkpoint(saved, device="cpu")
    predictions = predictor.predict_many(photos + [Image.open(photos[0])])
    assert all(p.label == UNKNOWN and p.unknown for p in predictions)
    assert all(p.prediction_set == p.top_classes[:1] for p in predictions)  # only the top class
    # A PIL image and its file give the same answer.
    assert predictions[-1].top_probabilities == pytest.approx(predictions[0].top_probabilities)


def test_a_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="checkpoint not found"):
        Predictor.from_checkpoint(tmp_path / "nothing.pt")
