"""Notebook parameters checked at the door: the type from the notebook's hint, the range from its rule.

The runner checks every value it injects before any notebook starts, so ``epochs_head=abc`` or
``seed=1.5`` is one clear line instead of a traceback deep inside a notebook. A training setting
carries its rule on its dataclass field (``setting``); the other parameters have theirs in ``RANGES``
and ``CHOICES`` below.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from meterlib.errors import SettingsError

INF = math.inf


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


@dataclass(frozen=True)
class Rule:
    """What one parameter allows (a range for a number, choices for a text) and its help line."""

    range: Range | None = None
    choices: tuple[str, ...] | None = None
    help: str = ""


_RULE = "meterlib.rule"  # the dataclass field metadata key of a setting's rule


def setting(default: Any = dataclasses.MISSING, *, help: str, range: Range | None = None,
            choices: tuple[str, ...] | None = None):
    """A dataclass field declared once: its default, its range or choices, and its one-line help."""
    return dataclasses.field(default=default, metadata={_RULE: Rule(range=range, choices=choices, help=help)})


def rules(kind) -> dict[str, Rule]:
    """The rule of each field of the dataclass ``kind`` that was declared with ``setting``."""
    return {f.name: f.metadata[_RULE] for f in dataclasses.fields(kind) if _RULE in f.metadata}


def enforce(name: str, value: Any, rule: Rule) -> None:
    """Raise SettingsError when ``value`` is outside ``rule``'s range or choices."""
    if rule.range is not None and not rule.range.holds(value):
        raise SettingsError(f"parameter {name}: {value!r} is out of range; it must be {rule.range.describe()}")
    if rule.choices is not None and value not in rule.choices:
        raise SettingsError(f"parameter {name}: {value!r} is not one of {', '.join(rule.choices)}")

# The range of every numeric notebook parameter that is not a training setting (a test checks it).
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
    "preview_photos": NON_NEGATIVE, "crossfit_folds": Range(0, 50),
    # 03
    "ece_bins": COUNT, "min_calibration_images": NON_NEGATIVE, "target_accuracy": share(open_low=True),
    "conformal_alpha": share(open_low=True, open_high=True),
    "unseen_alpha": share(open_low=True, open_high=True), "min_unseen_photos": COUNT,
    "poor_photo_quantile": Range(0, 0.5, open_high=True),
    "set_confidence": share(open_low=True, open_high=True), "eval_batch_size": COUNT,
    "gallery_size": NON_NEGATIVE, "quality_bins": COUNT, "bootstrap_samples": COUNT,
    "group_small_below": COUNT, "group_large_from": COUNT,
    # 04
    "prefill": NON_NEGATIVE, "neighbours": NON_NEGATIVE,
    # 05
    "min_cluster_size": NON_NEGATIVE, "new_test_share": share(open_high=True),
}

# Text parameters with a fixed set of values that are not training settings. The stages that use
# them own the lists; this copy lets a typo stop the run at the door, and a test keeps it equal to theirs.
CHOICES: dict[str, tuple[str, ...]] = {
    "preset": ("original", "default", "warm"),
    "backbone": ("resnet18", "efficientnet_lite0", "random"),
}


def door_rules(*setting_classes: type) -> dict[str, Rule]:
    """Every rule the door checks: the tables above and the fields of ``setting_classes``."""
    found = {**{name: Rule(range=limits) for name, limits in RANGES.items()},
             **{name: Rule(choices=values) for name, values in CHOICES.items()}}
    for kind in setting_classes:
        found.update(rules(kind))
    return found


_NUMBER_TYPES = {"int": int, "float": float}


def base_type(hint: str) -> tuple[str, bool]:
    """'Optional[int]' -> ('int', True); 'float' -> ('float', False)."""
    if hint.startswith("Optional[") and hint.endswith("]"):
        return hint[len("Optional["):-1], True
    return hint, False


def check(name: str, value: Any, hint: str, *, door: dict[str, Rule]) -> Any:
    """``value`` for parameter ``name`` declared with type ``hint``, converted where lossless; else raise.

    ``door``: the rules by parameter name (``door_rules``).
    """
    kind, optional = base_type(hint)
    if value is None:
        if optional:
            return None
        raise SettingsError(f"parameter {name}: a value is required ({kind}), got nothing")
    value = _typed(name, value, kind)
    enforce(name, value, door.get(name, Rule()))
    return value


def _typed(name: str, value: Any, kind: str) -> Any:
    wrong = SettingsError(f"parameter {name}: expected {_article(kind)} {kind}, got {value!r}")
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


def _number(value: Any, kind: str, wrong: SettingsError) -> int | float:
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
