"""Notebook parameters checked at the door: the type from the notebook's hint, the range from one table.

The runner checks every value it injects before any notebook starts, so ``epochs_head=abc`` or
``seed=1.5`` is one clear line instead of a traceback deep inside a notebook.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from meterlib.errors import MeterlibError

INF = math.inf


class ParameterError(MeterlibError, ValueError):
    """A parameter value of the wrong type or outside its range; the message names it."""


@dataclass(frozen=True)
class Range:
    """Allowed numbers: ``low``..``high``, each end included unless ``open_low``/``open_high``."""

    low: float = -INF
    high: float = INF
    open_low: bool = False
    open_high: bool = False

    def describe(self) -> str:
        left = "(" if self.open_low else "["
        right = ")" if self.open_high else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"

    def holds(self, value: float) -> bool:
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return above and below


def at_least(low: float) -> Range:
    return Range(low=low)


def share(*, open_low: bool = False, open_high: bool = False) -> Range:
    """A fraction between 0 and 1."""
    return Range(0.0, 1.0, open_low=open_low, open_high=open_high)


POSITIVE = Range(low=0.0, open_low=True)
COUNT = at_least(1)
NON_NEGATIVE = at_least(0)

# Every numeric parameter of the notebooks has a range here (a test checks it).
RANGES: dict[str, Range] = {
    # 01
    "seed": NON_NEGATIVE, "n_images": COUNT, "n_classes": at_least(2),
    "image_width": Range(32, 4096), "image_height": Range(32, 4096),
    "min_images_test": COUNT, "min_images_val": COUNT,
    "test_fraction": share(open_low=True, open_high=True), "val_fraction": share(open_high=True),
    "near_duplicate_distance": Range(-1, 64), "min_side": COUNT,
    "dark_below": share(), "low_contrast_below": share(), "blurry_below": NON_NEGATIVE,
    "workers": NON_NEGATIVE,
    # 02
    "image_size": Range(32, 2048), "epochs_head": NON_NEGATIVE, "epochs_finetune": NON_NEGATIVE,
    "lr_head": POSITIVE, "lr_finetune": POSITIVE, "weight_decay": NON_NEGATIVE,
    "batch_size": COUNT, "views": COUNT, "class_weight_power": NON_NEGATIVE,
    "label_smoothing": share(open_high=True), "patience": NON_NEGATIVE, "min_val_images": NON_NEGATIVE,
    "crop_scale_min": share(open_low=True), "rotation_deg": Range(0, 180), "perspective": share(),
    "perspective_p": share(), "brightness": NON_NEGATIVE, "contrast": NON_NEGATIVE,
    "saturation": NON_NEGATIVE, "hue": Range(0, 0.5), "blur_p": share(), "blur_sigma_max": POSITIVE,
    "preview_photos": NON_NEGATIVE, "crossfit_folds": Range(0, 50),
    # 03
    "ece_bins": COUNT, "min_calibration_images": NON_NEGATIVE, "target_accuracy": share(open_low=True),
    "conformal_alpha": share(open_low=True, open_high=True),
    "set_confidence": share(open_low=True, open_high=True), "eval_batch_size": COUNT,
    "gallery_size": NON_NEGATIVE, "quality_bins": COUNT, "bootstrap_samples": COUNT,
    "group_small_below": COUNT, "group_large_from": COUNT,
    # 04
    "prefill": NON_NEGATIVE, "neighbours": NON_NEGATIVE,
}

# Text parameters with a fixed set of values. The stages that use them own the lists; this copy
# lets a typo stop the run at the door, and a test keeps it equal to theirs.
CHOICES: dict[str, tuple[str, ...]] = {
    "preset": ("original", "default", "seed"),
    "backbone": ("resnet18", "efficientnet_lite0", "random"),
    "finetune_bn": ("train", "frozen"),
    "lr_schedule": ("constant", "cosine"),
    "frozen_precision": ("auto", "float32", "bfloat16"),
}

_NUMBER_TYPES = {"int": int, "float": float}


def base_type(hint: str) -> tuple[str, bool]:
    """'Optional[int]' -> ('int', True); 'float' -> ('float', False)."""
    if hint.startswith("Optional[") and hint.endswith("]"):
        return hint[len("Optional["):-1], True
    return hint, False


def check(name: str, value: Any, hint: str) -> Any:
    """``value`` for parameter ``name`` declared with type ``hint``, converted where lossless; else raise."""
    kind, optional = base_type(hint)
    if value is None:
        if optional:
            return None
        raise ParameterError(f"parameter {name}: a value is required ({kind}), got nothing")
    value = _typed(name, value, kind)
    limits = RANGES.get(name)
    if kind in _NUMBER_TYPES and limits is not None and not limits.holds(value):
        raise ParameterError(f"parameter {name}: {value!r} is out of range; it must be {limits.describe()}")
    if name in CHOICES and value not in CHOICES[name]:
        raise ParameterError(f"parameter {name}: {value!r} is not one of {', '.join(CHOICES[name])}")
    return value


def _typed(name: str, value: Any, kind: str) -> Any:
    wrong = ParameterError(f"parameter {name}: expected {_article(kind)} {kind}, got {value!r}")
    if kind == "bool":
        if not isinstance(value, bool):
            raise wrong
        return value
    if kind == "str":
        # A bare number given for a text parameter (dataset=2024) means its text.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise wrong
        return value
    if kind == "list":
        if not isinstance(value, list):
            raise wrong
        return value
    if kind in _NUMBER_TYPES:
        return _number(value, kind, wrong)
    return value  # a hint this table does not know: papermill passes it as given


def _number(value: Any, kind: str, wrong: ParameterError) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise wrong
    if not math.isfinite(value):
        raise wrong
    if kind == "int":
        if isinstance(value, float):
            raise wrong  # 1.5 epochs or seed 2.0: say so rather than round silently
        return value
    return float(value)


def _article(kind: str) -> str:
    return "an" if kind[0] in "aeiou" else "a"
