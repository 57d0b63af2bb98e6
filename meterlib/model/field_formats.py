"""The model file's fields: what each must be, and where it is stored (``FIELDS``, the one table of them).

``checkpoint.check_fields`` applies each field's own rule, then raises a ModelFileError for the
first entry of ``problems``; ``checkpoint`` requires the ``required`` fields, the ONNX metadata
(``model.onnx_metadata``) carries the ``onnx`` ones, and ``confidence.fitted.Calibration`` holds the
calibration fields under the same names (its defaults are theirs). In ``problems`` the weights come
first: they must be finite, and their head must give one output per class name, because the class
count sizes the gallery, out-of-fold and conformal fields checked after them.

- ``out_of_fold`` (optional, from 02): each training photo's logits from models that did not
  train on it; a dict of ``logits`` (float, photos x classes), ``labels`` and ``fold`` (int64, one
  per photo), ``photos`` (paths as in splits.csv) and ``method`` (how they were made); optionally
  ``feature_probs`` (float, photos x classes): probabilities that rank suspect labels.
- ``conformal_u`` / ``conformal_class_thresholds`` (optional, from 03): the APS tie-break and one
  set threshold per class (inf: the class enters every set).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from meterlib.confidence import photo_limits, unseen
from meterlib.confidence.fitted import Calibration
from meterlib.model import backbones

IMAGE_SIZES = range(32, 2049)  # sides a backbone can use; outside it a field was garbled
BACKBONES = (*backbones.SPECS, "random")  # what build_model can rebuild

OUT_OF_FOLD_KEYS = ("logits", "labels", "photos", "fold", "method")
OUT_OF_FOLD_OPTIONAL = ("feature_probs",)
# The gallery, training photos for the nearest-photo view: features: float tensor (photos x d),
# L2-normalised; labels: int64 class indices;
# thumbnails: JPEG files as 1-D uint8 tensors (a torch file stores bytes objects at about 1.4x);
# names: the photos' paths within their dataset, for display only
GALLERY_KEYS = ("features", "labels", "thumbnails", "names")
REFERENCE_KEYS = ("features", "labels", "k")  # model.reference: what the unseen-type score compares with
LINEAGE_KEYS = ("parent_sha256", "parent_classes", "types_added", "training_photos", "ancestors")
HEAD_WEIGHT = "head.weight"  # backbones.build_classifier's linear classifier: one row per class
HEAD_BIAS = "head.bias"


def problems(content: dict) -> Iterator[tuple[str, str]]:
    """(field, what is wrong) for the weights and each malformed class-dependent field of a checkpoint."""
    n_classes = len(content["class_names"])
    checks = (("state_dict", weights_problem(content.get("state_dict"))),
              ("class_names", head_problem(content.get("state_dict"), n_classes=n_classes)),
              ("gallery", gallery_problem(content.get("gallery"), n_classes=n_classes)),
              ("reference_features", reference_problem(content.get("reference_features"), n_classes=n_classes)
               or _feature_size_problem(content.get("reference_features"), content.get("state_dict"))),
              ("unseen_type", unseen.field_problem(content.get("unseen_type"))),
              ("photo_limits", photo_limits.field_problem(content.get("photo_limits"))),
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


def _feature_size_problem(value: Any, state: Any) -> str:
    """What is wrong with checked reference features for the head of a state dict: their size; '' when it fits."""
    head = state.get(HEAD_WEIGHT) if isinstance(state, dict) and value is not None else None
    if getattr(head, "ndim", 0) != 2 or value["features"].shape[1] == head.shape[1]:
        return ""
    return f"has features of {value['features'].shape[1]} values, but the head reads {head.shape[1]}"


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


def _is_lineage(value: Any) -> bool:
    def digest(text: Any) -> bool:
        return isinstance(text, str) and len(text) == 64 and all(c in "0123456789abcdef" for c in text)

    return (isinstance(value, dict) and set(value) == set(LINEAGE_KEYS) and digest(value["parent_sha256"])
            and _is_int(value["parent_classes"]) and value["parent_classes"] >= 2
            and _is_int(value["training_photos"]) and value["training_photos"] >= 0
            and isinstance(value["types_added"], list) and all(isinstance(t, str) and t for t in value["types_added"])
            and isinstance(value["ancestors"], list) and all(map(digest, value["ancestors"])))


def _is_class_names(names: Any) -> bool:
    return (isinstance(names, list) and len(names) >= 2
            and all(isinstance(name, str) and name.strip() for name in names)
            and len(set(names)) == len(names))


def _is_state_dict(state: Any) -> bool:
    import torch

    return isinstance(state, dict) and bool(state) and all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items())


NOT_IN_ONNX, ONNX_OPTIONAL, ONNX_REQUIRED = "", "optional", "required"


@dataclass(frozen=True)
class Field:
    """One top-level field of the model file: its own rule, and whether checkpoints and ONNX metadata need it."""

    name: str
    valid: Callable[[Any], bool] | None = None  # None: no rule of its own (``problems`` may check it)
    requirement: str = ""  # what a valid value is, as the error message says it
    required: bool = False  # a checkpoint without it is refused
    onnx: str = NOT_IN_ONNX  # whether the ONNX metadata carries it: ONNX_OPTIONAL or ONNX_REQUIRED


_PREPROCESSING = dict(required=True, onnx=ONNX_REQUIRED)
# In check order: the first field that breaks its rule is the one an error names.
FIELDS = (
    Field("format_version", lambda v: _is_int(v) and v >= 1, "an int >= 1", required=True),
    Field("state_dict", _is_state_dict, "a non-empty dict of tensors by parameter name", required=True),
    Field("backbone", lambda v: isinstance(v, str) and v in BACKBONES, "one of " + ", ".join(BACKBONES),
          **_PREPROCESSING),
    Field("class_names", _is_class_names, "a list of at least 2 distinct, non-empty strings", **_PREPROCESSING),
    Field("image_size", lambda v: _is_int(v) and v in IMAGE_SIZES,
          f"an int from {IMAGE_SIZES.start} to {IMAGE_SIZES.stop - 1}", **_PREPROCESSING),
    Field("mean", _is_three_finite, "a list of 3 finite numbers (one per colour channel)", **_PREPROCESSING),
    Field("std", lambda v: _is_three_finite(v) and min(v) > 0, "a list of 3 finite numbers > 0", **_PREPROCESSING),
    # The calibration (confidence.fitted.Calibration); a checkpoint without it answers uncalibrated.
    Field("temperature", lambda v: _is_finite(v) and v > 0, "a finite number > 0", onnx=ONNX_REQUIRED),
    Field("unknown_threshold", lambda v: _is_real(v) and 0 <= v <= 1, "a number from 0 to 1", onnx=ONNX_REQUIRED),
    # None or inf: not calibrated, every class is in every prediction set.
    Field("conformal_quantile", lambda v: v is None or (_is_real(v) and v >= 0), "None, a number >= 0 or inf",
          onnx=ONNX_OPTIONAL),
    Field("conformal_u", onnx=ONNX_OPTIONAL),  # checked in ``problems``
    Field("conformal_class_thresholds", onnx=ONNX_OPTIONAL),  # one per class: checked in ``problems``
    Field("unseen_type", onnx=ONNX_OPTIONAL),  # confidence.unseen.UnseenRule: checked in ``problems``
    Field("photo_limits", onnx=ONNX_OPTIONAL),  # confidence.photo_limits.PhotoLimits: checked in ``problems``
    Field("splits_sha256", onnx=ONNX_OPTIONAL),
    Field("versions", onnx=ONNX_OPTIONAL),
    Field("gallery"),  # checked in ``problems``
    # The training photos' features the unseen-type score compares with (model.reference); the ONNX
    # export holds them in its graph.
    Field("reference_features"),  # checked in ``problems``
    Field("out_of_fold"),  # checked in ``problems``
    # A warm start's parent (train.warm.lineage); absent for a model trained from the pretrained backbone.
    Field("lineage", _is_lineage, "a dict of parent_sha256, parent_classes, types_added, "
          "training_photos and ancestors (SHA-256 digests, counts and type names)", onnx=ONNX_OPTIONAL),
)
REQUIRED = tuple(field.name for field in FIELDS if field.required)
RULES = {field.name: field for field in FIELDS if field.valid is not None}
IN_ONNX = tuple(field.name for field in FIELDS if field.onnx)
REQUIRED_IN_ONNX = tuple(field.name for field in FIELDS if field.onnx == ONNX_REQUIRED)
CALIBRATION = tuple(field.name for field in dataclasses.fields(Calibration))  # each has a Field above (tested)


def gallery_problem(gallery: Any, *, n_classes: int) -> str:
    """What is wrong with the ``gallery`` field of a checkpoint with ``n_classes``; '' when it is absent or fine.

    ``model.gallery`` builds it: training photos for the nearest-photo view, one entry per photo in every key.
    """
    if gallery is None:
        return ""
    import torch  # here: a model without a gallery (an ONNX file) is checked without PyTorch

    if not isinstance(gallery, dict) or sorted(gallery) != sorted(GALLERY_KEYS):
        return f"must be a dict with the keys {', '.join(GALLERY_KEYS)}"
    features, labels = gallery["features"], gallery["labels"]
    if not (isinstance(features, torch.Tensor) and features.ndim == 2 and features.is_floating_point()):
        return "needs 'features' as a 2-D float tensor, one row per photo"
    rows = len(features)
    if not (isinstance(labels, torch.Tensor) and labels.dtype == torch.int64 and labels.shape == (rows,)):
        return f"needs 'labels' as an int64 tensor of {rows} class indices, one per feature row"
    if rows and not 0 <= int(labels.min()) <= int(labels.max()) < n_classes:
        return f"has 'labels' outside 0 to {n_classes - 1} (indices into class_names)"
    for key, what, valid in (("thumbnails", "1-D uint8 tensors (JPEG files)", _is_bytes_tensor),
                             ("names", "strings", lambda name: isinstance(name, str))):
        items = gallery[key]
        if not (isinstance(items, list) and len(items) == rows and all(map(valid, items))):
            return f"needs '{key}' as a list of {rows} {what}, one per feature row"
    return ""


def _is_bytes_tensor(value: Any) -> bool:
    import torch

    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.ndim == 1


def reference_problem(value: Any, *, n_classes: int) -> str:
    """What is wrong with a ``reference_features`` field (``model.reference``); '' when it is absent or fine."""
    if value is None:
        return ""
    import torch

    if not isinstance(value, dict) or sorted(value) != sorted(REFERENCE_KEYS):
        return f"must be a dict with the keys {', '.join(REFERENCE_KEYS)}"
    features, labels, k = value["features"], value["labels"], value["k"]
    if not (isinstance(features, torch.Tensor) and features.ndim == 2 and features.is_floating_point()
            and len(features) and bool(features.isfinite().all())):
        return "needs 'features' as a 2-D float tensor of finite values, one row per photo"
    rows = len(features)
    if not (isinstance(labels, torch.Tensor) and labels.dtype == torch.int64 and labels.shape == (rows,)):
        return f"needs 'labels' as an int64 tensor of {rows} class indices, one per feature row"
    if not 0 <= int(labels.min()) <= int(labels.max()) < n_classes:
        return f"has 'labels' outside 0 to {n_classes - 1} (indices into class_names)"
    if not (_is_int(k) and 1 <= k <= rows):
        return f"needs 'k' as an int from 1 to {rows}"
    return ""
