"""Fault injection on the serving side: what the Predictor accepts, and the checkpoints it refuses.

Two tables, one parametrized test each: inputs handed to the Predictor (every PIL mode, arrays,
bytes, wrong objects and parameters, broken and special files) and model files handed to
``checkpoint.load`` or the Predictor (foreign, damaged, broken and hostile files, every field out
of type or range, ONNX models too).
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from PIL import Image

from meterlib.data import photos
from meterlib.errors import DataError, ModelFileError, SettingsError
from meterlib.model import checkpoint
from meterlib.serve.predictor import Prediction, Predictor

CLASSES = ["zeta", "alpha", "mu"]
SIZE = 32
FILE = "<the input file>"  # as a case's `names`: the message must name the file the case built
DROP = object()  # as a field value: remove the field


# --- building inputs ------------------------------------------------------------------------

def picture(size: tuple[int, int] = (40, 30), seed: int = 0) -> Image.Image:
    """A random RGB picture, ``size`` = (width, height)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def in_mode(mode: str) -> Image.Image:
    """The test picture in a PIL mode, as an image of that mode read from a file would be."""
    grey = np.asarray(picture().convert("L"))
    if mode == "I;16":
        return Image.fromarray(grey.astype(np.uint16) * 257)
    if mode == "I":
        return Image.fromarray(grey.astype(np.int32) * 1000)
    if mode == "F":
        return Image.fromarray(grey.astype(np.float32) / 2)
    if mode == "P+transparency":
        img = picture().convert("P")
        img.info["transparency"] = int(np.asarray(img)[0, 0])
        return img
    return picture().convert(mode)


def saved(img: Image.Image, path: Path, **options) -> Path:
    """``img`` written to ``path``; the file must read back in the same mode."""
    img.save(path, **options)
    with Image.open(path) as back:
        assert back.mode == img.mode and ("transparency" in back.info) == ("transparency" in img.info)
    return path


def written(name: str, data: bytes) -> Callable[[Path], Path]:
    """A case input: a file ``name`` holding ``data``."""
    def make(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name
    return make


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG that claims ``width`` x ``height`` pixels: a decompression bomb when large."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def jpeg_bytes(size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    picture(size).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def fifo(folder: Path, name: str = "pipe.jpg") -> Path:
    os.mkfifo(folder / name)
    return folder / name


def directory(folder: Path, name: str = "photos.jpg") -> Path:
    (folder / name).mkdir()
    return folder / name


# --- the Predictor table --------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One input to a Predictor method and its exact outcome."""

    id: str
    make: Callable[[Path], Any]  # writes any input files under the folder, returns the argument
    problem: str = ""  # regex of the expected error; "" means the call succeeds
    names: str | None = FILE  # what the error message must name
    call: str = "predict"
    kwargs: dict = field(default_factory=dict)
    outcome: str = "top 3"  # for a success: see describe()
    like: Callable[[Path], Any] | None = None  # a source that must give the same probabilities
    error: type[Exception] = DataError


def pil_case(mode: str, suffix: str) -> Case:
    return Case(f"PIL {mode}", lambda folder: in_mode(mode),
                like=lambda folder: saved(in_mode(mode), folder / f"reference{suffix}"))


def array_case(name: str, array: np.ndarray, reference: Image.Image) -> Case:
    return Case(f"array {name}", lambda folder: array,
                like=lambda folder: saved(reference, folder / "reference.png"))


RGB = np.asarray(picture())
GREY = np.asarray(picture().convert("L"))
RGBA = np.dstack([RGB, np.tile(np.linspace(0, 255, RGB.shape[1], dtype=np.uint8), (RGB.shape[0], 1))])
WIDE = RGB.astype(np.uint16) * 257 + 3
UNIT = np.random.default_rng(1).random(RGB.shape)
JPEG = jpeg_bytes()


def one_pixel_png(folder: Path) -> Path:
    return saved(Image.new("RGB", (1, 1), (200, 10, 10)), folder / "dot.png")


def truncated_jpeg(folder: Path) -> Path:
    return written("cut.jpg", JPEG[: len(JPEG) // 2])(folder)


PREDICTOR_CASES = [
    *(pil_case(mode, suffix) for mode, suffix in [
        ("L", ".png"), ("1", ".png"), ("P", ".png"), ("P+transparency", ".png"), ("RGBA", ".png"),
        ("LA", ".png"), ("PA", ".tiff"), ("CMYK", ".tiff"), ("I;16", ".png"), ("I", ".tiff"), ("F", ".tiff")]),
    array_case("HxW uint8", GREY, Image.fromarray(GREY)),
    array_case("HxWx1 uint8", GREY[:, :, None], Image.fromarray(GREY)),
    array_case("HxWx3 uint8", RGB, Image.fromarray(RGB)),
    array_case("HxWx4 uint8", RGBA, Image.fromarray(RGBA)),
    array_case("HxW uint16", WIDE[:, :, 0], Image.fromarray(WIDE[:, :, 0])),
    array_case("HxWx3 uint16", WIDE, Image.fromarray((WIDE >> 8).astype(np.uint8))),
    array_case("HxW bool", GREY > 128, Image.fromarray(GREY > 128)),
    array_case("HxWx3 float", UNIT, Image.fromarray(np.round(UNIT * 255).astype(np.uint8))),
    Case("bytes of a JPEG", lambda folder: JPEG, like=written("meter.jpg", JPEG)),
    Case("bytearray of a JPEG", lambda folder: bytearray(JPEG), like=written("meter.jpg", JPEG)),
    Case("memoryview (ipywidgets upload)", lambda folder: memoryview(JPEG), like=written("meter.jpg", JPEG)),
    Case("str path", lambda folder: str(written("meter.jpg", JPEG)(folder)), like=written("meter.jpg", JPEG)),
    Case("1x1 PNG", one_pixel_png),
    Case("top_k above the class count is clamped", written("meter.jpg", JPEG), kwargs={"top_k": 10}),
    Case("top_k 1", written("meter.jpg", JPEG), kwargs={"top_k": 1}, outcome="top 1"),
    Case("predict_many one path, not a list", written("meter.jpg", JPEG), call="predict_many",
         outcome="1 predictions, top 3"),
    Case("predict_many mixed sources, batch_size 1",
         lambda folder: [written("meter.jpg", JPEG)(folder), JPEG, picture(), RGB], call="predict_many",
         kwargs={"batch_size": 1}, outcome="4 predictions, top 3"),
    Case("probabilities of an empty list", lambda folder: [], call="probabilities", outcome="probabilities 0x3"),
    Case("logits of a tuple", lambda folder: (JPEG, RGB), call="logits", outcome="logits 2x3"),
    # refused inputs
    Case("zero-byte file", written("empty.jpg", b""), r"empty \(0 bytes\)"),
    Case("text named .jpg", written("notes.jpg", b"meter 12345, read on Monday\n"), "not an image file"),
    Case("truncated JPEG", truncated_jpeg, "unreadable or truncated"),
    Case("decompression bomb file", written("bomb.png", png_header(30000, 30000)), r"too many pixels \(over 179 MP"),
    Case("decompression bomb bytes", lambda folder: png_header(30000, 30000), r"too many pixels \(over 179 MP",
         names="image data"),
    Case("missing file", lambda folder: folder / "absent.jpg", "file not found"),
    Case("directory", directory, "not a regular file"),
    Case("FIFO", fifo, "not a regular file"),
    Case("empty bytes", lambda folder: b"", r"empty \(0 bytes\)", names="image data (0 bytes)"),
    Case("random bytes", lambda folder: bytes(range(256)) * 4, "not an image file", names="image data (1024 bytes)"),
    Case("None", lambda folder: None, "cannot read a photo", names="None"),
    Case("an int", lambda folder: 42, "give a file path", names="type int"),
    Case("an upload dict", lambda folder: {"name": "m.jpg", "content": memoryview(JPEG)}, r"\['content'\]",
         names="type dict"),
    Case("a list given to predict", lambda folder: [JPEG], "cannot read a photo", names="type list"),
    Case("a torch tensor", lambda folder: torch.zeros(3, 8, 8), "cannot read a photo", names="torch.Tensor"),
    Case("array HxWx2", lambda folder: RGB[:, :, :2], r"expected H x W", names="shape (30, 40, 2)"),
    Case("array 4-D", lambda folder: RGB[None], r"expected H x W", names="shape (1, 30, 40, 3)"),
    Case("array 1-D", lambda folder: RGB.ravel(), r"expected H x W", names="shape (3600,)"),
    Case("array empty", lambda folder: RGB[:0], "empty array", names="shape (0, 40, 3)"),
    Case("array with NaN", lambda folder: np.where(UNIT > 0.5, np.nan, UNIT), "NaN", names="dtype float64"),
    Case("array float 0-255", lambda folder: RGB.astype(np.float32), r"must lie in \[0, 1\]",
         names="dtype float32"),
    Case("array int64", lambda folder: RGB.astype(np.int64), "unsupported dtype", names="dtype int64"),
    Case("array of objects", lambda folder: np.array([[None]]), "unsupported dtype", names="dtype object"),
    Case("one bad photo among many", lambda folder: [JPEG, b"junk", RGB], "not an image file",
         names="image 2 of 3", call="predict_many"),
    *(Case(f"top_k {value!r}", written("meter.jpg", JPEG), "must be a positive integer", names="top_k",
           kwargs={"top_k": value}, error=SettingsError) for value in (0, -1, True, 2.5, "3")),
    *(Case(f"batch_size {value!r}", lambda folder: [JPEG], "must be a positive integer", names="batch_size",
           call=call, kwargs={"batch_size": value}, error=SettingsError)
      for value, call in ((0, "predict_many"), (-4, "probabilities"), (False, "logits"), (1.5, "predict_many"))),
]


def describe(result: Any) -> str:
    """A success in a few words, checking the invariants of each kind of result."""
    if isinstance(result, Prediction):
        assert sorted(result.top_probabilities, reverse=True) == result.top_probabilities
        assert set(result.top_classes) <= set(CLASSES)
        return f"top {len(result.top_classes)}"
    if isinstance(result, list):
        return f"{len(result)} predictions, top {len(result[0].top_classes)}"
    kind = "probabilities" if np.allclose(result.sum(axis=1), 1.0) else "logits"
    return f"{kind} {result.shape[0]}x{result.shape[1]}"


@pytest.mark.parametrize("case", PREDICTOR_CASES, ids=lambda case: case.id)
def test_predictor_input(case, predictor, folder, robust):
    robust.entry = f"Predictor.{case.call}"
    argument = case.make(folder)
    reference = case.like(folder) if case.like else None
    method = getattr(predictor, case.call)
    with robust.untouched(folder):
        if not case.problem:
            assert describe(method(argument, **case.kwargs)) == case.outcome
            if reference is not None:
                np.testing.assert_allclose(predictor.probabilities(argument), predictor.probabilities(reference),
                                           rtol=0, atol=1e-6)
            robust.ok(case.outcome + (", same as its file" if reference is not None else ""))
            return
        with pytest.raises(case.error) as raised:
            method(argument, **case.kwargs)
    robust.error(raised.value, names=argument if case.names is FILE else case.names, problem=case.problem)


# --- the same photo in every form -----------------------------------------------------------

@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_path_bytes_pil_and_array_of_one_photo_predict_the_same(fmt, predictor, folder, robust):
    robust.entry = "Predictor.probabilities"
    path = folder / f"meter.{fmt.lower()}"
    picture((50, 36)).save(path, fmt)
    data = path.read_bytes()
    with Image.open(path) as opened:
        decoded = np.asarray(opened.convert("RGB"))
    forms = {"str": str(path), "bytes": data, "bytearray": bytearray(data), "memoryview": memoryview(data),
             "PIL": Image.open(path), "array": decoded}
    with robust.untouched(folder):
        expected = predictor.probabilities(path)
        for name, source in forms.items():
            np.testing.assert_allclose(predictor.probabilities(source), expected, rtol=0, atol=1e-5,
                                       err_msg=name)
    robust.ok(f"path, {', '.join(forms)} agree within 1e-5")


def test_exif_rotated_photo_as_pil_image_predicts_like_its_file(predictor, folder, robust):
    robust.entry = "Predictor.probabilities"
    exif = Image.Exif()
    exif[photos.EXIF_ORIENTATION] = 6  # the phone was held upright: turn 90 degrees clockwise
    path = folder / "phone.jpg"
    picture((60, 30)).save(path, exif=exif)
    upload = Image.open(path)
    with robust.untouched(folder):
        assert photos.load_rgb(upload).size == (30, 60)
        np.testing.assert_allclose(predictor.probabilities(upload), predictor.probabilities(path),
                                   rtol=0, atol=1e-6)
        np.testing.assert_allclose(predictor.probabilities(path.read_bytes()), predictor.probabilities(path),
                                   rtol=0, atol=1e-6)
    robust.ok("upright 30x60 from the PIL image, its bytes and its file")


# --- the checkpoint table -------------------------------------------------------------------

class MeterNote:
    """A user's own class: a checkpoint never holds one."""


class Hook:
    """A class whose pickled instance runs a function on unpickling."""

    def __reduce__(self):
        return (print, ("pickled code ran",))


class Shell:
    """A class whose pickled instance runs a shell command on unpickling."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@dataclass(frozen=True)
class CheckpointCase:
    """One checkpoint file given to ``checkpoint.load`` (or the Predictor) and its exact outcome."""

    id: str
    make: Callable[[Path, Path], Path]  # (input folder, a good checkpoint) -> the path to load
    problem: str = ""  # regex of the expected error; "" means it loads
    entry: str = "checkpoint.load"


def raw_file(name: str, data: bytes | Callable[[Path], bytes]) -> Callable[[Path, Path], Path]:
    def make(folder: Path, good: Path) -> Path:
        (folder / name).write_bytes(data(good) if callable(data) else data)
        return folder / name
    return make


def torch_file(obj: Any, **options) -> Callable[[Path, Path], Path]:
    """A case input: ``obj`` (or what it makes of the good checkpoint) saved with ``torch.save``."""
    def make(folder: Path, good: Path) -> Path:
        torch.save(obj(good) if callable(obj) else obj, folder / "ckpt.pt", **options)
        return folder / "ckpt.pt"
    return make


def with_fields(**changes) -> Callable[[Path, Path], Path]:
    """The good checkpoint with fields replaced (DROP: removed), saved without meterlib's checks."""
    def make(folder: Path, good: Path) -> Path:
        content = torch.load(good, weights_only=True)
        content.update(changes)
        content = {key: value for key, value in content.items() if value is not DROP}
        torch.save(content, folder / "ckpt.pt")
        return folder / "ckpt.pt"
    return make


def with_weight(name: str, value: float) -> Callable[[Path, Path], Path]:
    """The good checkpoint with one value of the tensor ``name`` replaced, saved without meterlib's checks."""
    def make(folder: Path, good: Path) -> Path:
        content = torch.load(good, weights_only=True)
        content["state_dict"][name].view(-1)[0] = value
        torch.save(content, folder / "ckpt.pt")
        return folder / "ckpt.pt"
    return make


def shell_pickle(**options) -> Callable[[Path, Path], Path]:
    """A torch file whose pickle would create a file in the input folder (which must stay untouched)."""
    def make(folder: Path, good: Path) -> Path:
        return torch_file({"format": checkpoint.FORMAT, "hook": Shell(f"touch {folder / 'pwned'}")},
                          **options)(folder, good)
    return make


def linked(name: str, target: str) -> Callable[[Path, Path], Path]:
    def make(folder: Path, good: Path) -> Path:
        (folder / name).symlink_to(target)
        return folder / name
    return make


@functools.cache
def exported(good: Path) -> Path:
    """The good checkpoint exported once as a float32 ONNX model beside it (needs the onnx extra)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from meterlib.export import onnx_files

    return onnx_files.write_float32(checkpoint.load(good), good.with_suffix(".onnx"), source=good)


def onnx_copy(name: str) -> Callable[[Path, Path], Path]:
    def make(folder: Path, good: Path) -> Path:
        (folder / name).write_bytes(exported(good).read_bytes())
        return folder / name
    return make


def onnx_with_nan_head(folder: Path, good: Path) -> Path:
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(exported(good))
    head = next(tensor for tensor in proto.graph.initializer if tensor.name == "head.weight")
    head.CopyFrom(numpy_helper.from_array(np.full_like(numpy_helper.to_array(head), np.nan), head.name))
    onnx.save_model(proto, folder / "model.onnx")
    return folder / "model.onnx"


def zip_archive(folder: Path, good: Path) -> Path:
    with zipfile.ZipFile(folder / "ckpt.pt", "w") as archive:
        archive.writestr("notes.txt", "not a model")
    return folder / "ckpt.pt"


def field_case(field_name: str, value: Any, requirement: str) -> CheckpointCase:
    return CheckpointCase(f"{field_name}={value!r}"[:40], with_fields(**{field_name: value}),
                          rf"field '{field_name}' must be {requirement}")


CHECKPOINT_CASES = [
    CheckpointCase("good", with_fields()),
    CheckpointCase("legacy (non-zip) torch serialization",
                   torch_file(lambda good: torch.load(good, weights_only=True),
                              _use_new_zipfile_serialization=False)),
    CheckpointCase("not calibrated: quantile None", with_fields(conformal_quantile=None)),
    CheckpointCase("quantile inf, threshold 1", with_fields(conformal_quantile=float("inf"), unknown_threshold=1)),
    CheckpointCase("text file", raw_file("ckpt.pt", b"epochs: 6\nlr: 0.001\n"), r"\(not a PyTorch file\)"),
    CheckpointCase("random bytes", raw_file("ckpt.pt", bytes(np.random.default_rng(0).integers(0, 256, 512,
                                                                                               dtype=np.uint8))),
                   r"\(not a PyTorch file\)"),
    CheckpointCase("empty file", raw_file("ckpt.pt", b""), r"empty file \(0 bytes\)"),
    CheckpointCase("zip, not torch", zip_archive, "a zip archive, but not a PyTorch file"),
    CheckpointCase("plain pickle", raw_file("ckpt.pt", pickle.dumps({"format": checkpoint.FORMAT})),
                   r"\(not a PyTorch file\)"),
    CheckpointCase("torch file holding a list", torch_file([1, 2, 3]), "holds a list, not a dict"),
    CheckpointCase("custom class instance", torch_file({"format": checkpoint.FORMAT, "note": MeterNote()}),
                   r"pickled code or objects \(\S*MeterNote\).*can run code"),
    CheckpointCase("pickled code", torch_file({"format": checkpoint.FORMAT, "hook": Hook()}),
                   r"pickled code or objects \(builtins\.print\).*can run code"),
    CheckpointCase("pickled os.system call", shell_pickle(),
                   rf"pickled code or objects \({os.system.__module__}\.system\); meterlib refuses .*can run code"),
    CheckpointCase("pickled os.system call, legacy format", shell_pickle(_use_new_zipfile_serialization=False),
                   rf"pickled code or objects \({os.system.__module__}\.system\); meterlib refuses .*can run code"),
    CheckpointCase("foreign dict", torch_file({"weights": torch.zeros(1)}), "no format='meterlib-checkpoint'"),
    CheckpointCase("truncated (cut in half)", raw_file("ckpt.pt", lambda good: good.read_bytes()[
        : good.stat().st_size // 2]), "truncated or damaged"),
    CheckpointCase("directory", lambda folder, good: directory(folder, "model.pt"), "not a regular file"),
    CheckpointCase("FIFO", lambda folder, good: fifo(folder, "model.pt"), "not a regular file"),
    CheckpointCase("missing", lambda folder, good: folder / "absent.pt", "checkpoint not found"),
    CheckpointCase("link to /proc/self/status", linked("model.pt", "/proc/self/status"), r"\(not a PyTorch file\)$"),
    CheckpointCase("NaN head weights", with_weight("head.weight", float("nan")),
                   r"field 'state_dict' holds NaN or inf values in 'head\.weight'; the weights are broken"),
    CheckpointCase("inf in a conv weight", with_weight("frozen_part.0.weight", float("inf")),
                   r"field 'state_dict' holds NaN or inf values in 'frozen_part\.0\.weight'"),
    CheckpointCase("ONNX model with a NaN initializer", onnx_with_nan_head,
                   r": the weights hold NaN or inf values in 'head\.weight'; the model is broken", entry="Predictor.load"),
    CheckpointCase("ONNX model named .pt", onnx_copy("model.pt"),
                   r"not a meterlib checkpoint \(this is an ONNX model: give it a \.onnx name\)$", entry="Predictor.load"),
    CheckpointCase("checkpoint named .onnx", raw_file("model.onnx", lambda good: good.read_bytes()),
                   r": this is a PyTorch checkpoint: give it a \.pt name$", entry="Predictor.load"),
    CheckpointCase("missing field", with_fields(image_size=DROP), "field 'image_size' missing"),
    CheckpointCase("missing fields", with_fields(mean=DROP, std=DROP), "fields 'mean', 'std' missing"),
    CheckpointCase("newer format", with_fields(format_version=2), "newer than this meterlib"),
    field_case("format_version", "1", "an int"),
    field_case("class_names", ["only"], "a list of at least 2"),
    field_case("class_names", ["a", "b", "a"], "a list of at least 2 distinct"),
    field_case("class_names", ["a", ""], "a list of at least 2 distinct, non-empty strings"),
    field_case("class_names", "abc", "a list"),
    field_case("class_names", ["a", 3], "a list of .* strings"),
    field_case("image_size", 16, "an int from 32 to 2048"),
    field_case("image_size", 100000, "an int from 32 to 2048"),
    field_case("image_size", 224.0, "an int"),
    field_case("image_size", True, "an int"),
    field_case("mean", [0.5, 0.5], "a list of 3 finite numbers"),
    field_case("mean", [0.5, float("nan"), 0.5], "a list of 3 finite numbers"),
    field_case("std", [0.25, 0.0, 0.25], r"a list of 3 finite numbers > 0"),
    field_case("std", [0.25, float("inf"), 0.25], r"a list of 3 finite numbers > 0"),
    field_case("temperature", 0.0, "a finite number > 0"),
    field_case("temperature", float("nan"), "a finite number > 0"),
    field_case("temperature", "1.5", "a finite number > 0"),
    field_case("unknown_threshold", 1.5, "a number from 0 to 1"),
    field_case("unknown_threshold", -0.1, "a number from 0 to 1"),
    field_case("conformal_quantile", -1.0, "None, a number >= 0 or inf"),
    field_case("conformal_quantile", float("nan"), "None, a number >= 0 or inf"),
    field_case("conformal_quantile", float("-inf"), "None, a number >= 0 or inf"),
    field_case("backbone", "auto", "one of resnet18, efficientnet_lite0, random"),
    field_case("backbone", "vgg16", "one of"),
    field_case("state_dict", {}, "a non-empty dict of tensors"),
    field_case("state_dict", [torch.zeros(1)], "a non-empty dict of tensors"),
    field_case("state_dict", {"0.weight": [1.0, 2.0]}, "a non-empty dict of tensors"),
    CheckpointCase("weights for 3 classes, 4 names", with_fields(class_names=[*CLASSES, "extra"]),
                   "field 'class_names' lists 4 names but the weights give 3 outputs", entry="Predictor.from_checkpoint"),
    CheckpointCase("one class name too few, out_of_fold for the weights", with_fields(class_names=CLASSES[:2], out_of_fold={
        "logits": torch.zeros(2, 3), "labels": torch.zeros(2, dtype=torch.int64), "photos": ["a.jpg", "b.jpg"],
        "fold": torch.zeros(2, dtype=torch.int64), "method": "cross-fitting"}),
        "field 'class_names' lists 2 names but the weights give 3 outputs$"),
]
LOADERS = {"checkpoint.load": checkpoint.load, "Predictor.from_checkpoint": Predictor.from_checkpoint,
           "Predictor.load": Predictor.load}


@pytest.mark.parametrize("case", CHECKPOINT_CASES, ids=lambda case: case.id)
def test_checkpoint_file(case, random_checkpoint, folder, robust):
    robust.entry = case.entry
    path = case.make(folder, random_checkpoint)
    load = LOADERS[case.entry]
    with robust.untouched(folder):
        if not case.problem:
            assert checkpoint.load(path)["class_names"] == CLASSES
            robust.ok(f"loads: {describe(Predictor.from_checkpoint(path, device='cpu').predict(JPEG))}")
            return
        with pytest.raises(ModelFileError) as raised:
            load(path)
    message = str(raised.value)
    assert "\n" not in message and "weights_only" not in message, message
    robust.error(message, names=path, problem=case.problem)
