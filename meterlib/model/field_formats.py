"""Checks of the checkpoint fields that depend on the class count: gallery, out-of-fold, conformal.

``checkpoint.check_fields`` raises a CheckpointError for the first entry of ``problems``.

- ``out_of_fold`` (optional, from 02): each training photo's logits from models that did not
  train on it; a dict of ``logits`` (float, photos x classes), ``labels`` and ``fold`` (int64, one
  per photo), ``photos`` (paths as in splits.csv) and ``method`` (how they were made); optionally
  ``feature_probs`` (float, photos x classes): probabilities that rank suspect labels.
- ``conformal_u`` / ``conformal_class_thresholds`` (optional, from 03): the APS tie-break and one
  set threshold per class (inf: the class enters every set).
"""

from __future__ import annotations

from typing import Any, Iterator

from meterlib.model import gallery_format

OUT_OF_FOLD_KEYS = ("logits", "labels", "photos", "fold", "method")
OUT_OF_FOLD_OPTIONAL = ("feature_probs",)


def problems(content: dict) -> Iterator[tuple[str, str]]:
    """(field, what is wrong) for each malformed class-dependent field of a checkpoint."""
    n_classes = len(content["class_names"])
    checks = (("gallery", gallery_format.problem(content.get("gallery"), n_classes=n_classes)),
              ("out_of_fold", out_of_fold_problem(content.get("out_of_fold"), n_classes=n_classes)),
              ("conformal_u", _u_problem(content.get("conformal_u"))),
              ("conformal_class_thresholds",
               thresholds_problem(content.get("conformal_class_thresholds"), n_classes=n_classes)))
    return ((field, problem) for field, problem in checks if problem)


def out_of_fold_problem(value: Any, *, n_classes: int) -> str:
    """What is wrong with an ``out_of_fold`` field; '' when it is absent or fine."""
    if value is None:
        return ""
    import torch  # here: a model without the field (an ONNX file) is checked without PyTorch

    if not (isinstance(value, dict) and set(OUT_OF_FOLD_KEYS) <= set(value)
            and set(value) <= {*OUT_OF_FOLD_KEYS, *OUT_OF_FOLD_OPTIONAL}):
        return (f"must be a dict with the keys {', '.join(OUT_OF_FOLD_KEYS)} "
                f"(optionally {', '.join(OUT_OF_FOLD_OPTIONAL)})")
    rows = len(value["logits"]) if isinstance(value["logits"], torch.Tensor) else 0
    for key in ("logits", *OUT_OF_FOLD_OPTIONAL):
        item = value.get(key, value["logits"])
        if not (isinstance(item, torch.Tensor) and item.is_floating_point() and item.shape == (rows, n_classes)):
            return f"needs '{key}' as a float tensor of shape (photos, {n_classes})"
    for key in ("labels", "fold"):
        item = value[key]
        if not (isinstance(item, torch.Tensor) and item.dtype == torch.int64 and item.shape == (rows,)):
            return f"needs '{key}' as an int64 tensor of {rows} entries, one per logits row"
    labels = value["labels"]
    if rows and not 0 <= int(labels.min()) <= int(labels.max()) < n_classes:
        return f"has 'labels' outside 0 to {n_classes - 1} (indices into class_names)"
    photos = value["photos"]
    if not (isinstance(photos, list) and len(photos) == rows and all(isinstance(p, str) for p in photos)):
        return f"needs 'photos' as a list of {rows} paths, one per logits row"
    if not isinstance(value["method"], str):
        return "needs 'method' as a string"
    return ""


def thresholds_problem(value: Any, *, n_classes: int) -> str:
    """What is wrong with ``conformal_class_thresholds``; '' when it is absent or fine."""
    if value is None:
        return ""
    if not (isinstance(value, list) and len(value) == n_classes):
        return f"must be a list of {n_classes} numbers, one per class"
    if not all(_is_real(v) and v >= 0 for v in value):
        return "must hold numbers >= 0 (inf allowed)"
    return ""


def _u_problem(value: Any) -> str:
    return "" if value is None or (_is_real(value) and 0 <= value <= 1) else "must be a number from 0 to 1"


def _is_real(value: Any) -> bool:
    # value == value excludes NaN; math.isnan would overflow on a huge int.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
