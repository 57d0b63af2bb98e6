"""Checkpoint files: round trip with weights_only=True, atomic writes, mismatch errors, bounded reads."""

import dataclasses
import hashlib
import os
import pickle
import platform
import re
import threading

import pytest
import torch

from meterlib.confidence import selective
from meterlib.errors import ModelFileError
from meterlib.model import backbones, checkpoint
from meterlib.run import bounded_read

CLASSES = ["brand_a", "brand_b", "brand_c"]
SPEC = checkpoint.ModelSpec(backbone="random", class_names=CLASSES, image_size=32,
                            mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return backbones.build_classifier("random", len(CLASSES), pretrained=False).eval()


@pytest.fixture()
def saved(tmp_path, model):
    path = tmp_path / "model" / "ckpt.pt"
    checkpoint.save(path, model=model, spec=SPEC,
                    training={"preset": "seed", "lr_head": 1e-3, "strengths": (0.7, 10)},
                    splits_sha256="ab" * 32, metrics={"val_accuracy": 0.5})
    return path


def test_round_trip_loads_with_weights_only_and_reproduces_logits(saved, model):
    raw = torch.load(saved, weights_only=True)
    assert raw["class_names"] == CLASSES and raw["backbone"] == "random"
    assert raw["temperature"] == 1.0 and raw["unknown_threshold"] == selective.DEFAULT_UNKNOWN_THRESHOLD
    assert raw["training"]["strengths"] == [0.7, 10]
    assert set(raw["versions"]) >= {"torch", "timm", "meterlib"}
    rebuilt = checkpoint.build_model(checkpoint.load(saved))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def test_the_model_spec_is_stored_as_plain_fields(saved):
    raw = torch.load(saved, weights_only=True)
    assert (raw["backbone"], raw["class_names"], raw["image_size"]) == ("random", CLASSES, 32)
    assert raw["mean"] == [0.5] * 3 and raw["std"] == [0.25] * 3
    assert all(isinstance(x, float) for x in raw["mean"] + raw["std"])


def test_release_in_place_adds_calibration_and_keeps_the_rest(saved):
    checkpoint.release(saved, saved, temperature=1.7, conformal_quantile=0.9)
    content = checkpoint.load(saved)
    assert content["temperature"] == 1.7 and content["conformal_quantile"] == 0.9
    assert content["class_names"] == CLASSES
    with pytest.raises(ModelFileError, match="state_dict"):
        checkpoint.release(saved, saved, state_dict={})


def test_interrupted_write_leaves_the_old_file(saved, monkeypatch):
    before = saved.read_bytes()

    def broken_save(obj, target):
        with open(target, "wb") as handle:
            handle.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.release(saved, saved, temperature=2.0)
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]


def test_unstorable_values_are_rejected_with_their_location(tmp_path, model):
    with pytest.raises(ModelFileError, match=r"\['training'\]\['when'\]: cannot store"):
        checkpoint.save(tmp_path / "x.pt", model=model, spec=SPEC, training={"when": object()})


def test_mismatching_classes_or_backbone_give_clear_errors(saved):
    content = checkpoint.load(saved)
    checkpoint.check_matches(content, class_names=CLASSES, backbone="random")
    with pytest.raises(ModelFileError, match="unknown to the model: brand_z"):
        checkpoint.check_matches(content, class_names=[*CLASSES, "brand_z"])
    with pytest.raises(ModelFileError, match="different order"):
        checkpoint.check_matches(content, class_names=CLASSES[::-1])
    with pytest.raises(ModelFileError,
                       match=r"its 3 classes do not match the data's 2 classes \(missing from the data: brand_c\)"):
        checkpoint.check_matches(content, class_names=CLASSES[:2])
    with pytest.raises(ModelFileError, match="backbone 'random'"):
        checkpoint.check_matches(content, backbone="efficientnet_lite0")


def test_missing_or_foreign_files_are_named(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        checkpoint.load(tmp_path / "absent.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(ModelFileError, match="not a meterlib checkpoint"):
        checkpoint.load(foreign)


def test_a_field_that_load_would_refuse_is_never_written(saved, tmp_path, model):
    before = saved.read_bytes()
    with pytest.raises(ModelFileError, match=r"field 'temperature' must be a finite number > 0"):
        checkpoint.release(saved, saved, temperature=-1.0)
    assert saved.read_bytes() == before
    with pytest.raises(ModelFileError, match=r"x\.pt: checkpoint field 'image_size' must be an int"):
        checkpoint.save(tmp_path / "x.pt", model=model, spec=dataclasses.replace(SPEC, image_size=8))
    assert not (tmp_path / "x.pt").exists()


def test_a_checkpoint_of_a_newer_format_is_refused_and_the_current_one_loads(saved):
    content = torch.load(saved, weights_only=True)
    assert content["format_version"] == checkpoint.FORMAT_VERSION
    torch.save({**content, "format_version": checkpoint.FORMAT_VERSION + 1}, saved)
    with pytest.raises(ModelFileError,
                       match=rf"checkpoint format {checkpoint.FORMAT_VERSION + 1} is newer than this meterlib"):
        checkpoint.load(saved)
    torch.save(content, saved)
    assert checkpoint.load(saved)["format_version"] == checkpoint.FORMAT_VERSION


def _fields(**changes) -> dict:
    """The smallest valid checkpoint content, with fields replaced."""
    content = {"format": checkpoint.FORMAT, "format_version": 1, "state_dict": {"w": torch.zeros(1)},
               "backbone": "random", "class_names": ["a", "b"], "image_size": 32, "mean": [0.5] * 3,
               "std": [0.25] * 3}
    return {**content, **changes}


@pytest.mark.parametrize("changes", [
    {}, dict(image_size=2048), dict(unknown_threshold=0), dict(unknown_threshold=1.0), dict(temperature=1e-9),
    dict(conformal_quantile=None), dict(conformal_quantile=0.0), dict(conformal_quantile=float("inf")),
    dict(mean=[-1, 0, 2.5]), dict(std=[1e-9, 1, 1]), dict(backbone="resnet18"), dict(backbone="efficientnet_lite0"),
    dict(conformal_u=0), dict(conformal_u=1.0), dict(conformal_class_thresholds=[0.0, float("inf")]),
])
def test_values_at_the_edge_of_each_range_are_accepted(changes):
    checkpoint.check_fields(_fields(**changes))


@pytest.mark.parametrize(("changes", "message"), [
    (dict(format_version=0), "field 'format_version' must be an int >= 1, got 0"),
    (dict(format_version=True), "field 'format_version' must be an int >= 1, got True"),
    (dict(image_size=31), "field 'image_size' must be an int from 32 to 2048, got 31"),
    (dict(image_size=2049), "field 'image_size' must be an int from 32 to 2048, got 2049"),
    (dict(unknown_threshold=1.01), "field 'unknown_threshold' must be a number from 0 to 1"),
    (dict(unknown_threshold=-0.01), "field 'unknown_threshold' must be a number from 0 to 1"),
    (dict(unknown_threshold=True), "field 'unknown_threshold' must be a number from 0 to 1"),
    (dict(temperature=0), "field 'temperature' must be a finite number > 0"),
    (dict(temperature=float("inf")), "field 'temperature' must be a finite number > 0"),
    (dict(conformal_quantile=-1e-9), "field 'conformal_quantile' must be None, a number >= 0 or inf"),
    (dict(conformal_quantile="0.5"), "field 'conformal_quantile' must be None, a number >= 0 or inf"),
    (dict(mean=[0.5, 0.5, float("-inf")]), "field 'mean' must be a list of 3 finite numbers"),
    (dict(mean=(0.5, 0.5, 0.5)), "field 'mean' must be a list of 3 finite numbers"),
    (dict(mean=[0.5] * 4), "field 'mean' must be a list of 3 finite numbers"),
    (dict(std=[0.25, 0.25, -0.25]), r"field 'std' must be a list of 3 finite numbers > 0"),
    (dict(class_names=["a", " "]), "field 'class_names' must be a list of at least 2 distinct, non-empty"),
    (dict(class_names=["a"]), "field 'class_names' must be a list of at least 2"),
    (dict(class_names=("a", "b")), "field 'class_names' must be a list"),
    (dict(state_dict={"w": [0.0]}), "field 'state_dict' must be a non-empty dict of tensors by parameter name"),
    (dict(state_dict={1: torch.zeros(1)}), "field 'state_dict' must be a non-empty dict of tensors"),
    (dict(state_dict=[torch.zeros(1)]), "field 'state_dict' must be a non-empty dict of tensors"),
    (dict(conformal_u=1.5), "field 'conformal_u' must be a number from 0 to 1"),
    (dict(conformal_u=-0.5), "field 'conformal_u' must be a number from 0 to 1"),
    (dict(conformal_u=float("nan")), "field 'conformal_u' must be a number from 0 to 1"),
    (dict(conformal_class_thresholds=[0.5]), "field 'conformal_class_thresholds' must be a list of 2 numbers"),
    (dict(conformal_class_thresholds=(0.5, 0.5)), "field 'conformal_class_thresholds' must be a list of 2 numbers"),
    (dict(conformal_class_thresholds=[0.5, -0.1]), r"field 'conformal_class_thresholds' must hold numbers >= 0 \(inf allowed\)"),
    (dict(conformal_class_thresholds=[0.5, True]), r"field 'conformal_class_thresholds' must hold numbers >= 0 \(inf allowed\)"),
])
def test_a_value_out_of_range_names_the_field_and_the_rule(changes, message):
    with pytest.raises(ModelFileError, match=rf"^model\.pt: checkpoint {message}"):
        checkpoint.check_fields(_fields(**changes), source="model.pt")


def test_missing_fields_are_listed_in_order():
    content = _fields()
    del content["mean"]
    with pytest.raises(ModelFileError, match=r"^x: checkpoint field 'mean' missing$"):
        checkpoint.check_fields(content, source="x")
    del content["image_size"], content["std"]
    with pytest.raises(ModelFileError, match=r"^x: checkpoint fields 'image_size', 'mean', 'std' missing$"):
        checkpoint.check_fields(content, source="x")


def test_a_long_bad_value_is_shortened_in_the_message():
    with pytest.raises(ModelFileError) as caught:
        checkpoint.check_fields(_fields(class_names=["a b c d e f g h i j k l m n o p"] * 6), source="m.pt")
    shown = str(caught.value).partition(", got ")[2]
    assert shown.endswith(" ...") and len(shown) <= 80


def test_file_sha256_hashes_every_chunk(tmp_path):
    data = bytes(range(256)) * 8200  # a little over 2 MiB: three 1 MiB reads
    (tmp_path / "splits.csv").write_bytes(data)
    assert checkpoint.file_sha256(tmp_path / "splits.csv") == hashlib.sha256(data).hexdigest()


def test_library_versions_name_each_library_as_installed():
    import numpy
    import timm
    import torchvision

    import meterlib

    assert checkpoint.library_versions() == {
        "python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
        "timm": timm.__version__, "numpy": numpy.__version__, "meterlib": meterlib.__version__}


def test_plain_keeps_only_literals_and_tensors(tmp_path):
    import numpy as np

    tensor = torch.ones(2)
    value = {"n": np.int64(3), "x": np.float32(0.5), "a": np.arange(3).reshape(1, 3), "p": tmp_path,
             "t": (1, "b"), "flag": True, "v": torch.__version__, "none": None, "w": tensor, 7: "key"}
    plain = checkpoint.plain(value)
    assert plain == {"n": 3, "x": 0.5, "a": [[0, 1, 2]], "p": str(tmp_path), "t": [1, "b"], "flag": True,
                     "v": str(torch.__version__), "none": None, "w": tensor, "7": "key"}
    assert plain["w"] is tensor and type(plain["v"]) is str and type(plain["n"]) is int
    assert type(plain["flag"]) is bool


def test_check_matches_names_what_differs(saved):
    content = checkpoint.load(saved)
    checkpoint.check_matches(content)  # nothing asked: nothing to differ
    checkpoint.check_matches(content, backbone="random")
    with pytest.raises(ModelFileError,
                       match=r"^m\.pt: trained with backbone 'random', but 'resnet18' was asked for$"):
        checkpoint.check_matches(content, backbone="resnet18", source="m.pt")
    many = [*CLASSES[:2], *(f"new_{i}" for i in range(7))]
    with pytest.raises(ModelFileError) as caught:
        checkpoint.check_matches(content, class_names=many, source="m.pt")
    assert str(caught.value) == (
        "m.pt: its 3 classes do not match the data's 9 classes (unknown to the model: new_0, new_1, new_2, "
        "new_3, new_4; missing from the data: brand_c); retrain with notebook 02")


def test_release_moves_the_calibrated_model_into_place_and_refuses_protected_fields(saved, tmp_path):
    target = tmp_path / "released.pt"
    for protected in ("format", "format_version", "state_dict"):
        with pytest.raises(ModelFileError,
                           match=rf"^{re.escape(str(saved))}: the fields {protected} cannot be changed$"):
            checkpoint.release(saved, target, **{protected: 1})
    with pytest.raises(ModelFileError, match="the fields format, state_dict cannot be changed"):
        checkpoint.release(saved, target, state_dict={}, format="x")
    assert saved.exists() and not target.exists()
    content = checkpoint.release(saved, target, temperature=1.25)
    assert content["temperature"] == 1.25 and checkpoint.load(target)["temperature"] == 1.25
    assert not saved.exists()


@pytest.mark.parametrize(("data", "reason"), [
    (b"epochs: 6\n", "not a PyTorch file"),
    (b"PK\x03\x04 cut short", "truncated or damaged: the file ends before its zip directory"),
])
def test_a_file_torch_cannot_read_gets_a_one_line_reason(tmp_path, data, reason):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(data)
    with pytest.raises(ModelFileError, match=rf"^{re.escape(str(path))}: not a meterlib checkpoint \({reason}\)$"):
        checkpoint.load(path)


def test_a_zip_archive_or_a_pickled_object_is_named(tmp_path):
    import fractions
    import zipfile

    path = tmp_path / "ckpt.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a model")
    with pytest.raises(ModelFileError, match=r"\(a zip archive, but not a PyTorch file\)$"):
        checkpoint.load(path)
    torch.save({"format": checkpoint.FORMAT, "share": fractions.Fraction(1, 3)}, path)
    with pytest.raises(ModelFileError, match=r"\(it holds pickled code or objects \(fractions.Fraction\); "
                                                         r"meterlib refuses those, because unpickling can run code\)$"):
        checkpoint.load(path)


class _System:
    """Unpickling an instance runs ``os.system(command)``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.mark.parametrize("zipped", [True, False])
def test_a_pickle_that_would_run_a_shell_command_is_refused_without_running_it(tmp_path, zipped):
    marker = tmp_path / "ran"
    path = tmp_path / "ckpt.pt"
    torch.save({"format": checkpoint.FORMAT, "hook": _System(f"touch {marker}")}, path,
               _use_new_zipfile_serialization=zipped)
    with pytest.raises(ModelFileError) as caught:
        checkpoint.load(path)
    assert not marker.exists()
    assert str(caught.value) == (f"{path}: not a meterlib checkpoint (it holds pickled code or objects "
                                 f"({os.system.__module__}.system); meterlib refuses those, because unpickling can run code)")


@pytest.mark.parametrize("wording", [
    "Weights only load failed ... Unsupported global: GLOBAL {name} was not an allowed global by default.",
    "Weights only load failed ... Trying to load unsupported GLOBAL {name} whose module posix is blocked.",
    "weights_only refused the file (a wording no torch has used yet)",
])
@pytest.mark.parametrize("zipped", [True, False])
def test_the_refused_global_is_named_in_any_torch_wording(tmp_path, monkeypatch, wording, zipped):
    path = tmp_path / "ckpt.pt"
    torch.save({"format": checkpoint.FORMAT, "hook": _System("true")}, path, _use_new_zipfile_serialization=zipped)
    name = f"{os.system.__module__}.system"

    def refuse(*args, **kwargs):
        raise pickle.UnpicklingError(wording.format(name=name))

    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(ModelFileError) as caught:
        checkpoint.load(path)
    if zipped or "{name}" in wording:  # the zip's pickle is read without torch's words; the legacy file needs them
        assert f"(it holds pickled code or objects ({name}); meterlib refuses those" in str(caught.value)
    else:
        assert str(caught.value).endswith("(not a PyTorch file)")


def test_a_torch_file_that_is_no_checkpoint_says_what_it_holds(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save([1, 2], path)
    with pytest.raises(ModelFileError, match=rf"^{re.escape(str(path))}: not a meterlib checkpoint "
                                                         r"\(it holds a list, not a dict of fields\)$"):
        checkpoint.load(path)
    torch.save({"format": "other"}, path)
    with pytest.raises(ModelFileError, match=r": not a meterlib checkpoint \(no format='meterlib-checkpoint' "
                                                         r"field\)$"):
        checkpoint.load(path)


def test_build_model_gives_the_eval_mode_network_or_names_the_misfit(saved):
    content = checkpoint.load(saved)
    model = checkpoint.build_model(content)
    assert not model.training and next(model.parameters()).device.type == "cpu"
    assert model.head.out_features == 3
    content["class_names"] = ["a", "b"]  # the head's weights are for 3 classes
    with pytest.raises(ModelFileError) as caught:
        checkpoint.build_model(content, source="m.pt")
    message = str(caught.value)
    assert message.startswith("m.pt: weights do not fit backbone 'random' with 2 classes (Error(s) in loading")
    assert "\n" not in message and len(message) < 400 and message.endswith(" ...)")


def test_a_path_that_holds_no_file_to_read_is_named(tmp_path):
    for name, make, problem in (
            ("absent.pt", lambda p: None, "checkpoint not found (run notebook 02 to train one)"),
            ("folder.pt", lambda p: p.mkdir(), "not a regular file (a directory)"),
            ("pipe.pt", os.mkfifo, "not a regular file (a FIFO, socket or device)"),
            ("empty.pt", lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
            # procfs calls its files regular and 0 bytes long, yet they hold text
            ("status.pt", lambda p: p.symlink_to("/proc/self/status"), "not a meterlib checkpoint (not a PyTorch file)")):
        make(tmp_path / name)
        with pytest.raises(ModelFileError) as caught:
            checkpoint.load(tmp_path / name)
        assert str(caught.value) == f"{tmp_path / name}: {problem}"


def test_save_stores_the_split_hash_metrics_and_a_utc_creation_time(saved, tmp_path, model):
    import datetime

    raw = torch.load(saved, weights_only=True)
    assert raw["splits_sha256"] == "ab" * 32 and raw["metrics"] == {"val_accuracy": 0.5}
    created = datetime.datetime.fromisoformat(raw["created"])
    assert created.utcoffset() == datetime.timedelta(0) and created.microsecond == 0
    bare = torch.load(checkpoint.save(tmp_path / "bare.pt", model=model, spec=SPEC), weights_only=True)
    assert bare["splits_sha256"] == "" and bare["metrics"] == {}


def test_load_names_the_file_whose_field_is_malformed(saved):
    torch.save({**torch.load(saved, weights_only=True), "temperature": -1.0}, saved)
    with pytest.raises(ModelFileError) as caught:
        checkpoint.load(saved)
    assert str(caught.value) == f"{saved}: checkpoint field 'temperature' must be a finite number > 0, got -1.0"


def test_an_unstorable_value_inside_a_list_is_named_by_its_index():
    with pytest.raises(ModelFileError) as caught:
        checkpoint.plain({"t": [1, object()]}, where="x")
    assert str(caught.value) == ("x['t'][1]: cannot store a object in a checkpoint "
                                 "(only tensors, numbers, strings, lists and dicts)")
    with pytest.raises(ModelFileError, match=r"^checkpoint: cannot store a set"):
        checkpoint.plain({1, 2})


def test_two_missing_fields_are_plural_and_the_default_source_is_the_checkpoint():
    content = _fields()
    del content["mean"], content["std"]
    with pytest.raises(ModelFileError) as caught:
        checkpoint.check_fields(content)
    assert str(caught.value) == "checkpoint: checkpoint fields 'mean', 'std' missing"


def test_a_class_mismatch_lists_five_names_at_most_and_defaults_to_the_checkpoint(saved):
    content = {**checkpoint.load(saved), "class_names": [f"c{i}" for i in range(8)]}
    with pytest.raises(ModelFileError) as caught:
        checkpoint.check_matches(content, class_names=["c0"])
    assert str(caught.value) == ("checkpoint: its 8 classes do not match the data's 1 classes "
                                 "(missing from the data: c1, c2, c3, c4, c5); retrain with notebook 02")
    with pytest.raises(ModelFileError) as caught:
        checkpoint.check_matches(content, class_names=content["class_names"][::-1])
    assert "(same names in a different order);" in str(caught.value)


def test_a_model_file_is_read_within_a_size_limit(saved, monkeypatch):
    monkeypatch.setattr(checkpoint, "MAX_MODEL_BYTES", saved.stat().st_size - 1)
    with pytest.raises(ModelFileError, match=rf"^{re.escape(str(saved))}: too large \(over [\d.]+ MB\)$"):
        checkpoint.load(saved)
    monkeypatch.setattr(checkpoint, "MAX_MODEL_BYTES", saved.stat().st_size)
    assert checkpoint.load(saved)["class_names"] == CLASSES


def test_a_model_file_whose_read_blocks_is_given_up_after_the_time_limit(saved, monkeypatch):
    released, real_read = threading.Event(), os.read

    def blocking_read(fd, size):  # as /proc/kmsg does until the kernel logs something
        released.wait()
        return real_read(fd, size)

    monkeypatch.setattr(checkpoint, "MODEL_READ_SECONDS", 0.2)
    monkeypatch.setattr(bounded_read.os, "read", blocking_read)
    try:
        with pytest.raises(ModelFileError) as caught:
            checkpoint.load(saved)
    finally:
        released.set()  # lets the abandoned reader finish and close the file
    assert str(caught.value) == f"{saved}: reading did not finish within 0.2 s (a file that blocks)"


@pytest.mark.parametrize("name", ["frozen_part.0.weight", "frozen_part.1.running_var", "head.weight"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_weights_with_nan_or_inf_are_refused_naming_the_first_bad_tensor(saved, name, value):
    state = torch.load(saved, weights_only=True)
    state["state_dict"][name].view(-1)[3] = value
    state["state_dict"]["head.bias"][0] = float("nan")  # the last tensor: never the first bad one
    torch.save(state, saved)
    with pytest.raises(ModelFileError) as caught:
        checkpoint.load(saved)
    assert str(caught.value) == (f"{saved}: checkpoint field 'state_dict' holds NaN or inf values in {name!r}; "
                                 "the weights are broken (retrain with notebook 02)")


def test_a_model_with_nan_weights_is_never_written(tmp_path, model):
    with torch.no_grad():
        model.head.weight[0, 0] = float("nan")
    with pytest.raises(ModelFileError, match=r"x\.pt: checkpoint field 'state_dict' holds NaN .* 'head.weight'"):
        checkpoint.save(tmp_path / "x.pt", model=model, spec=SPEC)
    assert not (tmp_path / "x.pt").exists()


def test_class_names_that_do_not_fit_the_head_are_named_before_the_fields_that_follow_them(saved):
    content = torch.load(saved, weights_only=True)
    rows = 4  # an out_of_fold field for the weights' 3 classes: right for the weights, wrong for 2 names
    content.update(class_names=CLASSES[:2], out_of_fold={
        "logits": torch.zeros(rows, 3), "labels": torch.zeros(rows, dtype=torch.int64),
        "photos": [f"p{i}.jpg" for i in range(rows)], "fold": torch.zeros(rows, dtype=torch.int64), "method": "m"})
    torch.save(content, saved)
    with pytest.raises(ModelFileError) as caught:
        checkpoint.load(saved)
    assert str(caught.value) == f"{saved}: checkpoint field 'class_names' lists 2 names but the weights give 3 outputs"


def test_an_onnx_model_named_like_a_checkpoint_gets_the_hint_to_rename_it(tmp_path):
    # The first bytes of every ONNX file: ir_version 10, then the producer's name.
    path = tmp_path / "model.pt"
    path.write_bytes(b"\x08\x0a\x12\x08meterlib\x1a\x050.1.0" + bytes(64))
    with pytest.raises(ModelFileError) as caught:
        checkpoint.load(path)
    assert str(caught.value) == f"{path}: not a meterlib checkpoint (this is an ONNX model: give it a .onnx name)"
    path.write_bytes(b"\x08\x0a and then some text")
    with pytest.raises(ModelFileError, match=r"\(not a PyTorch file\)$"):
        checkpoint.load(path)


def test_is_torch_file_knows_both_torch_formats_and_nothing_else(saved, tmp_path):
    import zipfile

    legacy = tmp_path / "legacy.pt"
    torch.save({"a": 1}, legacy, _use_new_zipfile_serialization=False)
    with zipfile.ZipFile(tmp_path / "notes.zip", "w") as archive:
        archive.writestr("notes.txt", "not a model")
    # Told by how the file begins: a truncated checkpoint is still one (load then says it is damaged).
    for data in (saved.read_bytes(), saved.read_bytes()[:100], legacy.read_bytes()):
        assert checkpoint.is_torch_file(data)
    for data in ((tmp_path / "notes.zip").read_bytes(), pickle.dumps({"a": 1}), b"PK\x03\x04", b""):
        assert not checkpoint.is_torch_file(data)
