"""The training recipe: every number of it, the presets, and the class weights of the loss.

This module is the only home of the recipe's defaults (augmentation strengths included):
callers pass ``None`` for what the chosen preset should decide.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from meterlib.model.transforms import Augment

PRECISIONS = ("auto", "float32", "bfloat16")

ORIGINAL_AUGMENT = Augment(crop_scale_min=0.7, rotation_deg=10.0, perspective=0.2, perspective_p=0.5,
                           brightness=0.3, contrast=0.3, saturation=0.3, hue=0.02, blur_p=0.3,
                           blur_sigma_max=1.5)


@dataclass(frozen=True)
class TrainConfig:
    """Every number of the recipe, by default the original system's; stored in the checkpoint."""

    image_size: int = 224
    epochs_head: int = 6
    epochs_finetune: int = 8
    lr_head: float = 1e-3
    lr_finetune: float = 1e-4
    weight_decay: float = 0.0
    batch_size: int = 32
    # The original draws new augmentations every epoch; seven cached views (each seen twice in
    # the 14 epochs) keep most of that variety at half the frozen-part cost.
    views: int = 7  # augmented versions of each training photo pushed through the frozen part
    clean_view: bool = False  # view 0 is the un-augmented photo (test photos are not augmented)
    class_weight_power: float = 0.5  # loss weight of a class ~ (1 / its photo count) ** power
    label_smoothing: float = 0.0
    finetune_bn: str = "train"  # 'train': last block's batch norms use batch statistics; 'frozen'
    lr_schedule: str = "constant"  # or 'cosine' (per phase)
    patience: int = 0  # stop a phase after this many epochs without a better val score; 0: never
    min_val_images: int = 10  # fewer val photos than this: keep the last epoch instead of the best
    frozen_precision: str = "auto"  # frozen part's arithmetic: 'float32', 'bfloat16', or 'auto' (see cache)
    augment: Augment = ORIGINAL_AUGMENT

    def as_dict(self) -> dict:
        """Plain dict of the parameters (checkpoint and report friendly)."""
        return dataclasses.asdict(self)


PRESETS = {
    # The original system's recipe.
    "original": TrainConfig(),
    # What the original's validation curves asked for: phase 2 was still improving when it stopped.
    "default": TrainConfig(views=6, clean_view=True, epochs_head=10, epochs_finetune=15, lr_finetune=5e-4,
                           weight_decay=1e-4, label_smoothing=0.1, finetune_bn="frozen",
                           lr_schedule="cosine", patience=5),
}
DEPRECATED_PRESETS = {"seed": "original"}  # old name -> new name


def _preset(name: str) -> TrainConfig:
    """The preset called ``name``; a deprecated name works with a FutureWarning at the caller of ``config``."""
    if name in DEPRECATED_PRESETS:
        new = DEPRECATED_PRESETS[name]
        # FutureWarning, not DeprecationWarning: notebook users, not only developers, should see it.
        warnings.warn(f"preset {name!r} is deprecated; use {new!r}", FutureWarning, stacklevel=3)
        name = new
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def config(preset: str = "default", *, augment: Mapping[str, float | None] | None = None,
           **overrides) -> TrainConfig:
    """A preset with the parameters given replaced; ``None`` keeps the preset's, unknown names are an error."""
    base = _preset(preset)
    chosen = dataclasses.replace(base, **_given(overrides, TrainConfig),
                                 augment=dataclasses.replace(base.augment, **_given(augment or {}, Augment)))
    _check(chosen)
    return chosen


def _given(values: Mapping, kind) -> dict:
    """The non-None ``values``, after checking each name is a field of the dataclass ``kind``."""
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(kind)})
    if unknown:
        what = "augmentation" if kind is Augment else "training"
        raise ValueError(f"unknown {what} parameter(s): {', '.join(unknown)}")
    return {name: value for name, value in values.items() if value is not None}


def _check(chosen: TrainConfig) -> None:
    """Refuse a recipe the loop cannot run."""
    if chosen.finetune_bn not in ("train", "frozen") or chosen.lr_schedule not in ("constant", "cosine"):
        raise ValueError("finetune_bn must be 'train' or 'frozen', lr_schedule 'constant' or 'cosine'")
    if chosen.frozen_precision not in PRECISIONS:
        raise ValueError(f"frozen_precision must be one of {', '.join(PRECISIONS)}")
    if chosen.views < 1 or chosen.batch_size < 1 or chosen.image_size < 32:
        raise ValueError("views and batch_size must be >= 1 and image_size >= 32")
    if min(chosen.epochs_head, chosen.epochs_finetune) < 0 or chosen.epochs_head + chosen.epochs_finetune < 1:
        raise ValueError(f"epochs_head ({chosen.epochs_head}) and epochs_finetune ({chosen.epochs_finetune}) "
                         "must be >= 0 and train at least one epoch together")


def class_weights(labels: np.ndarray, n_classes: int, *, power: float):
    """Loss weight per class ~ (1 / count) ** power, scaled so the average photo weighs 1."""
    import torch

    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    raw = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0) ** power
    raw *= len(labels) / max((raw * counts).sum(), 1e-12)
    return torch.tensor(raw, dtype=torch.float32)
