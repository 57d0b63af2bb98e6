"""A run's inputs, computed once: the untrained model, the decoded photos and the frozen part's activations.

The final model and every cross-fitting fold start from the same ``Prepared`` run.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from meterlib.model import backbones, inference, network
from meterlib.train import cache, phases, table as tables, warm
from meterlib.train.recipe import TrainConfig


@dataclass(frozen=True)
class RunOptions:
    """How a run computes rather than what it learns: seeding, kernels, device, workers."""

    seed: int = 0  # seeds every random draw (model head, augmentation, batch order)
    deterministic: bool = False  # deterministic torch kernels (slower)
    device: object = None  # None: CUDA when present, else the CPU
    workers: int = 0  # DataLoader worker processes for augmentation


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
    lineage: dict | None = None  # a warm start's: the new checkpoint's ``lineage`` field


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


def prepare(table: pd.DataFrame, *, cfg: TrainConfig, backbone: str, weights_path, images: dict | None,
            progress: bool, options: RunOptions, parent: warm.Parent | None = None) -> Prepared:
    """Build the untrained model, decode the photos (unless given) and cache the frozen part's activations.

    With ``parent`` the model starts from that checkpoint's weights, new types imprinted (``warm``).
    """
    import torch

    device = torch.device(options.device) if options.device is not None else inference.default_device()
    model, class_names, backbone_name, reason = _classifier(table, backbone, weights_path, device)
    mean, std = backbones.normalisation(backbone_name)
    if parent is not None:
        added = warm.check_parent(parent, backbone=backbone_name, image_size=cfg.image_size,
                                  class_names=class_names)
        warm.start_from(model, parent, class_names)
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
    pooled, lineage = None, None
    if parent is not None:
        tick = time.perf_counter()
        # Phase 1 reads these pooled features too (the parent's last block): computed once for both.
        pooled = [network.batched(network.pooled(model), acts, batch_size=128, device=device)
                  for acts in train_views]
        warm.imprint(model, pooled[0], labels["train"], [class_names.index(name) for name in added])
        lineage = warm.lineage(parent, added=added, photos=len(labels["train"]))
        timings["imprint"] = time.perf_counter() - tick
    fit = phases.Fit(model=model, cfg=cfg, train_views=train_views, train_labels=labels["train"],
                     val_acts=val_acts, val_labels=labels["val"],
                     loss_fn=phases.loss_function(labels["train"], len(class_names), cfg=cfg, device=device),
                     device=device, tracker=phases.Tracker(use_val=use_val), seed=options.seed, pooled=pooled)
    return Prepared(fit=fit, start_state=copy.deepcopy(model.state_dict()), backbone=backbone_name,
                    backbone_reason=reason, class_names=class_names, mean=tuple(mean), std=tuple(std),
                    selection=selection, images=images, index=table.index[table["split"] == "train"].to_numpy(),
                    timings=timings, lineage=lineage)
