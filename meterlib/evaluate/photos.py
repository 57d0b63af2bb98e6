"""The photos 03 judges: val, test and unseen-class rows of the split the model was trained on, and their scores.

The rows come from splits.csv; ``Scored`` holds one split's class indices and the evaluated model's
logits, and what a calibration makes of them (probabilities, predicted class, confidence, correctness).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np
import pandas as pd

from meterlib.confidence.fitted import Calibration
from meterlib.data import splits
from meterlib.errors import DataError
from meterlib.model import checkpoint


def check_same_splits(content: dict, splits_csv: str | os.PathLike) -> None:
    """Raise DataError when ``splits_csv`` is not the manifest the checkpoint ``content`` was trained on."""
    if content.get("splits_sha256") and content["splits_sha256"] != checkpoint.file_sha256(splits_csv):
        raise DataError(
            "splits.csv changed since the model was trained: its test photos may have been trained on; "
            "re-run notebook 02")


@dataclass(frozen=True)
class EvaluationRows:
    """The manifest rows 03 judges: val and test photos of the model's classes, and photos of others."""

    val: pd.DataFrame
    test: pd.DataFrame
    unseen: pd.DataFrame  # classes the checkpoint does not know (e.g. 01's holdout classes)


def evaluation_rows(manifest: pd.DataFrame, class_names: Sequence[str]) -> EvaluationRows:
    """Split the usable (not excluded) manifest rows into val, test and unseen-class rows."""
    usable = manifest[manifest["split"] != splits.EXCLUDED]
    known = usable["class"].isin(list(class_names))
    return EvaluationRows(val=usable[known & (usable["split"] == "val")].reset_index(drop=True),
                          test=usable[known & (usable["split"] == "test")].reset_index(drop=True),
                          unseen=usable[~known].reset_index(drop=True))


def class_indices(classes: Sequence[str], class_names: Sequence[str]) -> np.ndarray:
    """Each class name's position among the model's outputs (the labels the metrics take)."""
    position = {name: i for i, name in enumerate(class_names)}
    return np.array([position[name] for name in classes], dtype=int)


@dataclass(frozen=True, eq=False)
class Scored:
    """Photos of the model's classes: their rows, class indices and logits, read through ``calibration``.

    The default calibration is none (temperature 1): ``probs`` are then the model's own softmax.
    """

    rows: pd.DataFrame
    labels: np.ndarray
    logits: np.ndarray
    calibration: Calibration = Calibration()

    @classmethod
    def of(cls, rows: pd.DataFrame, logits, *, class_names: Sequence[str]) -> "Scored":
        """The scores of ``rows`` (of the model's classes) from their ``logits`` (n, classes)."""
        return cls(rows=rows, labels=class_indices(rows["class"], class_names), logits=np.asarray(logits))

    def calibrated(self, calibration: Calibration) -> "Scored":
        """The same photos read through ``calibration`` (its temperature; the predicted classes stay)."""
        return dataclasses.replace(self, calibration=calibration)

    @cached_property
    def probs(self) -> np.ndarray:
        """Class probabilities (n, classes) at the calibration's temperature."""
        return self.calibration.probabilities(self.logits)

    @cached_property
    def predicted(self) -> np.ndarray:
        """The most probable class of each photo."""
        return self.probs.argmax(axis=1)

    @cached_property
    def confidence(self) -> np.ndarray:
        """The top-class probability of each photo."""
        return self.probs.max(axis=1)

    @cached_property
    def correct(self) -> np.ndarray:
        """Whether each photo's predicted class is its class."""
        return self.predicted == self.labels
