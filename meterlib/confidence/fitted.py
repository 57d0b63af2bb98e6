"""The calibration a model answers with: its values and rules, how they turn a model's outputs into answers, and their fit.

A ``Calibration``'s fields are named as the model file's fields that store them (see
``model.field_formats``): ``from_fields`` and ``to_fields`` read and write them by those names.
Notebook 03 chooses its photos with ``calibration_data``, fits one with ``fit_calibration``, adds the
unseen-type rule and the photo limits with ``with_rules`` and stores it with ``checkpoint_fields``;
the Predictor answers with the one in its model file.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from meterlib.confidence import calibration, conformal, mondrian, selective, unseen
from meterlib.confidence.photo_limits import PhotoLimits
from meterlib.confidence.unseen import UnseenRule

RULES = {"unseen_type": UnseenRule, "photo_limits": PhotoLimits}  # fields stored as a dict of their own


@dataclass(frozen=True)
class Calibration:
    """Temperature, UNKNOWN threshold and prediction-set thresholds; the defaults answer uncalibrated."""

    temperature: float = 1.0
    unknown_threshold: float = selective.DEFAULT_UNKNOWN_THRESHOLD
    conformal_quantile: float = math.inf  # inf: every class is in every set
    # One set threshold per class (03's per-size-group sets); None: conformal_quantile for all.
    conformal_class_thresholds: tuple[float, ...] | None = None
    conformal_u: float = 0.0  # APS tie-break the thresholds were calibrated with
    unseen_type: UnseenRule | None = None  # None: no unseen-type score (a model file from before it)
    photo_limits: PhotoLimits | None = None  # None: no photo is judged too poor

    def __post_init__(self):
        # Plain floats whatever came in (numpy scalars, ints, lists), so equal calibrations compare equal;
        # the rules from their model-file dicts.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in RULES:
                value = RULES[field.name].from_field(value) if isinstance(value, Mapping) else value
            elif field.name == "conformal_class_thresholds":
                value = None if value is None else tuple(map(float, value))
            else:
                value = float(value)
            object.__setattr__(self, field.name, value)

    @classmethod
    def from_fields(cls, fields: Mapping) -> "Calibration":
        """The calibration stored in checked model-file fields; an absent or None field keeps its default."""
        return cls(**{field.name: fields[field.name] for field in dataclasses.fields(cls)
                      if fields.get(field.name) is not None})

    def to_fields(self) -> dict:
        """The model-file fields that store this calibration (None values are left out)."""
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return {name: list(value) if isinstance(value, tuple) else value.to_field() if name in RULES else value
                for name, value in values.items() if value is not None}

    def probabilities(self, logits) -> np.ndarray:
        """Calibrated class probabilities of logits (n, classes)."""
        return calibration.softmax(logits, temperature=self.temperature)

    def is_unknown(self, confidence) -> np.ndarray:
        """Whether each calibrated top-class probability is too low to answer (UNKNOWN)."""
        return selective.is_unknown(confidence, self.unknown_threshold)

    def prediction_sets(self, probs) -> np.ndarray:
        """Boolean (n, classes) prediction sets of calibrated probabilities."""
        thresholds = self.conformal_class_thresholds
        return conformal.aps_prediction_sets(probs, self.conformal_quantile if thresholds is None else thresholds,
                                             u=self.conformal_u)


@dataclass(frozen=True)
class CalibrationFit:
    """A fitted Calibration with what its fit found, and the targets it was fitted for."""

    calibration: Calibration
    temperature_fit: calibration.TemperatureFit
    threshold: selective.ThresholdChoice
    groups: tuple[str, ...]  # each class's set group
    group_quantiles: dict[str, float]  # APS quantile per group (the class thresholds come from these)
    target_accuracy: float
    alpha: float
    confidence: float | None  # probability that the per-group sets cover 1 - alpha; None: on average


@dataclass(frozen=True)
class CalibrationData:
    """The photos a calibration is fitted on (chosen by ``calibration_data``) and how many each source gave."""

    logits: np.ndarray
    labels: np.ndarray
    sources: dict[str, int]  # photos per source, e.g. {"out_of_fold": 300, "val": 120}


def calibration_data(val_logits, val_labels, *, out_of_fold: Mapping | None, min_val: int) -> CalibrationData:
    """Out-of-fold logits and labels, then every val photo's: the out-of-fold ones of the classes val lacks,
    or of every class while val has fewer than ``min_val`` photos.

    ``out_of_fold`` is the model file's field of that name (None: 02 made none). Val photos are scored
    by the served model itself; the out-of-fold ones by fold models that replay phase 1 only, which
    are weaker, so a calibration fitted on them describes another model. They stand in where val has
    no photo, and fill a val split too small to fit on alone.
    """
    val_labels = np.asarray(val_labels, dtype=np.int64)
    parts = []
    if out_of_fold is not None:
        labels = np.asarray(out_of_fold["labels"])
        kept = ~np.isin(labels, val_labels) if val_labels.size >= min_val else np.ones(labels.size, dtype=bool)
        parts.append((np.asarray(out_of_fold["logits"], dtype=np.float64)[kept], labels[kept], "out_of_fold"))
    parts.append((np.asarray(val_logits, dtype=np.float64), val_labels, "val"))
    return CalibrationData(logits=np.concatenate([logits for logits, _, _ in parts]),
                           labels=np.concatenate([labels for _, labels, _ in parts]),
                           sources={name: len(labels) for _, labels, name in parts})


def training_size_groups(manifest: pd.DataFrame, class_names: Sequence[str], *, small_below: int,
                         large_from: int) -> np.ndarray:
    """Each class's set group (``mondrian.size_groups``) from its count of training photos in the manifest."""
    train = manifest.loc[manifest["split"] == "train", "class"].value_counts()
    counts = train.reindex(list(class_names), fill_value=0).to_numpy()
    return mondrian.size_groups(counts, small_below=small_below, large_from=large_from)


def unknown_threshold_choice(confidence, correct, *, target_accuracy: float) -> selective.ThresholdChoice:
    """The UNKNOWN threshold chosen on calibration photos; without any, the default (nothing measured)."""
    if not len(confidence):
        return selective.ThresholdChoice(selective.DEFAULT_UNKNOWN_THRESHOLD, math.nan, math.nan, False)
    return selective.choose_threshold(confidence, correct, target_accuracy=target_accuracy)


def fit_calibration(logits, labels, groups, *, min_samples: int, target_accuracy: float, alpha: float,
                    confidence: float | None, u: float = conformal.INFORMATIVE_U) -> CalibrationFit:
    """Fit temperature, UNKNOWN threshold and per-group set thresholds, in that order, on calibration photos.

    ``groups`` names each class's set group (e.g. ``mondrian.size_groups``). The threshold and the
    sets are fitted on the temperature-scaled probabilities, as they are served. The marginal quantile
    (u = 0) is kept as ``conformal_quantile`` for comparison; the served sets use the class thresholds.
    """
    logits = np.asarray(logits, dtype=np.float64)
    fit = calibration.fit_temperature(logits, labels, min_samples=min_samples)
    probs = calibration.softmax(logits, temperature=fit.temperature)
    choice = unknown_threshold_choice(probs.max(axis=1), probs.argmax(axis=1) == np.asarray(labels),
                                      target_accuracy=target_accuracy)
    quantiles = mondrian.calibrate_mondrian(probs, labels, groups, alpha=alpha, u=u, confidence=confidence)
    fitted = Calibration(temperature=fit.temperature, unknown_threshold=choice.threshold,
                         conformal_quantile=conformal.calibrate_aps(probs, labels, alpha=alpha),
                         conformal_class_thresholds=mondrian.class_thresholds(quantiles, groups), conformal_u=u)
    return CalibrationFit(calibration=fitted, temperature_fit=fit, threshold=choice,
                          groups=tuple(groups), group_quantiles=quantiles,
                          target_accuracy=target_accuracy, alpha=alpha, confidence=confidence)


def unseen_type_rule(val_logits, val_similarity, *, temperature: float, alpha: float,
                     min_photos: int) -> tuple[UnseenRule | None, str]:
    """The unseen-type rule fitted on the val photos (scored by the served model), or None and why not.

    ``val_similarity`` is None when the checkpoint has no reference features (a model from before them).
    The out-of-fold photos never join: the fold models' logits and features are another model's.
    """
    if val_similarity is None:
        return None, ("the checkpoint has no reference features of its training photos "
                      "(notebook 02 stores them; train again)")
    rule = unseen.fit_unseen_rule(val_logits, val_similarity, temperature=temperature, alpha=alpha,
                                  min_photos=min_photos)
    if rule is None:
        return None, f"only {len(val_similarity)} val photos, fewer than min_unseen_photos ({min_photos})"
    return rule, ""


def with_rules(calibrated: CalibrationFit, *, unseen_type: UnseenRule | None,
               photo_limits: PhotoLimits | None) -> CalibrationFit:
    """``calibrated`` whose calibration also carries the unseen-type rule and the photo limits (None: none)."""
    served = dataclasses.replace(calibrated.calibration, unseen_type=unseen_type, photo_limits=photo_limits)
    return dataclasses.replace(calibrated, calibration=served)


def rules_record(served: Calibration, *, unseen_note: str = "", limits_note: str = "") -> dict:
    """The ``calibration`` record's entries on the unseen-type rule and the photo limits: whether each was
    fitted, on how many photos, and the note saying why not."""
    rule, limits = served.unseen_type, served.photo_limits
    return {"unseen_type": {"fitted": rule is not None, "reason": unseen_note,
                            "alpha": None if rule is None else rule.alpha,
                            "calibration_photos": 0 if rule is None else rule.photos},
            "photo_limits": {"fitted": limits is not None, "reason": limits_note,
                             "quantile": None if limits is None else limits.quantile}}


def calibration_record(fit: calibration.TemperatureFit, *, table: pd.DataFrame, ece_bins: int,
                       sources: Mapping[str, int]) -> dict:
    """The model file's ``calibration`` field (also metrics.json's): the temperature fit and ``table``'s metrics.

    ``table`` has one row per metric and one column per "<split> <before|after>" (as 03's
    ``evaluate.tables.calibration_table``); each cell becomes ``<metric>_<split>_<when>``.
    """
    metrics = {f"{metric}_{column.replace(' ', '_')}": float(table.loc[metric, column])
               for metric in table.index for column in table.columns}
    return {"temperature": fit.temperature, "fitted": fit.fitted, "reason": fit.reason,
            "val_images": fit.n_samples, "calibration_photos": dict(sources), "ece_bins": ece_bins, **metrics}


def checkpoint_fields(calibrated: CalibrationFit, *, record: Mapping) -> dict:
    """The model-file fields 03 sets when it releases a model: the calibration, its alpha and ``record``.

    A rule that was not fitted is set to None, so a re-calibrated model file keeps no stale one.
    """
    return {**dict.fromkeys(RULES), **calibrated.calibration.to_fields(), "conformal_alpha": calibrated.alpha,
            "calibration": dict(record)}
