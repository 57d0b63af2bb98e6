"""The tables 03 shows: calibration before and after, test intervals, set coverage per group, accuracy by quality."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from meterlib.confidence import bootstrap, calibration, conformal, fitted, mondrian


def calibration_table(splits: Mapping[str, tuple[np.ndarray, np.ndarray]], *, temperature: float,
                      n_bins: int) -> pd.DataFrame:
    """ECE, MCE, NLL, Brier and accuracy per split (name: (logits, labels)), before and after scaling."""
    columns = {}
    for name, (logits, labels) in splits.items():
        for when, used in (("before", 1.0), ("after", temperature)):
            probs = calibration.softmax(logits, temperature=used)
            columns[f"{name} {when}"] = calibration.calibration_summary(probs, labels, n_bins=n_bins)
    return pd.DataFrame(columns)


def intervals_on_test(probs_by_when: Mapping[str, np.ndarray], labels, *, n_bins: int, n_boot: int,
                      seed: int) -> dict:
    """summary_with_intervals of each set of test probabilities (e.g. before and after calibration)."""
    return {when: bootstrap.summary_with_intervals(probs, labels, n_bins=n_bins, n_boot=n_boot, seed=seed)
            for when, probs in probs_by_when.items()}


def interval_table(intervals: Mapping[str, Mapping[str, Mapping[str, float]]]) -> pd.DataFrame:
    """Rows metric, columns "<when> value/low/high" from ``intervals_on_test``."""
    return pd.DataFrame({f"{when} {part}": {name: bounds[part] for name, bounds in summary.items()}
                         for when, summary in intervals.items() for part in ("value", "low", "high")})


def set_coverage_table(probs, labels, calibrated: fitted.CalibrationFit) -> pd.DataFrame:
    """Coverage and mean set size per set group of ``calibrated``'s sets against one marginal APS threshold (u = 0)."""
    served = calibrated.calibration
    groups, quantiles = calibrated.groups, calibrated.group_quantiles
    sets = {"marginal": conformal.aps_prediction_sets(probs, served.conformal_quantile),
            "per group": mondrian.mondrian_prediction_sets(probs, dict(quantiles), groups, u=served.conformal_u)}
    tables = {name: mondrian.coverage_by_group(member, labels, groups) for name, member in sets.items()}
    table = tables["per group"].join(tables["marginal"].drop(columns="photos").add_suffix(" (marginal)"))
    return table.assign(quantile=pd.Series(dict(quantiles)))


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
