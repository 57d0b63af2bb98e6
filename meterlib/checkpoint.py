"""The one self-describing model file that 02 writes and 03, 04 and the Predictor read.

A checkpoint is a plain dict of tensors and Python literals, so ``torch.load(path,
weights_only=True)`` reads it without running any pickled code. Keys:

- ``format`` / ``format_version``: ``"meterlib-checkpoint"`` / 1
- ``state_dict``: weights of ``backbones.build_classifier(backbone, len(class_names))``
- ``backbone``: ``"resnet18"``, ``"efficientnet_lite0"`` or ``"random"``
- ``class_names``: list of class names in output order
- ``image_size``, ``mean``, ``std``: eval preprocessing (squash-resize to a square, normalise)
- ``training``: every training parameter (preset, epochs, learning rates, augmentation, seed, ...)
- ``splits_sha256``: SHA-256 of the splits.csv the model was trained on
- ``versions``: python, torch, torchvision, timm, numpy, meterlib
- ``metrics``: e.g. best epoch, val/test accuracy
- ``temperature`` (1.0) and ``unknown_threshold`` (0.5): filled in by 03's calibration
- any further field added later with ``update_fields`` (e.g. a conformal quantile)
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
from pathlib import Path
from typing import Any, Sequence

from meterlib import atomic

FORMAT = "meterlib-checkpoint"
FORMAT_VERSION = 1
REQUIRED = ("state_dict", "backbone", "class_names", "image_size", "mean", "std")


class CheckpointError(ValueError):
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
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
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
    with atomic.atomic_path(path) as tmp:
        torch.save(content, tmp)
    return Path(path)


def save(path: str | os.PathLike, *, model, backbone: str, class_names: Sequence[str], image_size: int,
         mean: Sequence[float], std: Sequence[float], training: dict | None = None,
         splits_sha256: str = "", metrics: dict | None = None, **extra) -> Path:
    """Write a model and everything needed to use it again as one checkpoint file."""
    state = {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}
    content = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "state_dict": state, "backbone": backbone, "class_names": list(class_names),
        "image_size": int(image_size), "mean": [float(x) for x in mean], "std": [float(x) for x in std],
        "training": dict(training or {}), "splits_sha256": splits_sha256,
        "versions": library_versions(), "metrics": dict(metrics or {}),
        "temperature": 1.0, "unknown_threshold": 0.5,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    content.update(extra)
    return write(path, content)


def load(path: str | os.PathLike) -> dict:
    """Read and validate a checkpoint with ``torch.load(weights_only=True)``."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found (run notebook 02 to train one)")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"{path}: not a readable meterlib checkpoint ({exc})") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a meterlib checkpoint (no format={FORMAT!r} field)")
    if content.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {content['format_version']} is newer than this "
                              f"meterlib understands ({FORMAT_VERSION}); upgrade meterlib")
    missing = [key for key in REQUIRED if key not in content]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return content


def update_fields(path: str | os.PathLike, **fields) -> dict:
    """Set or replace top-level fields (e.g. ``temperature=1.3``) of a checkpoint file, atomically."""
    protected = sorted(set(fields) & {"format", "format_version", "state_dict"})
    if protected:
        raise CheckpointError(f"{path}: update_fields cannot change {', '.join(protected)}")
    content = load(path)
    content.update(fields)
    write(path, content)
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


def build_model(content: dict, *, device=None):
    """The eval-mode model stored in a loaded checkpoint (no pretrained weights are fetched)."""
    from meterlib import backbones

    model = backbones.build_classifier(content["backbone"], len(content["class_names"]), pretrained=False)
    try:
        model.load_state_dict(content["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint weights do not fit backbone {content['backbone']!r}: {exc}") from None
    return model.to(device or "cpu").eval()
