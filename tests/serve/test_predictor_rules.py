"""The rules of a served answer, on logits: the UNKNOWN boundary, the confidence, top-k and sets."""

import math
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from meterlib.confidence import calibration, conformal
from meterlib.confidence.fitted import Calibration
from meterlib.errors import DataError, ModelFileError
from meterlib.model import checkpoint
from meterlib.serve import predictor as serving

CLASSES = ["zeta", "alpha", "mu", "nu"]
# Top classes mu (row 0) and zeta (row 1); no ties, so the order of every row is fixed.
LOGITS = np.array([[0.2, -1.0, 2.5, 1.0], [3.0, 0.5, -0.5, 2.0]])


def _predictor(**calibrated) -> serving.Predictor:
    """A Predictor that only answers logits (no network needed)."""
    plain = serving.Predictor(model=None, class_names=CLASSES, image_size=32, mean=[0.5] * 3, std=[0.25] * 3)
    return plain.with_calibration(Calibration(**calibrated))


def test_confidence_is_the_calibrated_top_probability_and_top_k_is_ordered():
    probs = calibration.softmax(LOGITS, temperature=2.0)
    answers = _predictor(temperature=2.0, unknown_threshold=0.0).predictions_from_logits(LOGITS, top_k=3)
    assert [a.label for a in answers] == ["mu", "zeta"]
    assert [a.confidence for a in answers] == pytest.approx(probs.max(axis=1).tolist())
    assert answers[0].top_classes == ["mu", "nu", "zeta"]
    assert answers[0].top_probabilities == pytest.approx(probs[0, [2, 3, 0]].tolist())
    assert answers[1].top_classes == ["zeta", "nu", "alpha"]


@pytest.mark.parametrize("row", [0, 1])
def test_a_confidence_exactly_at_the_threshold_is_answered_and_just_below_is_unknown(row):
    confidence = calibration.softmax(LOGITS[row:row + 1]).max()
    at = _predictor(unknown_threshold=float(confidence)).predictions_from_logits(LOGITS[row:row + 1])[0]
    assert not at.unknown and at.label == ["mu", "zeta"][row]
    above = float(np.nextafter(confidence, 1.0))
    withheld = _predictor(unknown_threshold=above).predictions_from_logits(LOGITS[row:row + 1])[0]
    assert withheld.unknown and withheld.label == serving.UNKNOWN
    # An UNKNOWN answer still reports what the model thought, for a person to overrule.
    assert withheld.confidence == at.confidence == confidence
    assert withheld.top_classes[0] == at.label


def test_the_threshold_applies_to_the_calibrated_not_the_raw_probability():
    raw = calibration.softmax(LOGITS[:1]).max()  # about .74; at T = 3 about .42
    answer = _predictor(temperature=3.0, unknown_threshold=0.6).predictions_from_logits(LOGITS[:1])[0]
    assert raw > 0.6 and answer.unknown and answer.confidence < 0.6


def test_prediction_sets_follow_the_stored_quantile_and_class_thresholds():
    probs = calibration.softmax(LOGITS)
    qhat = 0.8
    expected = conformal.aps_prediction_sets(probs, qhat)
    answers = _predictor(conformal_quantile=qhat).predictions_from_logits(LOGITS)
    for answer, members, row in zip(answers, expected, probs):
        order = np.argsort(-row)
        assert answer.prediction_set == [CLASSES[i] for i in order if members[i]]
    assert len(answers[0].prediction_set) == 2  # mu scores 0, nu .74 (within .8), zeta .90
    per_class = [math.inf, 0.0, 0.0, 0.0]  # zeta joins every set, the others only as top class
    answers = _predictor(conformal_quantile=0.0, conformal_class_thresholds=per_class).predictions_from_logits(LOGITS)
    assert [a.prediction_set for a in answers] == [["mu", "zeta"], ["zeta"]]
    assert [a.prediction_set for a in _predictor().predictions_from_logits(LOGITS)] == [
        ["mu", "nu", "zeta", "alpha"], ["zeta", "nu", "alpha", "mu"]]


def _photo(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 30, 3), dtype=np.uint8))


def test_every_calibration_field_is_read_from_the_checkpoint(random_checkpoint, tmp_path):
    path = shutil.copy(random_checkpoint, tmp_path / "ckpt.pt")
    fresh = serving.Predictor.from_checkpoint(path)
    assert fresh.calibration == Calibration()
    assert fresh.gallery is None and fresh.device is None and fresh.mean == [0.5] * 3 and fresh.image_size == 32
    checkpoint.release(path, path, temperature=1.5, unknown_threshold=0.25, conformal_quantile=0.7,
                       conformal_class_thresholds=[0.1, math.inf, 0.3], conformal_u=0.5)
    loaded = serving.Predictor.from_checkpoint(path, device="cpu")
    assert loaded.calibration == Calibration(temperature=1.5, unknown_threshold=0.25, conformal_quantile=0.7,
                                             conformal_class_thresholds=(0.1, math.inf, 0.3), conformal_u=0.5)
    assert loaded.device == "cpu" and loaded.class_names == ["zeta", "alpha", "mu"] and loaded.std == [0.25] * 3


def test_a_photo_and_a_list_of_photos_are_told_apart(random_checkpoint):
    predictor = serving.Predictor.from_checkpoint(random_checkpoint)
    photo = _photo(0)
    assert predictor.logits(photo).shape == predictor.logits([photo]).shape == (1, 3)
    assert predictor.logits(iter([photo, _photo(1)])).shape == (2, 3)
    # An upload entry is one (wrong) photo, not a list of its keys.
    with pytest.raises(DataError, match="cannot read a photo from an object of type dict"):
        predictor.logits({"name": "a.jpg", "content": b""})


def test_batches_give_the_answers_of_one_batch_and_bad_photos_keep_their_place(random_checkpoint):
    predictor = serving.Predictor.from_checkpoint(random_checkpoint)
    sources = [_photo(0), b"not a photo", _photo(1), _photo(2)]
    names = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    one_batch = predictor.predict_each(sources, names=names, top_k=2)
    in_pairs = predictor.predict_each(sources, names=names, top_k=2, batch_size=2)
    assert [o.source for o in in_pairs] == names and [o.ok for o in in_pairs] == [True, False, True, True]
    assert in_pairs[1].prediction is None and in_pairs[1].error
    for single, paired in zip(one_batch, in_pairs):
        assert single.error == paired.error
        if single.ok:
            assert single.prediction.top_classes == paired.prediction.top_classes
            assert len(paired.prediction.top_classes) == 2
            assert paired.prediction.top_probabilities == pytest.approx(single.prediction.top_probabilities,
                                                                        abs=1e-6)
    assert predictor.predict(sources[0], top_k=1).top_classes == one_batch[0].prediction.top_classes[:1]


@pytest.mark.parametrize("call", ["predict", "predict_many", "predict_each", "predictions_from_logits"])
def test_top_k_must_be_a_positive_integer(random_checkpoint, call):
    predictor = serving.Predictor.from_checkpoint(random_checkpoint)
    given = np.zeros((1, 3)) if call == "predictions_from_logits" else [_photo(0)]
    given = _photo(0) if call == "predict" else given
    with pytest.raises(ValueError, match="top_k must be a positive integer, got 0"):
        getattr(predictor, call)(given, top_k=0)


@pytest.fixture()
def logits_calls(monkeypatch) -> list:
    """Predictor.logits and Predictor._logits_of replaced: row 0 of LOGITS per photo; each call recorded."""
    calls = []

    def fake_evidence(self, images, *, batch_size=None, progress=False):
        calls.append(("logits", len(images), batch_size))
        return serving.Evidence(np.tile(LOGITS[0], (len(images), 1)))

    def fake_evidence_of(self, measured, *, batch_size):
        calls.append(("logits_of", len(measured), batch_size))
        return serving.Evidence(np.tile(LOGITS[0], (len(measured), 1)))

    monkeypatch.setattr(serving.Predictor, "evidence", fake_evidence)
    monkeypatch.setattr(serving.Predictor, "_evidence_of", fake_evidence_of)
    return calls


def _pictures(n: int) -> list:
    return [np.full((8, 8, 3), 100 + i, dtype=np.uint8) for i in range(n)]


def test_three_top_classes_and_batches_of_32_unless_asked(logits_calls):
    served = _predictor()
    assert len(served.predict("a.jpg").top_classes) == 3
    assert [len(p.top_classes) for p in served.predict_many(["a.jpg", "b.jpg"])] == [3, 3]
    assert len(served.predictions_from_logits(LOGITS)[1].top_classes) == 3
    assert [len(o.prediction.top_classes) for o in served.predict_each(_pictures(2))] == [3, 3]
    served.probabilities(["a.jpg"])
    served.probabilities(["a.jpg"], batch_size=5)
    served.predict_many(["a.jpg"], batch_size=7)
    assert [c for c in logits_calls if c[0] == "logits"] == [
        ("logits", 1, 32), ("logits", 2, 32), ("logits", 1, 32), ("logits", 1, 5), ("logits", 1, 7)]


def test_predict_each_goes_32_photos_at_a_time_and_labels_them_with_the_names(logits_calls):
    outcomes = _predictor().predict_each(_pictures(33))
    assert logits_calls == [("logits_of", 32, 32), ("logits_of", 1, 1)]
    assert outcomes[32].source == "photo 33 (ndarray)" and outcomes[32].prediction.label == "mu"
    named = _predictor().predict_each(_pictures(2), names=["up.jpg", "load.png"], batch_size=1)
    assert [o.source for o in named] == ["up.jpg", "load.png"]
    with pytest.raises(ValueError, match="batch_size"):
        _predictor().predict_each(_pictures(2), batch_size=0)


def test_predict_each_shows_its_progress_in_photos_when_asked(logits_calls, capsys, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    _predictor().predict_each(_pictures(3), batch_size=2)
    assert capsys.readouterr().err == ""
    _predictor().predict_each(_pictures(3), batch_size=2, progress=True)
    shown = capsys.readouterr().err
    assert re.search(r"(^|\r)predict: 100%.* 3/3 .*photo/s", shown), shown


def test_load_picks_the_runtime_from_the_suffix(monkeypatch):
    opened = []
    monkeypatch.setattr(serving.Predictor, "from_onnx",
                        classmethod(lambda cls, path, threads=None: opened.append(("onnx", path, threads))))
    monkeypatch.setattr(serving.Predictor, "from_checkpoint",
                        classmethod(lambda cls, path, device=None: opened.append(("checkpoint", path, device))))
    serving.Predictor.load("model.ONNX", threads=3)
    serving.Predictor.load("model.onnx.pt", device="cpu")
    assert opened == [("onnx", "model.ONNX", 3), ("checkpoint", "model.onnx.pt", "cpu")]


def test_with_calibration_keeps_the_tie_break_it_is_given():
    assert _predictor(conformal_u=0.25).calibration.conformal_u == 0.25
    assert _predictor().calibration.conformal_u == 0.0


# Photo i (pixels 100 + i) has logits row i: finite, NaN, +inf, -inf.
ROWS = np.array([LOGITS[0], [np.nan, 0, 0, 0], [0, np.inf, 0, 0], [0, 0, 0, -np.inf]])


@pytest.fixture()
def broken_outputs(monkeypatch):
    """Predictor._evidence_of replaced: each decoded photo gets the ROWS row of its pixel value."""
    def fake_evidence_of(self, measured, *, batch_size):
        rows = [int(np.asarray(item.picture)[0, 0, 0]) - 100 for item in measured]
        return serving.Evidence(ROWS[rows].reshape(-1, len(CLASSES)))

    monkeypatch.setattr(serving.Predictor, "_evidence_of", fake_evidence_of)


def test_a_photo_with_nan_or_inf_logits_gets_an_error_never_an_answer(broken_outputs, tmp_path):
    pictures = _pictures(4)
    served = _predictor()
    assert served.predict(pictures[0]).label == "mu"
    for index in (1, 2, 3):
        with pytest.raises(ModelFileError) as caught:
            served.predict(pictures[index])
        assert str(caught.value) == f"photo 1 (ndarray): {serving.NON_FINITE}"
    Image.fromarray(pictures[1]).save(tmp_path / "meter.png")
    with pytest.raises(ModelFileError, match=rf"^{re.escape(str(tmp_path / 'meter.png'))}: the model"):
        served.predict(str(tmp_path / "meter.png"))
    with pytest.raises(ModelFileError, match=r"^photo 3 \(ndarray\): the model gave non-finite"):
        served.predict_many([pictures[0], pictures[0], pictures[2], pictures[1]])
    with pytest.raises(ModelFileError, match=r"^logits row 1: the model gave non-finite outputs"):
        served.predictions_from_logits(ROWS)


def test_predict_each_gives_a_photo_with_non_finite_logits_an_error_row_and_answers_the_others(broken_outputs):
    pictures = _pictures(4)
    sources = [pictures[1], pictures[0], b"junk", pictures[3], pictures[0], pictures[2]]
    for batch_size in (32, 2):
        outcomes = _predictor().predict_each(sources, batch_size=batch_size)
        assert [o.error for o in outcomes] == [serving.NON_FINITE, None, outcomes[2].error, serving.NON_FINITE,
                                               None, serving.NON_FINITE]
        assert outcomes[2].error.startswith("not an image file")
        assert [o.prediction and o.prediction.label for o in outcomes] == [None, "mu", None, None, "mu", None]
