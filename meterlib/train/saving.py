"""The model file that notebook 02 writes: a trained model with everything 03, 04 and a retrain need.

Fields 03 adds (the calibration) are ``confidence.fitted.checkpoint_fields``; each field's format is
checked by ``model.field_formats``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import pandas as pd

from meterlib.model import checkpoint, gallery, reference
from meterlib.train.training import TrainResult

if TYPE_CHECKING:
    from meterlib.train.probe import ProbeResult


def save_trained(result: TrainResult, path: str | os.PathLike, *, table: pd.DataFrame,
                 dataset_dir: str | os.PathLike, splits_sha256: str, preset: str, scores: Mapping[str, float],
                 linear_probe: ProbeResult | None = None) -> Path:
    """Write ``result`` as one checkpoint, atomically: model, metrics, history, gallery, reference features,
    out of fold, lineage.

    ``table`` is the training table ``result`` was trained on (``dataset_dir``'s photos), ``splits_sha256``
    the hash of the splits.csv it came from, ``preset`` the recipe's preset, ``scores`` the kept
    model's val and test accuracy, ``linear_probe`` the baseline's result when one was fitted.
    """
    spec = checkpoint.ModelSpec(backbone=result.backbone, class_names=result.class_names,
                                image_size=result.config.image_size, mean=result.mean, std=result.std)
    metrics = {"best_epoch": result.best_epoch, "epochs_run": len(result.history),
               "selection": result.selection, "val_accuracy": scores["val"], "test_accuracy": scores["test"],
               "train_seconds": round(result.seconds, 1)}
    if linear_probe is not None:
        metrics.update(probe_C=linear_probe.C, probe_val_accuracy=linear_probe.val_accuracy,
                       probe_test_accuracy=linear_probe.test_accuracy)
    train_rows = table[table["split"] == "train"]
    train_files = list(train_rows["file"])
    train_labels = [result.class_names.index(name) for name in train_rows["class"]]
    photo_gallery = gallery.build(result.model, train_files, train_labels, spec=spec, root=dataset_dir,
                                  seed=result.options.seed)
    reference_features = reference.build(result.model, train_files, train_labels, spec=spec,
                                         seed=result.options.seed)
    oof = result.out_of_fold
    out_of_fold = None if oof is None else oof.checkpoint_field(table.loc[oof.index, "path"].tolist())
    training = {**result.config.as_dict(), "preset": preset, "backbone_choice": result.backbone_choice,
                "backbone_reason": result.backbone_reason, "seed": result.options.seed,
                "deterministic": result.options.deterministic, "dataset": Path(dataset_dir).name}
    lineage = {} if result.lineage is None else {"lineage": result.lineage}
    return checkpoint.save(path, model=result.model, spec=spec, splits_sha256=splits_sha256, metrics=metrics,
                           history=result.history.to_dict(orient="list"), gallery=photo_gallery,
                           reference_features=reference_features, out_of_fold=out_of_fold, training=training,
                           **lineage)
