"""The rules a checkpoint's fields must meet: each field's type and range, then the checks across fields.

``checkpoint.check_fields`` applies ``RULES`` (one per field), then raises a CheckpointError for the
first entry of ``problems``. There the weights come first: they must be finite, and their head must
give one output per class name, because the class count (``len(class_names)``) sizes the gallery,
out-of-fold and conformal fields checked after.

- ``out_of_fold`` (optional, from 02): each training photo's logits from models that did not
  train on it; a dict of ``logits`` (float, photos x classes), ``labels`` and ``fold`` (int64, one
  per photo), ``photos`` (paths as in splits.csv) and ``method`` (how they were made); optionally
  ``feature_probs`` (float, photos x classes): probabilities that rank suspect labels.
- ``conformal_u`` / ``conformal_class_thresholds`` (optional, from 03): the APS tie-break and one
  set threshold per class (inf: the class enters every set).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator

from meterlib.model import backbones, gallery_format

IMAGE_SIZES = range(32, 2049)  # sides a backbone can use; outside it a field was garbled
BACKBONES = (*backbones.SPECS, "random")  # what build_model can rebuild

OUT_OF_FOLD_KEYS = ("logits", "labels", "photos", "fold", "method")
OUT_OF_FOLD_OPTIONAL = ("feature_probs",)
HEAD_WEIGHT = "head.weight"  # backbones.build_classifier's linear classifier: one row per class


def problems(content: dict) -> Iterator[tuple[str, str]]:
    """(field, what is wrong) for the weights and each malformed class-dependent field of a checkpoint."""
    n_classes = len(content["class_names"])
    checks = (("state_dict", weights_problem(content.get("state_dict"))),
              ("class_names", head_problem(content.get("state_dict"), n_classes=n_classes)),
              ("gallery", gallery_format.problem(content.get("gallery"), n_classes=n_classes)),
              ("out_of_fold", out_of_fold_problem(content.get("out_of_fold"), n_classes=n_classes)),
              ("conformal_u", _u_problem(content.get("conformal_u"))),
              ("conformal_class_thresholds",
               thresholds_problem(content.get("conformal_class_thresholds"), n_classes=n_classes)))
    return ((field, problem) for field, problem in checks if problem)


def weights_problem(state: Any) -> str:
    """What is wrong with a state dict's values: the first tensor holding NaN or inf; '' when none does."""
    bad = next((name for name, tensor in (state or {}).items() if not bool(tensor.isfinite().all())), None)
    if bad is None:
        return ""
    return f"holds NaN or inf values in {bad!r}; the weights are broken (retrain with notebook 02)"


def head_problem(state: Any, *, n_classes: int) -> str:
    """What is wrong with ``n_classes`` names for the head of a state dict; '' when they fit or there is no head."""
    head = state.get(HEAD_WEIGHT) if isinstance(state, dict) else None
    outputs = head.shape[0] if getattr(head, "ndim", 0) == 2 else n_classes
    return "" if outputs == n_classes else f"lists {n_classes} names but the weights give {outputs} outputs"


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


# field: (whether a value is valid, what a valid value is); check_fields applies them before ``problems``
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
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
