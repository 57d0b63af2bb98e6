"""When a photo is too poor to judge: limits on 01's quality measures, fitted on the training photos.

A photo darker, lower in contrast, blurrier or smaller than all but ``quantile`` of the training
photos is outside what the model learnt from; it gets the reason ``poor_photo``, so a crew knows to
take it again. The measures are the audit's (``data.quality.quality``, on a copy of at most
``quality.QUALITY_SIDE`` pixels; the short side on the photo as taken).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from meterlib.errors import DataError, SettingsError

DEFAULT_QUANTILE = 0.005  # share of training photos below each limit
MIN_PHOTOS = 20  # fewer training photos with measures: no limits are fitted
# Each measure: what a photo below its limit is, as the reason says it.
MEASURES = {"brightness": "too dark", "contrast": "too low in contrast", "sharpness": "too blurred",
            "short_side": "too small"}


@dataclass(frozen=True)
class PhotoLimits:
    """The lowest value of each measure a photo may have and still be judged."""

    brightness: float
    contrast: float
    sharpness: float
    short_side: float
    quantile: float = DEFAULT_QUANTILE

    def __post_init__(self):
        for name in (*MEASURES, "quantile"):
            object.__setattr__(self, name, float(getattr(self, name)))

    def problem(self, measures: Mapping[str, float]) -> str:
        """Why a photo with these measures is too poor to judge (all failing measures), or '' when it is not."""
        failing = [f"{MEASURES[name]} ({name} {_shown(measures[name])} < {_shown(getattr(self, name))})"
                   for name in MEASURES if measures[name] < getattr(self, name)]
        return "; ".join(failing)

    def to_field(self) -> dict:
        """The model file's ``photo_limits`` field."""
        return {name: getattr(self, name) for name in (*MEASURES, "quantile")}

    @classmethod
    def from_field(cls, value: Mapping) -> "PhotoLimits":
        return cls(**{name: value[name] for name in (*MEASURES, "quantile")})


def fit_photo_limits(manifest: pd.DataFrame, *, quantile: float = DEFAULT_QUANTILE) -> PhotoLimits | None:
    """Limits at ``quantile`` of the training photos' measures in a splits.csv manifest; None with too few photos."""
    if not 0 <= quantile < 0.5:
        raise SettingsError(f"poor_photo_quantile must be from 0 to below 0.5, got {quantile!r}")
    missing = [column for column in ("brightness", "contrast", "sharpness", "width", "height")
               if column not in manifest.columns]
    if missing:
        raise DataError(f"the manifest lacks the audit's columns {', '.join(missing)}; run notebook 01 again")
    train = manifest.loc[manifest["split"] == "train"]
    measured = pd.DataFrame({"brightness": train["brightness"], "contrast": train["contrast"],
                             "sharpness": train["sharpness"],
                             "short_side": np.minimum(train["width"], train["height"])}).astype(float).dropna()
    if len(measured) < MIN_PHOTOS:
        return None
    return PhotoLimits(**measured.quantile(quantile).to_dict(), quantile=quantile)


def field_problem(value) -> str:
    """What is wrong with a ``photo_limits`` field; '' when it is absent or fine."""
    if value is None:
        return ""
    keys = (*MEASURES, "quantile")
    if not (isinstance(value, Mapping) and set(value) == set(keys)):
        return f"must be a dict with the keys {', '.join(keys)}"
    if not all(isinstance(value[key], (int, float)) and not isinstance(value[key], bool)
               and math.isfinite(value[key]) and value[key] >= 0 for key in keys):
        return "needs finite numbers >= 0"
    return ""


def _shown(value: float) -> str:
    return f"{value:.3g}"
