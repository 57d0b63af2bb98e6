"""Types added to a model, judged: accuracy on the old and on the new types, and calibration error, per model.

Notebook 05 and ``benchmarks/bench_new_types.py`` compare the parent, each warm step and a full
retrain with it. The ECE is measured after a temperature fitted on val photos, as 03 would fit it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from meterlib.confidence import calibration
from meterlib.model import inference

COLUMNS = ("old types", "new types", "test ECE")


@dataclass(frozen=True)
class Judged:
    """Decoded photos and their true classes."""

    images: list
    classes: list[str]


def judge(model, class_names: Sequence[str], *, val: Judged, test: Judged, new: Sequence[str], image_size: int,
          mean, std) -> dict:
    """{COLUMNS: value}: test accuracy on the types ``class_names`` had before ``new`` and on ``new``; the test ECE.

    Test photos of a class the model lacks count as wrong; NaN where a group has no test photo.
    Without val photos the temperature stays 1.
    """
    names = list(class_names)

    def logits_and_labels(photos: Judged):
        logits = inference.logits_for_images(model, photos.images, image_size=image_size, mean=mean,
                                             std=std).numpy().astype(np.float64)
        return logits, np.array([names.index(c) if c in names else -1 for c in photos.classes])

    val_logits, val_labels = logits_and_labels(val) if val.images else (None, None)
    temperature = 1.0 if val_logits is None else calibration.fit_temperature(val_logits, val_labels).temperature
    test_logits, test_labels = logits_and_labels(test)
    probs = calibration.softmax(test_logits, temperature=temperature)
    correct = probs.argmax(1) == test_labels
    is_new = np.isin(test.classes, list(new))
    known = test_labels >= 0
    return {"old types": correct[~is_new].mean() if (~is_new).any() else np.nan,
            "new types": correct[is_new].mean() if is_new.any() else np.nan,
            "test ECE": calibration.expected_calibration_error(probs[known], test_labels[known])}
