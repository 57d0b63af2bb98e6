"""Notebook 03's bookkeeping: which photos it judges, the calibration it fits, and metrics.json.

The notebook tells the story and draws; the rows it selects, the fallbacks it applies and the
schema of everything it writes (metrics.json, the checkpoint's calibration fields) live here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from meterlib.confidence import bootstrap, calibration, conformal, fitted, mondrian
from meterlib.data import splits
from meterlib.evaluate import suspects
from meterlib.model import checkpoint


def check_same_splits(content: dict, splits_csv: str | os.PathLike) -> None:
    """Raise CheckpointError when ``splits_csv`` is not the manifest the checkpoint was trained on."""
    if content.get("splits_sha256") and content["splits_sha256"] != checkpoint.file_sha256(splits_csv):
        raise checkpoint.CheckpointError(
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


def calibration_table(splits: Mapping[str, tuple[np.ndarray, np.ndarray]], *, temperature: float,
                      n_bins: int) -> pd.DataFrame:
    """ECE, MCE, NLL, Brier and accuracy per split (name: (logits, labels)), before and after scaling."""
    columns = {}
    for name, (logits, labels) in splits.items():
        for when, used in (("before", 1.0), ("after", temperature)):
            probs = calibration.softmax(logits, temperature=used)
            columns[f"{name} {when}"] = calibration.calibration_summary(probs, labels, n_bins=n_bins)
    return pd.DataFrame(columns)


def calibration_record(fit: calibration.TemperatureFit, *, table: pd.DataFrame, ece_bins: int,
                       sources: Mapping[str, int]) -> dict:
    """The temperature fit and its before/after metrics (``table``), as metrics.json and the checkpoint store it."""
    metrics = {f"{metric}_{column.replace(' ', '_')}": float(table.loc[metric, column])
               for metric in table.index for column in table.columns}
    return {"temperature": fit.temperature, "fitted": fit.fitted, "reason": fit.reason,
            "val_images": fit.n_samples, "calibration_photos": dict(sources), "ece_bins": ece_bins, **metrics}


def checkpoint_fields(calibrated: fitted.CalibrationFit, *, record: Mapping) -> dict:
    """The fields 03 sets in the checkpoint it releases: the calibration, its alpha and ``calibration_record``."""
    return {**calibrated.calibration.to_fields(), "conformal_alpha": calibrated.alpha, "calibration": dict(record)}


def build_metrics(*, checkpoint_created: str, test_metrics: Mapping[str, float],
                  calibrated: fitted.CalibrationFit, record: Mapping, test_outcome: Mapping[str, float],
                  unseen_rows: pd.DataFrame, aurocs: Mapping[str, float], untested: Sequence[str],
                  data_warnings: Sequence[str]) -> dict:
    """metrics.json: the test metrics, the calibration and what the served answers achieve on test.

    ``record`` is ``calibration_record`` of the fit; ``test_outcome`` is ``scoring.answer_summary`` of
    the served test answers; ``aurocs`` separate known from unseen classes per score.
    """
    choice = calibrated.threshold
    return {
        "checkpoint_created": checkpoint_created,
        "test": dict(test_metrics),
        "calibration": dict(record),
        # "calibration": measured on the calibration photos (val, and out of fold where val lacks them).
        "unknown_threshold": {"threshold": choice.threshold, "target_accuracy": calibrated.target_accuracy,
                              "target_met_on_calibration": choice.target_met,
                              "calibration_coverage": choice.coverage, "test_coverage": test_outcome["coverage"],
                              "test_accuracy_answered": test_outcome["accuracy_answered"]},
        "conformal": {"method": "APS", "alpha": calibrated.alpha, "confidence": calibrated.confidence,
                      "quantile": calibrated.calibration.conformal_quantile,
                      "test_coverage": test_outcome["set_coverage"],
                      "test_mean_set_size": test_outcome["mean_set_size"]},
        "unseen_classes": {"classes": sorted(unseen_rows["class"].unique()), "photos": len(unseen_rows),
                           "auroc": dict(aurocs)},
        "classes_without_test_photos": list(untested),
        # Non-empty when a user's own split leaks (near-)copies across splits: test accuracy is inflated.
        "data_warnings": list(data_warnings),
    }


def quality_table(results: pd.DataFrame, manifest: pd.DataFrame, *, nuisance_csv: str | os.PathLike,
                  nuisance_columns: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """Results with each photo's audit qualities and, for generated data, its generator's nuisances.

    Returns the table and its property columns: brightness, contrast and sharpness from 01's audit,
    then each of ``nuisance_columns`` found in ``nuisance_csv`` as "<name> (generator)".
    """
    columns = ["brightness", "contrast", "sharpness"]
    table = results.merge(manifest[["path", *columns]], left_on="image", right_on="path")
    if os.path.isfile(nuisance_csv):
        nuisance = pd.read_csv(nuisance_csv).set_index("path")
        for name in (c for c in nuisance_columns if c in nuisance.columns):
            table[f"{name} (generator)"] = table["path"].map(nuisance[name])
            columns.append(f"{name} (generator)")
    return table, columns


@dataclass(frozen=True)
class CalibrationData:
    """The photos 03 calibrates on: val photos, and training photos out of fold where val is missing or small."""

    logits: np.ndarray
    labels: np.ndarray
    sources: dict[str, int]  # photos per source, e.g. {"out_of_fold": 300, "val": 120}


def calibration_data(content: dict, val_logits, val_labels, *, min_val: int) -> CalibrationData:
    """Out-of-fold logits and labels, then every val photo's: the out-of-fold ones of the classes val lacks,
    or of every class while val has fewer than ``min_val`` photos.

    Val photos are scored by the served model itself; the out-of-fold ones by fold models that replay
    phase 1 only, which are weaker, so a calibration fitted on them describes another model. They stand in where val has no photo, and
    fill a val split too small to fit on alone.
    """
    val_labels = np.asarray(val_labels, dtype=np.int64)
    parts = []
    oof = content.get("out_of_fold")
    if oof is not None:
        labels = oof["labels"].numpy()
        kept = ~np.isin(labels, val_labels) if val_labels.size >= min_val else np.ones(labels.size, dtype=bool)
        parts.append((oof["logits"].double().numpy()[kept], labels[kept], "out_of_fold"))
    parts.append((np.asarray(val_logits, dtype=np.float64), val_labels, "val"))
    return CalibrationData(logits=np.concatenate([logits for logits, _, _ in parts]),
                           labels=np.concatenate([labels for _, labels, _ in parts]),
                           sources={name: len(labels) for _, labels, name in parts})


def training_size_groups(manifest: pd.DataFrame, class_names: Sequence[str], *, small_below: int,
                         large_from: int) -> np.ndarray:
    """Each class's size group from its count of training photos (thresholds in training photos)."""
    train = manifest.loc[manifest["split"] == "train", "class"].value_counts()
    counts = train.reindex(list(class_names), fill_value=0).to_numpy()
    return mondrian.size_groups(counts, small_below=small_below, large_from=large_from)


def set_coverage_table(probs, labels, groups, *, marginal_quantile: float, quantiles: Mapping[str, float],
                       u: float) -> pd.DataFrame:
    """Coverage and mean set size per size group: the marginal APS sets (u = 0) against the per-group ones."""
    sets = {"marginal": conformal.aps_prediction_sets(probs, marginal_quantile),
            "per group": mondrian.mondrian_prediction_sets(probs, dict(quantiles), groups, u=u)}
    tables = {name: mondrian.coverage_by_group(member, labels, groups) for name, member in sets.items()}
    table = tables["per group"].join(tables["marginal"].drop(columns="photos").add_suffix(" (marginal)"))
    return table.assign(quantile=pd.Series(dict(quantiles)))


def interval_table(intervals: Mapping[str, Mapping[str, Mapping[str, float]]]) -> pd.DataFrame:
    """Rows metric, columns "<when> value/low/high" from {when: summary_with_intervals(...)}."""
    return pd.DataFrame({f"{when} {part}": {name: bounds[part] for name, bounds in summary.items()}
                         for when, summary in intervals.items() for part in ("value", "low", "high")})


def intervals_on_test(probs_by_when: Mapping[str, np.ndarray], labels, *, n_bins: int, n_boot: int,
                   seed: int) -> dict:
    """summary_with_intervals of each set of test probabilities (e.g. before and after calibration)."""
    return {when: bootstrap.summary_with_intervals(probs, labels, n_bins=n_bins, n_boot=n_boot, seed=seed)
            for when, probs in probs_by_when.items()}


def honest_confidence_metrics(metrics: dict, *, groups: pd.DataFrame, intervals: Mapping) -> dict:
    """``metrics`` with the per-size-group sets under conformal.groups and the test intervals.

    NaN (a group without test photos) and inf (an uncalibrated group) become null in ``atomic.write_json``.
    """
    metrics = {**metrics, "conformal": {**metrics["conformal"], "groups": groups.to_dict(orient="index")}}
    metrics["test_calibration_intervals"] = {when: dict(summary) for when, summary in intervals.items()}
    return metrics


def suspect_table(content: dict, *, temperature: float) -> tuple[pd.DataFrame | None, str]:
    """cleanlab's suspect labels among the training photos out of fold, or None and why not."""
    oof = content.get("out_of_fold")
    if oof is None:
        return None, "skipped: the checkpoint holds no out-of-fold predictions (02 made none)"
    # The final model's features separate the classes far better than the phase-1 folds' heads, so
    # they rank suspects when 02 stored them (a weak model flags many clean photos).
    probs = (oof["feature_probs"].double().numpy() if "feature_probs" in oof
             else calibration.softmax(oof["logits"].double().numpy(), temperature=temperature))
    try:
        table = suspects.suspect_labels(probs, oof["labels"].numpy(), class_names=content["class_names"],
                                        photos=oof["photos"])
    except ValueError as exc:  # e.g. a class with fewer than suspects.MIN_PHOTOS_PER_CLASS photos
        return None, f"skipped: {exc}"
    return table, f"{len(table)} suspect labels among {len(probs)} training photos"
