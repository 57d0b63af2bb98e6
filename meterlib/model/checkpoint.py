"""The one self-describing model file that 02 writes and 03, 04 and the Predictor read.

A checkpoint is a plain dict of tensors and Python literals, so ``torch.load(path,
weights_only=True)`` reads it without running any pickled code. Keys:

- ``format`` / ``format_version``: ``"meterlib-checkpoint"`` / 1
- ``state_dict``: weights of ``backbones.build_classifier(backbone, len(class_names))``
- ``backbone`` (``"resnet18"``, ``"efficientnet_lite0"`` or ``"random"``), ``class_names`` (in output
  order), ``image_size``, ``mean``, ``std`` (eval preprocessing): a ``ModelSpec``
- ``training``: every training parameter (preset, epochs, learning rates, augmentation, seed, ...)
- ``splits_sha256``: SHA-256 of the splits.csv the model was trained on
- ``versions`` (python, torch, torchvision, timm, numpy, meterlib); ``metrics`` (best epoch, accuracies)
- ``temperature``, ``unknown_threshold`` (uncalibrated defaults from 02), ``conformal_quantile``,
  ``conformal_u``, ``conformal_class_thresholds``: the calibration (``confidence.fitted.Calibration``)
  that 03 fits, with ``conformal_alpha`` and ``calibration`` (what the fit found)
- ``gallery`` (optional): some training photos (see ``field_formats.gallery_problem``)
- ``out_of_fold`` (optional): see ``field_formats``

``load`` and ``write`` check every known field (see ``check_fields`` and ``field_formats.FIELDS``).
``read_model_file`` reads checkpoints and ONNX exports within fixed limits.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import os
import platform
import re
import reprlib
import textwrap
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from meterlib.confidence.fitted import Calibration
from meterlib.errors import ModelFileError, UnreadableFile
from meterlib.model import backbones, field_formats
from meterlib.run import atomic, bounded_read

FORMAT = "meterlib-checkpoint"
FORMAT_VERSION = 1
# Far above any model meterlib trains; a larger file is no model and would fill the memory.
MAX_MODEL_BYTES = 4 * 2**30
# A local disk reads the largest model in seconds; a read that takes longer is a file that blocks (procfs).
MODEL_READ_SECONDS = 60.0
_LEGACY_TORCH_START = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8"  # pickle protocol 2, torch's magic number
# torch's refusal of a global in torch 2.6 ("Unsupported global: GLOBAL x") and 2.14 ("unsupported GLOBAL x")
_REFUSED_GLOBAL = re.compile(r"unsupported (?:global: )?GLOBAL ([\w.]+)", re.IGNORECASE)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (used to tie a model to its splits manifest)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a model's numbers."""
    import numpy
    import timm
    import torch
    import torchvision

    import meterlib

    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "timm": timm.__version__,
            "numpy": numpy.__version__, "meterlib": meterlib.__version__}


def plain(value: Any, *, where: str = "checkpoint") -> Any:
    """``value`` as tensors and Python literals only (what ``weights_only=True`` can load)."""
    import numpy as np
    import torch

    if value is None or isinstance(value, torch.Tensor):
        return value
    for kind in (bool, int, float, str):  # also turns subclasses (e.g. torch's version string) plain
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()  # a numpy scalar gives a Python number, an array nested lists
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {str(key): plain(item, where=f"{where}[{key!r}]") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item, where=f"{where}[{i}]") for i, item in enumerate(value)]
    raise ModelFileError(f"{where}: cannot store a {type(value).__name__} in a checkpoint "
                         "(only tensors, numbers, strings, lists and dicts)")


def write(path: str | os.PathLike, content: dict) -> Path:
    """Atomically write a checkpoint dict (the old file survives a failed write)."""
    import torch

    content = plain(content)
    check_fields(content, source=path)  # refuse to write a file that load would refuse
    with atomic.atomic_path(path) as tmp:
        torch.save(content, tmp)
    return Path(path)


@dataclass(frozen=True)
class ModelSpec:
    """What a classifier takes and gives: its backbone, class names in output order, eval preprocessing."""

    backbone: str
    class_names: Sequence[str]
    image_size: int
    mean: Sequence[float]
    std: Sequence[float]


def save(path: str | os.PathLike, *, model, spec: ModelSpec, training: dict | None = None,
         splits_sha256: str = "", metrics: dict | None = None, **extra) -> Path:
    """Write a model and everything needed to use it again as one checkpoint file."""
    state = {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}
    content = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "state_dict": state, "backbone": spec.backbone, "class_names": list(spec.class_names),
        "image_size": int(spec.image_size), "mean": list(map(float, spec.mean)), "std": list(map(float, spec.std)),
        "training": dict(training or {}), "splits_sha256": splits_sha256,
        "versions": library_versions(), "metrics": dict(metrics or {}),
        # The ONNX metadata requires these, so every checkpoint carries them, uncalibrated until 03.
        **{name: value for name, value in Calibration().to_fields().items()
           if name in field_formats.REQUIRED_IN_ONNX},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    content.update(extra)
    return write(path, content)


def load(path: str | os.PathLike) -> dict:
    """Read and validate a checkpoint with ``torch.load(weights_only=True)``; errors name file and field."""
    path = Path(path)
    content = _read(path)
    if not isinstance(content, dict):
        raise ModelFileError(f"{path}: not a meterlib checkpoint (it holds a {type(content).__name__}, "
                             "not a dict of fields)")
    if content.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a meterlib checkpoint (no format={FORMAT!r} field)")
    check_fields(content, source=path)
    return content


def read_model_file(path: str | os.PathLike, *, missing: str) -> bytes:
    """The bytes of a model file (checkpoint or ONNX), read within fixed limits; ``missing``: what to say if absent."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: {missing}")
    try:
        data = bounded_read.read_file(path, limit=MAX_MODEL_BYTES, timeout=MODEL_READ_SECONDS)
    except UnreadableFile as exc:
        raise ModelFileError(f"{path}: {exc.problem}") from None
    if not data:
        raise ModelFileError(f"{path}: empty file (0 bytes)")
    return data


def is_torch_file(data: bytes) -> bool:
    """Whether ``data`` is a file written by ``torch.save`` (zip or legacy format), whatever it holds."""
    first_name = data[30:30 + int.from_bytes(data[26:28], "little")]  # of the zip's first entry: torch's pickle
    zipped = data.startswith(b"PK\x03\x04") and first_name.endswith(b"/data.pkl")
    return zipped or data.startswith(_LEGACY_TORCH_START)


def _read(path: Path) -> Any:
    """The object in a torch file, with meterlib's own one-line message for anything else."""
    import torch

    data = read_model_file(path, missing="checkpoint not found (run notebook 02 to train one)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's hints about foreign pickles
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise ModelFileError(f"{path}: not a meterlib checkpoint ({_unreadable_reason(data, exc)})") from None


def _unreadable_reason(data: bytes, exc: Exception) -> str:
    # torch's own text is long and advises weights_only=False, which would run pickled code.
    refused = _refused_globals(data) or _REFUSED_GLOBAL.findall(str(exc))
    if refused:
        return (f"it holds pickled code or objects ({', '.join(refused[:3])}); meterlib refuses those, "
                "because unpickling can run code")
    if _is_onnx(data):
        return "this is an ONNX model: give it a .onnx name"
    zipped = data.startswith(b"PK\x03\x04")
    if zipped and not zipfile.is_zipfile(io.BytesIO(data)):
        return "truncated or damaged: the file ends before its zip directory"
    if zipped:
        return "a zip archive, but not a PyTorch file"
    return "not a PyTorch file"


def _refused_globals(data: bytes) -> list[str]:
    """The functions and classes in a zip torch file's pickle that ``weights_only`` refuses (opcodes read, not run)."""
    import torch

    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data)))
    except Exception:  # not a readable zip torch file: nothing to list
        return []


def _is_onnx(data: bytes) -> bool:
    """Whether ``data`` begins as a serialized ONNX ModelProto does."""
    # Protobuf writers put fields in number order: ir_version (field 1, a small varint) comes first,
    # then one of producer_name ... opset_import (fields 2 to 8). No text or torch file starts so.
    return len(data) > 2 and data[0] == 0x08 and 0 < data[1] < 0x80 and data[2] in b"\x12\x1a\x22\x28\x32\x3a\x42"


def check_fields(content: dict, *, source: str | os.PathLike = "checkpoint",
                 required: Sequence[str] = field_formats.REQUIRED,
                 kind: str = "checkpoint") -> None:
    """Raise ModelFileError naming ``source`` and the field when a field has the wrong type or range."""
    version = content.get("format_version")
    if type(version) is int and version > FORMAT_VERSION:  # a bool is no version
        raise ModelFileError(f"{source}: {kind} format {version} is newer than this meterlib "
                             f"understands ({FORMAT_VERSION}); upgrade meterlib")
    if missing := [key for key in required if key not in content]:
        raise ModelFileError(f"{source}: {kind} field{'s' * (len(missing) > 1)} "
                             f"{', '.join(map(repr, missing))} missing")
    for field in field_formats.RULES.values():
        if field.name in content and not field.valid(content[field.name]):
            shown = textwrap.shorten(reprlib.repr(content[field.name]), 80, placeholder=" ...")
            raise ModelFileError(f"{source}: {kind} field {field.name!r} must be {field.requirement}, got {shown}")
    for field, problem in field_formats.problems(content):
        raise ModelFileError(f"{source}: {kind} field {field!r} {problem}")


def release(source: str | os.PathLike, target: str | os.PathLike, **fields) -> dict:
    """Write ``source`` with ``fields`` set (e.g. the calibration) as ``target``, then drop ``source``.

    The replacement of ``target`` is atomic; ``source`` may be ``target`` itself (re-calibration).
    """
    protected = sorted(set(fields) & {"format", "format_version", "state_dict"})
    if protected:
        raise ModelFileError(f"{source}: the fields {', '.join(protected)} cannot be changed")
    content = load(source)
    content.update(fields)
    write(target, content)
    if Path(source).resolve() != Path(target).resolve():
        Path(source).unlink()
    return content


def check_matches(content: dict, *, class_names: Sequence[str] | None = None,
                  backbone: str | None = None, source: str = "checkpoint") -> None:
    """Raise ModelFileError when the checkpoint's classes or backbone differ from what the data needs."""
    if backbone is not None and content["backbone"] != backbone:
        raise ModelFileError(f"{source}: trained with backbone {content['backbone']!r}, "
                             f"but {backbone!r} was asked for")
    if class_names is not None and list(class_names) != list(content["class_names"]):
        theirs, ours = set(content["class_names"]), set(class_names)
        detail = []
        if ours - theirs:
            detail.append(f"unknown to the model: {', '.join(sorted(ours - theirs)[:5])}")
        if theirs - ours:
            detail.append(f"missing from the data: {', '.join(sorted(theirs - ours)[:5])}")
        if not detail:
            detail.append("same names in a different order")
        raise ModelFileError(f"{source}: its {len(theirs)} classes do not match the data's "
                             f"{len(ours)} classes ({'; '.join(detail)}); retrain with notebook 02")


def build_model(content: dict, *, device=None, source: str | os.PathLike = "checkpoint"):
    """The eval-mode model stored in a loaded checkpoint (no pretrained weights are fetched)."""
    model = backbones.build_classifier(content["backbone"], len(content["class_names"]), pretrained=False)
    try:
        model.load_state_dict(content["state_dict"])
    except RuntimeError as exc:
        # torch lists every key over several lines; one line keeps the message readable.
        detail = textwrap.shorten(str(exc), 300, placeholder=" ...")
        raise ModelFileError(f"{source}: weights do not fit backbone {content['backbone']!r} with "
                             f"{len(content['class_names'])} classes ({detail})") from None
    return model.to(device or "cpu").eval()
