"""``train``: the two-phase recipe from a training table to the model of the best epoch."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from meterlib.model import backbones, inference
from meterlib.run import seeding
from meterlib.train import cache, crossfit, phases
from meterlib.train import table as tables
from meterlib.train.recipe import TrainConfig


@dataclass(frozen=True)
class RunOptions:
    """How a run computes rather than what it learns: seeding, kernels, device, workers."""

    seed: int = 0  # seeds every random draw (model head, augmentation, batch order)
    deterministic: bool = False  # deterministic torch kernels (slower)
    device: object = None  # None: CUDA when present, else the CPU
    workers: int = 0  # DataLoader worker processes for augmentation


@dataclass
class TrainResult:
    """What ``train`` produced: the model at its best epoch and how it got there."""

    model: object
    backbone: str
    backbone_reason: str
    class_names: list[str]
    mean: tuple
    std: tuple
    config: TrainConfig
    history: pd.DataFrame
    best_epoch: int
    selection: str  # how the kept epoch was chosen
    seconds: float
    timings: dict = field(default_factory=dict)
    out_of_fold: crossfit.OutOfFold | None = None  # with ``folds``: predictions of the training photos
    # The pretrained frozen part's output for un-augmented photos, per split: val, and train when the
    # recipe caches a clean view (the linear probe reuses float32 ones), in the precision it ran in.
    clean_activations: dict = field(default_factory=dict)


@dataclass
class Prepared:
    """A run's inputs, computed once and shared by the final model and the cross-fitting folds."""

    fit: phases.Fit  # its model: pretrained weights and a fresh head, untrained until ``run_recipe``
    start_state: dict  # the model's weights before training
    backbone: str
    backbone_reason: str
    class_names: list[str]
    mean: tuple
    std: tuple
    selection: str
    images: dict  # decoded photos per split
    index: np.ndarray  # the training photos' rows in the table
    timings: dict


def _classifier(table: pd.DataFrame, backbone: str, weights_path, device):
    """(model on ``device``, class names, backbone name, reason) with a fresh head for the training classes."""
    import torch

    class_names = sorted(table.loc[table["split"] == "train", "class"].unique())
    model, name, reason = backbones.create(backbone, len(class_names), weights_path=weights_path)
    return model.to(device).to(memory_format=torch.channels_last), class_names, name, reason


def _selection(val_acts, cfg: TrainConfig) -> tuple[bool, str]:
    """Whether epochs are chosen on val, and how that reads in the result."""
    n_val = 0 if val_acts is None else len(val_acts)
    if val_acts is not None and n_val >= cfg.min_val_images:
        return True, "best val accuracy (ties: lower val loss)"
    return False, f"last epoch (only {n_val} val photos)"


def train(table: pd.DataFrame, *, cfg: TrainConfig, backbone: str = backbones.DEFAULT, weights_path=None,
          images: dict | None = None, progress: bool = True, options: RunOptions = RunOptions(),
          folds: int = 0) -> TrainResult:
    """Run the two-phase recipe on ``training_table`` rows; keep the best epoch on val.

    ``folds`` >= 2 also cross-fits: ``out_of_fold`` then holds a prediction of every training photo
    from a model that did not train on it (a head trained on the other folds; see ``meterlib.train.crossfit``).
    """
    # Deterministic kernels only while training: torch's process-wide settings come back after.
    with seeding.deterministic_kernels(options.deterministic):
        seeding.seed_everything(options.seed)
        started = time.perf_counter()
        run = prepare(table, cfg=cfg, backbone=backbone, weights_path=weights_path, images=images,
                      progress=progress, options=options)
        seconds, kept = phases.run_recipe(run.fit, progress=progress)
        run.timings.update(seconds)
        model = run.fit.model
        model.load_state_dict(run.fit.tracker.best_state)
        model.eval()
        oof = None
        if folds:
            # The folds replay phase 1 only: on the demo data that cost 1/15 of phase 2's time, replaying
            # phase 2 too 2.5 to 4.5 times phase 2's, and the temperature, UNKNOWN threshold and APS
            # quantile fitted on either did as well on test (benchmarks/bench_calibration.py; see crossfit).
            oof = cross_fit(run, epochs=(kept[0], 0), folds=folds, progress=progress, workers=options.workers)
            run.timings["crossfit"] = oof.seconds
    return TrainResult(model=model, backbone=run.backbone, backbone_reason=run.backbone_reason,
                       class_names=run.class_names, mean=run.mean, std=run.std, config=cfg,
                       history=pd.DataFrame(run.fit.tracker.rows), best_epoch=run.fit.tracker.best_epoch,
                       selection=run.selection, seconds=time.perf_counter() - started, timings=run.timings,
                       out_of_fold=oof, clean_activations=_clean_activations(run.fit))


def _clean_activations(fit: phases.Fit) -> dict:
    cached = {"train": fit.train_views[0] if fit.cfg.clean_view else None, "val": fit.val_acts}
    return {split: acts for split, acts in cached.items() if acts is not None}


def prepare(table: pd.DataFrame, *, cfg: TrainConfig, backbone: str, weights_path, images: dict | None,
            progress: bool, options: RunOptions) -> Prepared:
    """Build the untrained model, decode the photos (unless given) and cache the frozen part's activations."""
    import torch

    device = torch.device(options.device) if options.device is not None else inference.default_device()
    model, class_names, backbone_name, reason = _classifier(table, backbone, weights_path, device)
    mean, std = backbones.normalisation(backbone_name)
    tick = time.perf_counter()
    images = images if images is not None else tables.decode_splits(table, image_size=cfg.image_size,
                                                                    progress=progress)
    timings = {"decode": time.perf_counter() - tick}
    index = {name: i for i, name in enumerate(class_names)}
    labels = {split: torch.tensor([index[c] for c in table.loc[table["split"] == split, "class"]],
                                  dtype=torch.long) for split in ("train", "val")}

    tick = time.perf_counter()
    shared = dict(cfg=cfg, mean=mean, std=std, device=device, workers=options.workers)
    train_views = cache.augmented_activations(model.frozen_part, images["train"], progress=progress, **shared)
    val_acts = cache.clean_activations(model.frozen_part, images.get("val", []),
                                       progress="val" if progress else None, **shared)
    timings["frozen_part"] = time.perf_counter() - tick

    use_val, selection = _selection(val_acts, cfg)
    fit = phases.Fit(model=model, cfg=cfg, train_views=train_views, train_labels=labels["train"],
                     val_acts=val_acts, val_labels=labels["val"],
                     loss_fn=phases.loss_function(labels["train"], len(class_names), cfg=cfg, device=device),
                     device=device, tracker=phases.Tracker(use_val=use_val), seed=options.seed)
    return Prepared(fit=fit, start_state=copy.deepcopy(model.state_dict()), backbone=backbone_name,
                    backbone_reason=reason, class_names=class_names, mean=tuple(mean), std=tuple(std),
                    selection=selection, images=images, index=table.index[table["split"] == "train"].to_numpy(),
                    timings=timings)


def cross_fit(run: Prepared, *, epochs: tuple[int | None, int | None], folds: int = 5, progress: bool = False,
              workers: int = 0) -> crossfit.OutOfFold:
    """Out-of-fold predictions of ``run``'s training photos; each fold replays ``epochs`` of ``run.fit``'s recipe.

    The folds predict the un-augmented photos: the cached clean view, or (a recipe without one) one
    more pass of the training photos through the frozen part. ``feature_probs`` (for the suspect
    labels) comes from the final model's features of the same photos, in the same folds.
    """
    import torch

    fit = run.fit
    clean = fit.train_views[0] if fit.cfg.clean_view else cache.clean_activations(
        fit.model.frozen_part, run.images["train"], cfg=fit.cfg, mean=run.mean, std=run.std, device=fit.device,
        workers=workers)
    oof = crossfit.out_of_fold(fit, start_state=run.start_state, clean_acts=clean, epochs=epochs, index=run.index,
                               class_names=run.class_names, folds=folds, progress=progress)
    tick = time.perf_counter()
    features = cache.batched(torch.nn.Sequential(fit.model.last_block, fit.model.pool), clean, batch_size=128,
                             device=fit.device).numpy()
    oof.feature_probs = crossfit.feature_out_of_fold(features, oof.labels, oof.fold, classes=len(run.class_names),
                                                     seed=fit.seed)
    oof.seconds += time.perf_counter() - tick
    return oof


def accuracy(model, images: Sequence, class_names: Sequence[str], true_classes: Sequence[str], *,
             image_size: int, mean, std, device=None) -> float:
    """Top-1 accuracy of a model on decoded images with the eval preprocessing."""
    if not len(images):
        return float("nan")
    logits = inference.logits_for_images(model, images, image_size=image_size, mean=mean, std=std,
                                         device=device)
    predicted = np.asarray(class_names)[logits.argmax(1).numpy()]
    return float(np.mean(predicted == np.asarray(true_classes)))
