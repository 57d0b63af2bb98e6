"""Predictor: one checkpoint in, calibrated top-k, UNKNOWN flag and prediction set out."""

import math

import numpy as np
import pytest
import random_photos
import torch
from PIL import Image

from meterlib.confidence import calibration, selective
from meterlib.confidence.fitted import Calibration
from meterlib.errors import ModelFileError
from meterlib.model import backbones, checkpoint, inference
from meterlib.serve import UNKNOWN, Predictor, predictor as serving

CLASSES = ["zeta", "alpha", "mu"]  # deliberately not alphabetical: order comes from the checkpoint


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = backbones.build_classifier("random", len(CLASSES), pretrained=False).eval()
    path = tmp_path / "model" / "ckpt.pt"
    spec = checkpoint.ModelSpec(backbone="random", class_names=CLASSES, image_size=32,
                                mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    checkpoint.save(path, model=model, spec=spec)
    return path


@pytest.fixture()
def photos(tmp_path):
    return random_photos.save(tmp_path, 3, width=30, height=48, name="photo {}.png")


def test_predictions_use_the_checkpoint_temperature_and_class_order(saved, photos):
    checkpoint.release(saved, saved, temperature=2.0, unknown_threshold=0.0, conformal_quantile=math.inf)
    predictor = Predictor.from_checkpoint(saved, device="cpu")
    assert predictor.class_names == CLASSES and predictor.calibration.temperature == 2.0
    model = checkpoint.build_model(checkpoint.load(saved))
    raw = inference.logits_for_images(model, inference.load_resized(photos, image_size=32), image_size=32,
                                      mean=(0.5,) * 3, std=(0.25,) * 3, device="cpu").numpy()
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
    checkpoint.release(saved, saved, unknown_threshold=1.0, conformal_quantile=0.0)
    predictor = Predictor.from_checkpoint(saved, device="cpu")
    predictions = predictor.predict_many(photos + [Image.open(photos[0])])
    assert all(p.label == UNKNOWN and p.unknown for p in predictions)
    assert all(p.prediction_set == p.top_classes[:1] for p in predictions)  # only the top class
    # A PIL image and its file give the same answer.
    assert predictions[-1].top_probabilities == pytest.approx(predictions[0].top_probabilities)


def test_a_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ModelFileError, match="checkpoint not found"):
        Predictor.from_checkpoint(tmp_path / "nothing.pt")


def test_a_fresh_checkpoint_answers_with_the_default_threshold(saved, photos):
    predictor = Predictor.from_checkpoint(saved, device="cpu")
    assert predictor.calibration.unknown_threshold == selective.DEFAULT_UNKNOWN_THRESHOLD
    for answer in predictor.predict_many(photos):
        assert answer.unknown == (answer.confidence < selective.DEFAULT_UNKNOWN_THRESHOLD)


def test_with_calibration_changes_the_answers_not_the_model(saved, photos):
    predictor = Predictor.from_checkpoint(saved, device="cpu")
    logits = predictor.logits(photos)
    calibrated = predictor.with_calibration(Calibration(temperature=0.5, unknown_threshold=1.0,
                                                        conformal_quantile=0.0))
    assert calibrated.model is predictor.model and predictor.calibration == Calibration()  # the original is unchanged
    answers = calibrated.predictions_from_logits(logits)
    expected = calibration.softmax(logits, temperature=0.5)
    assert [a.confidence for a in answers] == pytest.approx(expected.max(axis=1).tolist())
    assert all(a.unknown and a.label == UNKNOWN for a in answers)
    assert all(a.prediction_set == a.top_classes[:1] for a in answers)


def test_predict_many_is_predictions_from_logits_of_the_photos(saved, photos):
    predictor = Predictor.from_checkpoint(saved, device="cpu").with_calibration(Calibration(
        temperature=1.5, unknown_threshold=0.4, conformal_quantile=0.5))
    assert predictor.predict_many(photos, top_k=2) == predictor.predictions_from_logits(
        predictor.logits(photos), top_k=2)


def test_logits_of_another_class_count_are_refused(saved):
    predictor = Predictor.from_checkpoint(saved, device="cpu")
    with pytest.raises(ValueError, match=r"expected logits of shape \(n, 3\), got \(2, 4\)"):
        predictor.predictions_from_logits(np.zeros((2, 4)))


def test_load_picks_the_runtime_by_the_file(saved, photos):
    loaded, direct = Predictor.load(saved, device="cpu"), Predictor.from_checkpoint(saved, device="cpu")
    assert isinstance(loaded.model, torch.nn.Module)
    np.testing.assert_array_equal(loaded.logits(photos), direct.logits(photos))


@pytest.mark.parametrize("mean, std", [((0.5,) * 3, (0.5,) * 3), (backbones.IMAGENET_MEAN, backbones.IMAGENET_STD)])
def test_preprocessing_equals_torchvisions_to_the_bit(mean, std):
    from torchvision import transforms as T

    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)) for _ in range(3)]
    reference = T.Compose([T.ToTensor(), T.Normalize(list(mean), list(std))])
    expected = torch.stack([reference(picture) for picture in pictures])
    batch = next(inference.input_batches(pictures, image_size=24, mean=mean, std=std))
    assert torch.equal(torch.from_numpy(np.ascontiguousarray(batch)), expected)


def test_nan_head_weights_are_refused_on_load_and_never_answer_in_memory(saved, photos):
    content = torch.load(saved, weights_only=True)
    content["state_dict"]["head.weight"].fill_(float("nan"))
    torch.save(content, saved)
    with pytest.raises(ModelFileError, match=r"holds NaN or inf values in 'head.weight'"):
        Predictor.load(saved)
    broken = Predictor._from_fields(content, model=checkpoint.build_model(content))  # as if loaded unchecked
    with pytest.raises(ModelFileError) as caught:
        broken.predict(photos[0])
    assert str(caught.value) == f"{photos[0]}: {serving.NON_FINITE}"
    assert [o.error for o in broken.predict_each(photos)] == [serving.NON_FINITE] * len(photos)


def test_folding_a_model_with_nan_weights_is_a_clean_error(saved):
    predictor = Predictor.from_checkpoint(saved, device="cpu")
    with torch.no_grad():
        predictor.model.frozen_part[1].running_var[0] = float("nan")
    with pytest.raises(ModelFileError, match=r"^the Sequential to fold gives NaN or inf outputs "
                                                         r"on a random batch: its weights are broken$"):
        predictor.with_folded_batch_norms()
