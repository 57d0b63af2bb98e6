"""ONNX export: the metadata it carries, answers equal to PyTorch's, clear errors, and ``predict --model``."""

import csv
import json
import math
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from meterlib.cli.main import main
from meterlib.confidence import photo_limits, unseen
from meterlib.errors import ExportError, ModelFileError, UnavailableError
from meterlib.export import check, export, onnx_files
from meterlib.model import checkpoint, onnx_metadata
from meterlib.serve import Predictor

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

UNSEEN_TYPE = unseen.UnseenRule(energy=[-1.5, 0.25, 2.0], similarity=[0.1, 0.5, 0.9], fused=[1 / 3, 2 / 3, 1.0],
                                alpha=0.3).to_field()
PHOTO_LIMITS = photo_limits.PhotoLimits(brightness=0.05, contrast=0.02, sharpness=12.5, short_side=48).to_field()
CALIBRATION = dict(temperature=2.0, unknown_threshold=0.4, conformal_quantile=0.8, conformal_u=0.25,
                   conformal_class_thresholds=[0.5, math.inf, 0.7], unseen_type=UNSEEN_TYPE,
                   photo_limits=PHOTO_LIMITS)


@pytest.fixture(scope="module")
def calibrated(random_checkpoint, tmp_path_factory):
    """A copy of the random checkpoint with a full calibration (an infinite class threshold included)."""
    path = tmp_path_factory.mktemp("calibrated") / "model.pt"
    shutil.copy(random_checkpoint, path)
    checkpoint.release(path, path, splits_sha256="ab" * 32, **CALIBRATION)
    return path


@pytest.fixture(scope="module")
def exported(calibrated):
    """The calibrated checkpoint exported as a float32 ONNX model beside it."""
    return onnx_files.write_float32(checkpoint.load(calibrated), calibrated.with_suffix(".onnx"), source=calibrated)


@pytest.fixture()
def photos(tmp_path):
    rng = np.random.default_rng(1)
    files = []
    for index, size in enumerate([(60, 40), (32, 32), (90, 120), (45, 45)]):
        files.append(tmp_path / f"photo {index}.png")
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(files[-1])
    return files


def _metadata(path) -> dict:
    entries = {entry.key: entry.value for entry in onnx.load(path).metadata_props}

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(entries[onnx_metadata.METADATA_KEY], parse_constant=refuse)


def test_metadata_carries_everything_the_predictor_needs(calibrated, exported):
    fields = _metadata(exported)  # strict JSON: the infinite threshold is null
    content = checkpoint.load(calibrated)
    assert fields["class_names"] == ["zeta", "alpha", "mu"]
    assert (fields["image_size"], fields["mean"], fields["std"]) == (32, [0.5] * 3, [0.25] * 3)
    assert (fields["backbone"], fields["precision"], fields["splits_sha256"]) == ("random", "float32", "ab" * 32)
    assert fields["conformal_class_thresholds"] == [0.5, None, 0.7]
    assert (fields["unseen_type"], fields["photo_limits"]) == (UNSEEN_TYPE, PHOTO_LIMITS)
    assert fields["meterlib_version"] == content["versions"]["meterlib"] and fields["versions"] == content["versions"]
    served = Predictor.load(exported)
    assert served.calibration.to_fields() == CALIBRATION
    assert (served.class_names, served.image_size, served.mean, served.std) == (
        ["zeta", "alpha", "mu"], 32, [0.5] * 3, [0.25] * 3)
    assert served.calibration == Predictor.load(calibrated).calibration


def test_an_export_without_reference_features_gives_logits_alone_and_says_why_no_unseen_type(exported, photos):
    proto = onnx.load(exported)
    assert [item.name for item in proto.graph.output] == [onnx_metadata.OUTPUT_NAME]
    assert onnx_files.similarity_nodes(proto.graph) == []
    with pytest.warns(UserWarning, match="no reference features"):  # a calibrated model: said once, on load
        served = Predictor.load(exported)
    assert not served.has_similarity and served.calibration.unseen_type is not None
    assert "no reference features" in served.unseen_type_note
    answers = served.predict_many(photos)
    assert all(answer.unseen_p is None and answer.reason != "unseen_type" for answer in answers)


def test_onnx_answers_as_the_checkpoint_does(calibrated, exported, photos):
    torch_predictor, onnx_predictor = Predictor.load(calibrated, device="cpu"), Predictor.load(exported)
    assert onnx_predictor.with_folded_batch_norms() is onnx_predictor
    np.testing.assert_allclose(onnx_predictor.probabilities(photos), torch_predictor.probabilities(photos),
                               atol=1e-4)
    expected, got = torch_predictor.predict_many(photos, top_k=3), onnx_predictor.predict_many(photos, top_k=3)
    assert [(p.label, p.unknown, p.top_classes, p.prediction_set) for p in got] == \
           [(p.label, p.unknown, p.top_classes, p.prediction_set) for p in expected]
    outcomes = onnx_predictor.predict_each([photos[0], b"not a photo"], names=["good", "bad"], batch_size=1)
    assert outcomes[0].ok and outcomes[1].error.startswith("not an image file")
    assert onnx_predictor.logits([]).shape == (0, 3)


def test_predict_command_runs_an_onnx_model(calibrated, exported, photos, tmp_path, capsys):
    rows = {}
    for model in (calibrated, exported):
        out = tmp_path / f"{model.suffix[1:]}.csv"
        assert main(["predict", str(photos[0].parent), "--model", str(model), "--csv", str(out)]) == 0
        with open(out, newline="") as handle:
            rows[model.suffix] = list(csv.DictReader(handle))
    assert capsys.readouterr().err == ""
    assert len(rows[".onnx"]) == len(photos)
    for ours, theirs in zip(rows[".onnx"], rows[".pt"]):
        assert [ours[key] for key in ("file", "label", "top1_class", "prediction_set")] == \
               [theirs[key] for key in ("file", "label", "top1_class", "prediction_set")]
        assert float(ours["confidence"]) == pytest.approx(float(theirs["confidence"]), abs=1e-4)


def _rewritten(exported, tmp_path, change) -> str:
    """A copy of the export whose metadata text is ``change(fields)`` (None: no metadata)."""
    proto = onnx.load(exported)
    text = change(_metadata(exported))
    del proto.metadata_props[:]
    if text is not None:
        proto.metadata_props.add(key=onnx_metadata.METADATA_KEY, value=text)
    path = tmp_path / "changed.onnx"
    onnx.save_model(proto, path)
    return str(path)


@pytest.mark.parametrize("change, message", [
    (lambda fields: None, "an ONNX model without meterlib's metadata"),
    (lambda fields: "{not json", "meterlib metadata is not valid JSON"),
    (lambda fields: json.dumps({**fields, "format_version": 9}), "metadata format 9 is not one this meterlib reads"),
    (lambda fields: json.dumps({**fields, "temperature": -1}),
     "metadata field 'temperature' must be a finite number > 0"),
    (lambda fields: json.dumps({k: v for k, v in fields.items() if k != "class_names"}),
     "metadata field 'class_names' missing"),
    (lambda fields: json.dumps({**fields, "class_names": ["a", "b"], "conformal_class_thresholds": None}),
     "not one logit for each of the 2 classes"),
    (lambda fields: json.dumps({**fields, "image_size": 64}), "is not 'pixels' of shape (batch, 3, 64, 64)"),
    (lambda fields: json.dumps({**fields, "precision": "int4"}), "metadata field 'precision' must be one of"),
    (lambda fields: json.dumps({**fields, "unseen_type": {**UNSEEN_TYPE, "alpha": 1.5}}),
     "metadata field 'unseen_type' needs 'alpha' as a number between 0 and 1"),
    (lambda fields: json.dumps({**fields, "unseen_type": {**UNSEEN_TYPE, "fused": [0.5]}}),
     "metadata field 'unseen_type' needs 'energy', 'similarity' and 'fused' of one length"),
    (lambda fields: json.dumps({**fields, "photo_limits": {**PHOTO_LIMITS, "sharpness": -1}}),
     "metadata field 'photo_limits' needs finite numbers >= 0"),
    (lambda fields: json.dumps({**fields, "photo_limits": {"brightness": 0.1}}),
     "metadata field 'photo_limits' must be a dict with the keys brightness"),
])
def test_bad_metadata_is_refused_naming_the_file(exported, tmp_path, change, message):
    path = _rewritten(exported, tmp_path, change)
    with pytest.raises(ModelFileError) as caught:
        Predictor.load(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)


def test_files_that_are_no_onnx_model_are_refused(tmp_path, photos, capsys):
    (tmp_path / "letter.onnx").write_text("Dear customer")
    with pytest.raises(ModelFileError, match=r"letter\.onnx: not a usable ONNX model"):
        Predictor.load(tmp_path / "letter.onnx")
    with pytest.raises(ModelFileError, match=r"gone\.onnx: ONNX model not found"):
        Predictor.load(tmp_path / "gone.onnx")
    assert main(["predict", str(photos[0]), "--model", str(tmp_path / "gone.onnx")]) == 1
    assert "gone.onnx: ONNX model not found; `python -m meterlib export` writes one" in capsys.readouterr().err


@pytest.mark.parametrize(("initializer", "value"), [("head.weight", math.nan), ("frozen_part.0.weight", math.inf)])
def test_an_onnx_model_with_nan_or_inf_weights_is_refused_naming_the_initializer(exported, tmp_path, initializer,
                                                                                  value):
    from onnx import numpy_helper

    proto = onnx.load(exported)
    tensor = next(item for item in proto.graph.initializer if item.name == initializer)
    values = numpy_helper.to_array(tensor).copy()
    values.flat[-1] = value
    tensor.CopyFrom(numpy_helper.from_array(values, initializer))
    path = tmp_path / "broken.onnx"
    onnx.save_model(proto, path)
    with pytest.raises(ModelFileError) as caught:
        Predictor.load(path)
    assert str(caught.value) == (f"{path}: the weights hold NaN or inf values in {initializer!r}; "
                                 "the model is broken (export it again from a good checkpoint)")


def test_a_model_named_for_the_other_runtime_gets_the_hint_to_rename_it(calibrated, exported, tmp_path):
    onnx_as_pt, pt_as_onnx = tmp_path / "model.pt", tmp_path / "model.onnx"
    shutil.copy(exported, onnx_as_pt)
    shutil.copy(calibrated, pt_as_onnx)
    with pytest.raises(ModelFileError) as caught:
        Predictor.load(onnx_as_pt)
    assert str(caught.value) == f"{onnx_as_pt}: not a meterlib checkpoint (this is an ONNX model: give it a .onnx name)"
    with pytest.raises(ModelFileError) as caught:
        Predictor.load(pt_as_onnx)
    assert str(caught.value) == f"{pt_as_onnx}: this is a PyTorch checkpoint: give it a .pt name"


def test_an_onnx_path_that_is_no_regular_file_is_named_without_hanging(tmp_path):
    (tmp_path / "status.onnx").symlink_to("/proc/self/status")  # procfs: "regular", 0 bytes, holds text
    with pytest.raises(ModelFileError, match=r"status\.onnx: not a usable ONNX model \("):
        Predictor.load(tmp_path / "status.onnx")
    (tmp_path / "folder.onnx").mkdir()
    with pytest.raises(ModelFileError) as caught:
        Predictor.load(tmp_path / "folder.onnx")
    assert str(caught.value) == f"{tmp_path / 'folder.onnx'}: not a regular file (a directory)"


@pytest.mark.parametrize("package", ["onnxruntime", "onnx"])
def test_a_missing_onnx_package_says_how_to_install_it(package, calibrated, exported, photos, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, package, None)  # makes `import package` fail, as when not installed
    hint = 'pip install "meterlib[onnx]"'
    if package == "onnxruntime":
        with pytest.raises(UnavailableError, match=r"onnxruntime is not installed.*meterlib\[onnx\]"):
            Predictor.load(exported)
        assert main(["predict", str(photos[0]), "--model", str(exported)]) == 1
        assert capsys.readouterr().err.strip().endswith(hint)
    with pytest.raises(UnavailableError) as caught:
        export.export_model(calibrated, splits_csv=calibrated.parent / "splits.csv")
    assert str(caught.value).startswith(f"{package} is not installed") and hint in str(caught.value)


def _comparison(**changed) -> check.Comparison:
    """A comparison of 200 photos that every check passes, with ``changed`` values."""
    fields = dict(photos=200, reference_accuracy=0.9, accuracy=0.9, agreement=1.0, max_probability_difference=1e-5,
                  answer_agreement=1.0, max_similarity_difference=1e-6)
    return check.Comparison(**{**fields, **changed})


def test_int8_that_loses_more_than_a_point_is_refused_unless_forced():
    comparison = _comparison(accuracy=0.885, agreement=0.95, max_probability_difference=0.3, answer_agreement=0.9,
                             max_similarity_difference=0.2)
    with pytest.raises(ExportError, match=r"m\.onnx: INT8 loses 1\.5 points .*--force"):
        check.refuse_int8_loss(comparison, source="m.onnx", force=False)
    check.refuse_int8_loss(comparison, source="m.onnx", force=True)
    # Other answers and similarities apart are INT8's rounding: only the accuracy counts.
    check.refuse_int8_loss(_comparison(accuracy=0.891, agreement=0.97, max_probability_difference=0.2,
                                       answer_agreement=0.8, max_similarity_difference=0.3),
                           source="m.onnx", force=False)


@pytest.mark.parametrize("changed, message", [
    (dict(agreement=0.99), "(2 with another top-1 class, 0 with another answer or reason"),
    (dict(answer_agreement=0.995), "(0 with another top-1 class, 1 with another answer or reason"),
    (dict(max_probability_difference=2e-3), "calibrated probabilities up to 0.002 apart"),
    (dict(max_similarity_difference=5e-4), "unseen-type similarities up to 0.0005 apart, allowed 0.0001"),
])
def test_float32_that_answers_otherwise_is_refused(changed, message):
    check.refuse_float32_difference(_comparison(), source="m.pt")
    check.refuse_float32_difference(_comparison(max_similarity_difference=None), source="m.pt")
    with pytest.raises(ExportError) as caught:
        check.refuse_float32_difference(_comparison(**changed), source="m.pt")
    assert str(caught.value).startswith("m.pt: the ONNX export does not answer as the checkpoint does")
    assert message in str(caught.value)


def test_the_summary_reports_the_answers_and_the_similarity_when_there_is_one():
    line = check.summary(_comparison(answer_agreement=0.995, max_similarity_difference=0.03), against="PyTorch")
    assert "same top-1 on 100.0%, same answer on 99.5%" in line and line.endswith("similarities within 0.03")
    assert "similarit" not in check.summary(_comparison(max_similarity_difference=None), against="PyTorch")
