"""``train``: the two-phase recipe from a training table to the model of the best epoch."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from meterlib.model import backbones, inference
from meterlib.run import seeding
from meterlib.train import cache, phases, recipe
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


def train(table: pd.DataFrame, *, cfg: TrainConfig, backbone: str = "auto", weights_path=None,
          images: dict | None = None, progress: bool = True, options: RunOptions = RunOptions()) -> TrainResult:
    """Run the two-phase recipe on ``training_table`` rows; keep the best epoch on val."""
    # Deterministic kernels only while training: torch's process-wide settings come back after.
    with seeding.deterministic_kernels(options.deterministic):
        seeding.seed_everything(options.seed)
        return _two_phases(table, cfg=cfg, backbone=backbone, weights_path=weights_path, images=images,
                           progress=progress, options=options)


def _two_phases(table: pd.DataFrame, *, cfg: TrainConfig, backbone: str, weights_path, images: dict | None,
                progress: bool, options: RunOptions) -> TrainResult:
    import torch

    started = time.perf_counter()
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
    shared = dict(cfg=cfg, mean=mean, std=std, device=device, workers=options.workers, progress=progress)
    train_views = cache.augmented_activations(model.frozen_part, images["train"], **shared)
    val_acts = cache.val_activations(model.frozen_part, images.get("val", []), **shared)
    timings["frozen_part"] = time.perf_counter() - tick

    use_val, selection = _selection(val_acts, cfg)
    weights = recipe.class_weights(labels["train"].numpy(), len(class_names), power=cfg.class_weight_power)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights.to(device), label_smoothing=cfg.label_smoothing)
    fit = phases.Fit(model=model, cfg=cfg, train_views=train_views, train_labels=labels["train"],
                     val_acts=val_acts, val_labels=labels["val"], loss_fn=loss_fn, device=device,
                     tracker=phases.Tracker(use_val=use_val), seed=options.seed)
    for name, epochs, build in (("phase1", cfg.epochs_head, phases.head_phase),
                                ("phase2", cfg.epochs_finetune, phases.finetune_phase)):
        tick = time.perf_counter()
        if epochs > 0:
            phases.run_phase(fit, build, progress=progress)
        timings[name] = time.perf_counter() - tick

    model.load_state_dict(fit.tracker.best_state)
    model.eval()
    return TrainResult(model=model, backbone=backbone_name, backbone_reason=reason,
                       class_names=class_names, mean=tuple(mean), std=tuple(std), config=cfg,
                       history=pd.DataFrame(fit.tracker.rows), best_epoch=fit.tracker.best_epoch,
                       selection=selection, seconds=time.perf_counter() - started, timings=timings)


def accuracy(model, images: Sequence, class_names: Sequence[str], true_classes: Sequence[str], *,
             image_size: int, mean, std, device=None) -> float:
    """Top-1 accuracy of a model on decoded images with the eval preprocessing."""
    if not len(images):
        return float("nan")
    logits = inference.logits_for_images(model, images, image_size=image_size, mean=mean, std=std,
                                         device=device)
    predicted = np.asarray(class_names)[logits.argmax(1).numpy()]
    return float(np.mean(predicted == np.asarray(true_classes)))
