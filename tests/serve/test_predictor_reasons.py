"""A reason on every answer that names no type: poor_photo, then unseen_type, then unsure; older model files."""

import dataclasses
import warnings

import numpy as np
import pytest
import random_photos
import torch

from meterlib.confidence import unseen
from meterlib.confidence.photo_limits import PhotoLimits
from meterlib.model import backbones, checkpoint, reference
from meterlib.serve import predictor as serving
from meterlib.serve.predictor import Evidence, Predictor

SPEC = checkpoint.ModelSpec("random", ["zeta", "alpha", "mu"], 32, mean=(0.5,) * 3, std=(0.25,) * 3)
LIMITS = PhotoLimits(brightness=0.1, contrast=0.02, sharpness=1.0, short_side=40)


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reason_photos")
    return [*random_photos.save(folder, 10, width=56, height=48),
            *random_photos.save(folder, 1, width=56, height=48, name="dark.png", high=12)]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, photo_files):
    torch.manual_seed(0)
    model = backbones.build_classifier("random", 3, pretrained=False).eval()
    field = reference.build(model, photo_files[:4], [0, 1, 2, 0], spec=SPEC)
    path = tmp_path_factory.mktemp("reason_model") / "ckpt.pt"
    return checkpoint.save(path, model=model, spec=SPEC, reference_features=field)


def _served(model_file, photo_files, **changes) -> Predictor:
    """The model answering with an unseen-type rule fitted on photos 4-9 and the photo limits."""
    plain = Predictor.from_checkpoint(model_file)
    known = plain.evidence(photo_files[4:10])
    rule = unseen.fit_unseen_rule(known.logits, known.similarity, temperature=1.0, alpha=0.2, min_photos=5)
    calibration = dataclasses.replace(plain.calibration, **{"unseen_type": rule, "photo_limits": LIMITS,
                                                            "unknown_threshold": 0.0, **changes})
    return plain.with_calibration(calibration)


def test_a_dark_photo_is_a_poor_photo_whatever_else_it_is(model_file, photo_files):
    answer = _served(model_file, photo_files).predict(photo_files[-1])
    assert (answer.label, answer.unknown, answer.reason) == (serving.UNKNOWN, True, serving.POOR_PHOTO)
    assert answer.detail.startswith("too dark (brightness") and answer.detail.endswith(")")


def test_a_reference_photo_itself_is_answered_and_one_unlike_the_references_is_an_unseen_type(model_file,
                                                                                                 photo_files):
    served = _served(model_file, photo_files)
    evidence = served.evidence(photo_files[:2])
    assert np.allclose(evidence.similarity, 1.0, atol=1e-2)
    assert [a.reason for a in served.predictions(evidence)] == [None, None]
    far = dataclasses.replace(evidence, logits=np.zeros((2, 3)), similarity=np.array([-1.0, -1.0]))
    answers = served.predictions(far)
    assert [a.reason for a in answers] == [serving.UNSEEN_TYPE] * 2 and all(a.label == serving.UNKNOWN for a in answers)
    assert answers[0].unseen_p == pytest.approx(1 / 7)  # below all 6 calibration photos
    nearest = served.class_names[int(far.nearest_class[0])]
    assert f"nearest training photo: {nearest}, similarity -1.00" in answers[0].detail


def test_an_unsure_photo_names_the_two_classes_it_is_torn_between(model_file, photo_files):
    served = _served(model_file, photo_files, unknown_threshold=0.9)
    logits = np.array([[2.0, 1.9, -3.0]])
    answer = served.predictions(Evidence(logits, np.array([1.0]), np.array([0]),
                                         [{"brightness": 0.5, "contrast": 0.2, "sharpness": 50.0,
                                           "short_side": 100}]))[0]
    assert answer.reason == serving.UNSURE
    assert answer.detail.startswith("torn between zeta (") and " and alpha (" in answer.detail
    assert answer.detail.endswith("answers need 90.0%")


def test_answered_photos_carry_no_reason_and_their_p_value(model_file, photo_files):
    served = _served(model_file, photo_files)
    answers = served.predict_many(photo_files[:4])
    assert all(a.reason is None and a.detail == "" and not a.unknown for a in answers)
    assert all(0 < a.unseen_p <= 1 for a in answers)


def test_logits_alone_never_give_unseen_type(model_file, photo_files):
    served = _served(model_file, photo_files)
    answers = served.predictions_from_logits(np.zeros((3, 3)) + [5.0, 0.0, 0.0])
    assert all(a.unseen_p is None and a.reason is None for a in answers)


def test_a_batch_with_a_broken_file_gives_every_other_photo_its_reason(model_file, photo_files, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    outcomes = _served(model_file, photo_files).predict_each([photo_files[0], broken, photo_files[-1]])
    assert [o.ok for o in outcomes] == [True, False, True]
    assert [o.prediction.reason for o in outcomes if o.ok] == [None, serving.POOR_PHOTO]


def test_the_rules_round_trip_through_the_model_file(model_file, photo_files, tmp_path):
    served = _served(model_file, photo_files)
    content = checkpoint.load(model_file)
    path = tmp_path / "released.pt"
    checkpoint.write(path, {**content, **served.calibration.to_fields()})
    again = Predictor.from_checkpoint(path)
    assert again.calibration == served.calibration
    assert again.predict_many(photo_files) == served.predict_many(photo_files)


def test_an_older_released_model_file_predicts_and_says_once_why_unseen_type_is_unavailable(tmp_path,
                                                                                                photo_files):
    model = backbones.build_classifier("random", 3, pretrained=False)
    path = checkpoint.save(tmp_path / "old.pt", model=model, spec=SPEC, temperature=1.5, conformal_quantile=0.9)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = Predictor.from_checkpoint(path)
    assert [str(w.message) for w in caught] == [old.unseen_type_note]
    assert "no reference features" in old.unseen_type_note
    answers = old.predict_many(photo_files[:3])
    assert len(answers) == 3 and all(a.reason != serving.UNSEEN_TYPE and a.unseen_p is None for a in answers)


def test_an_uncalibrated_model_file_from_02_loads_without_a_warning(model_file):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = Predictor.from_checkpoint(model_file)
    assert "no unseen-type calibration" in plain.unseen_type_note
