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
- ``temperature`` (1.0), ``unknown_threshold`` (``DEFAULT_UNKNOWN_THRESHOLD``): set by 03's calibration
- ``gallery`` (optional): some training photos (see ``gallery_format``); further fields via ``update_fields``
- ``out_of_fold``, ``conformal_u``, ``conformal_class_thresholds`` (optional): see ``field_formats``

``load`` and ``write`` check every known field's type and range (see ``check_fields``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
import os
import platform
import re
import reprlib
import textwrap
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from meterlib.confidence.selective import DEFAULT_UNKNOWN_THRESHOLD
from meterlib.errors import MeterlibError
from meterlib.model import backbones, field_formats
from meterlib.run import atomic

FORMAT = "meterlib-checkpoint"
FORMAT_VERSION = 1
REQUIRED = ("format_version", "state_dict", "backbone", "class_names", "image_size", "mean", "std")
IMAGE_SIZES = range(32, 2049)  # sides a backbone can use; outside it a field was garbled
BACKBONES = (*backbones.SPECS, "random")  # what build_model can rebuild ("auto" is resolved before saving)


class CheckpointError(MeterlibError, ValueError):
    """A checkpoint file that is missing, unreadable, malformed or does not fit the data."""


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
    raise CheckpointError(f"{where}: cannot store a {type(value).__name__} in a checkpoint "
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
        "temperature": 1.0, "unknown_threshold": DEFAULT_UNKNOWN_THRESHOLD,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    content.update(extra)
    return write(path, content)


def load(path: str | os.PathLike) -> dict:
    """Read and validate a checkpoint with ``torch.load(weights_only=True)``; errors name file and field."""
    path = Path(path)
    content = _read(path)
    if not isinstance(content, dict):
        raise CheckpointError(f"{path}: not a meterlib checkpoint (it holds a {type(content).__name__}, "
                              "not a dict of fields)")
    if content.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a meterlib checkpoint (no format={FORMAT!r} field)")
    check_fields(content, source=path)
    return content


def _read(path: Path) -> Any:
    """The object in a torch file, with meterlib's own one-line message for anything else."""
    import torch

    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found (run notebook 02 to train one)")
    if not path.is_file():  # is_file stats, so a FIFO is never opened
        raise CheckpointError(f"{path}: not a regular file; give the checkpoint file itself")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's hints about foreign pickles
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        reason = _unreadable_reason(path, exc)
        raise CheckpointError(f"{path}: not a meterlib checkpoint ({reason})") from None


def _unreadable_reason(path: Path, exc: Exception) -> str:
    # torch's own text is long and advises weights_only=False, which would run pickled code.
    pickled = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    if pickled:
        return (f"it holds a pickled Python object ({pickled.group(1)}); meterlib never loads those, "
                "because unpickling can run code")
    if isinstance(exc, OSError):
        return f"cannot read it: {exc.strerror or type(exc).__name__}"
    with open(path, "rb") as handle:
        zipped = handle.read(4) == b"PK\x03\x04"
    if zipped and not zipfile.is_zipfile(path):
        return "truncated or damaged: the file ends before its zip directory"
    if zipped:
        return "a zip archive, but not a PyTorch file"
    return "not a PyTorch file"


def check_fields(content: dict, *, source: str | os.PathLike = "checkpoint", required: Sequence[str] = REQUIRED,
                 kind: str = "checkpoint") -> None:
    """Raise CheckpointError naming ``source`` and the field when a field has the wrong type or range."""
    version = content.get("format_version")
    if _is_int(version) and version > FORMAT_VERSION:
        raise CheckpointError(f"{source}: {kind} format {version} is newer than this meterlib "
                              f"understands ({FORMAT_VERSION}); upgrade meterlib")
    if missing := [key for key in required if key not in content]:
        raise CheckpointError(f"{source}: {kind} field{'s' * (len(missing) > 1)} "
                              f"{', '.join(map(repr, missing))} missing")
    for field, (valid, requirement) in _FIELD_RULES.items():
        if field in content and not valid(content[field]):
            shown = textwrap.shorten(reprlib.repr(content[field]), 80, placeholder=" ...")
            raise CheckpointError(f"{source}: {kind} field {field!r} must be {requirement}, got {shown}")
    for field, problem in field_formats.problems(content):
        raise CheckpointError(f"{source}: {kind} field {field!r} {problem}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    # value == value excludes NaN; math.isnan would overflow on a huge int.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _is_finite(value: Any) -> bool:
    return _is_real(value) and -math.inf < value < math.inf


def _is_three_finite(values: Any) -> bool:
    return isinstance(values, list) and len(values) == 3 and all(map(_is_finite, values))


def _is_class_names(names: Any) -> bool:
    return (isinstance(names, list) and len(names) >= 2
            and all(isinstance(name, str) and name.strip() for name in names)
            and len(set(names)) == len(names))


def _is_state_dict(state: Any) -> bool:
    import torch

    return isinstance(state, dict) and bool(state) and all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items())


# field: (whether a value is valid, what a valid value is)
_FIELD_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "format_version": (lambda v: _is_int(v) and v >= 1, "an int >= 1"),
    "backbone": (lambda v: isinstance(v, str) and v in BACKBONES, "one of " + ", ".join(BACKBONES)),
    "state_dict": (_is_state_dict, "a non-empty dict of tensors by parameter name"),
    "class_names": (_is_class_names, "a list of at least 2 distinct, non-empty strings"),
    "image_size": (lambda v: _is_int(v) and v in IMAGE_SIZES,
                   f"an int from {IMAGE_SIZES.start} to {IMAGE_SIZES.stop - 1}"),
    "mean": (_is_three_finite, "a list of 3 finite numbers (one per colour channel)"),
    "std": (lambda v: _is_three_finite(v) and min(v) > 0, "a list of 3 finite numbers > 0"),
    "temperature": (lambda v: _is_finite(v) and v > 0, "a finite number > 0"),
    "unknown_threshold": (lambda v: _is_real(v) and 0 <= v <= 1, "a number from 0 to 1"),
    # None or inf: not calibrated, every class is in every prediction set.
    "conformal_quantile": (lambda v: v is None or (_is_real(v) and v >= 0), "None, a number >= 0 or inf"),
}


def update_fields(path: str | os.PathLike, **fields) -> dict:
    """Set or replace top-level fields (e.g. ``temperature=1.3``) of a checkpoint file, atomically."""
    return release(path, path, **fields)


def release(source: str | os.PathLike, target: str | os.PathLike, **fields) -> dict:
    """Write ``source`` with ``fields`` set (e.g. the calibration) as ``target``, then drop ``source``.

    The replacement of ``target`` is atomic; ``source`` may be ``target`` itself (re-calibration).
    """
    protected = sorted(set(fields) & {"format", "format_version", "state_dict"})
    if protected:
        raise CheckpointError(f"{source}: the fields {', '.join(protected)} cannot be changed")
    content = load(source)
    content.update(fields)
    write(target, content)
    if Path(source).resolve() != Path(target).resolve():
        Path(source).unlink()
    return content


def check_matches(content: dict, *, class_names: Sequence[str] | None = None,
                  backbone: str | None = None, source: str = "checkpoint") -> None:
    """Raise CheckpointError when the checkpoint's classes or backbone differ from what the data needs."""
    if backbone is not None and backbone != "auto" and content["backbone"] != backbone:
        raise CheckpointError(f"{source}: trained with backbone {content['backbone']!r}, "
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
        raise CheckpointError(f"{source}: its {len(theirs)} classes do not match the data's "
                              f"{len(ours)} classes ({'; '.join(detail)}); retrain with notebook 02")


def build_model(content: dict, *, device=None, source: str | os.PathLike = "checkpoint"):
    """The eval-mode model stored in a loaded checkpoint (no pretrained weights are fetched)."""
    model = backbones.build_classifier(content["backbone"], len(content["class_names"]), pretrained=False)
    try:
        model.load_state_dict(content["state_dict"])
    except RuntimeError as exc:
        # torch lists every key over several lines; one line keeps the message readable.
        detail = textwrap.shorten(str(exc), 300, placeholder=" ...")
        raise CheckpointError(f"{source}: weights do not fit backbone {content['backbone']!r} with "
                              f"{len(content['class_names'])} classes ({detail})") from None
    return model.to(device or "cpu").eval()
