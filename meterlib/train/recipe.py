"""The training recipe: every number of it, the presets, and the class weights of the loss.

This module is the only home of the recipe's defaults and their rules (augmentation strengths included):
callers pass ``None`` for what the chosen preset should decide.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from meterlib.errors import SettingsError
from meterlib.model.transforms import Augment
from meterlib.run.parameters import COUNT, NON_NEGATIVE, POSITIVE, Range, enforce, rules, setting, share

PRECISIONS = ("auto", "float32", "bfloat16")

ORIGINAL_AUGMENT = Augment(crop_scale_min=0.7, rotation_deg=10.0, perspective=0.2, perspective_p=0.5,
                           brightness=0.3, contrast=0.3, saturation=0.3, hue=0.02, blur_p=0.3,
                           blur_sigma_max=1.5)


@dataclass(frozen=True)
class TrainConfig:
    """Every number of the recipe, by default the original system's; stored in the checkpoint."""

    image_size: int = setting(224, help="input side in pixels", range=Range(32, 2048))
    epochs_head: int = setting(6, help="phase 1 epochs, frozen backbone", range=NON_NEGATIVE)
    epochs_finetune: int = setting(8, help="phase 2 epochs, last block unfrozen", range=NON_NEGATIVE)
    lr_head: float = setting(1e-3, help="phase 1 Adam learning rate", range=POSITIVE)
    lr_finetune: float = setting(1e-4, help="phase 2 Adam learning rate", range=POSITIVE)
    weight_decay: float = setting(0.0, help="Adam weight decay", range=NON_NEGATIVE)
    batch_size: int = setting(32, help="photos per optimisation step", range=COUNT)
    # The original draws new augmentations every epoch; seven cached views (each seen twice in
    # the 14 epochs) keep most of that variety at half the frozen-part cost.
    views: int = setting(7, help="augmented versions of each training photo", range=COUNT)
    # Test photos are not augmented, so one view like them helps.
    clean_view: bool = setting(False, help="one of the views is the un-augmented photo")
    class_weight_power: float = setting(0.5, help="class weight ~ (1/count)**power", range=NON_NEGATIVE)
    label_smoothing: float = setting(0.0, help="share of each target spread over all classes",
                                     range=share(open_high=True))
    finetune_bn: str = setting("train", help="phase 2 batch norms: 'train' (batch statistics) or 'frozen'",
                               choices=("train", "frozen"))
    lr_schedule: str = setting("constant", help="'constant' or 'cosine' per phase", choices=("constant", "cosine"))
    patience: int = setting(0, help="early stop after this many epochs without val gain, 0 never",
                            range=NON_NEGATIVE)
    min_val_images: int = setting(10, help="fewer val photos: keep the last epoch", range=NON_NEGATIVE)
    frozen_precision: str = setting("auto", help="frozen part in 'float32', 'bfloat16' or 'auto' "
                                    "(bfloat16 on CPUs built for it)", choices=PRECISIONS)
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
# A warm start (``meterlib.train.warm``) from a model the default recipe trained: the head refit on
# every photo, then a short fine-tune at a lower rate, so the old types keep what they learnt; two
# views (one clean) cut the frozen part's pass, the bulk of a run's time, to a third.
PRESETS["warm"] = dataclasses.replace(PRESETS["default"], views=2, epochs_head=5, epochs_finetune=3,
                                      lr_finetune=2e-4, patience=0)


def config(preset: str = "default", *, augment: Mapping[str, float | None] | None = None,
           **overrides) -> TrainConfig:
    """A preset with the parameters given replaced; ``None`` keeps the preset's, unknown names are an error."""
    if preset not in PRESETS:
        raise SettingsError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    base = PRESETS[preset]
    chosen = dataclasses.replace(base, **_given(overrides, TrainConfig),
                                 augment=dataclasses.replace(base.augment, **_given(augment or {}, Augment)))
    _check(chosen)
    return chosen


def _given(values: Mapping, kind) -> dict:
    """The non-None ``values``, after checking each name is a field of the dataclass ``kind``."""
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(kind)})
    if unknown:
        what = "augmentation" if kind is Augment else "training"
        raise SettingsError(f"unknown {what} parameter(s): {', '.join(unknown)}")
    return {name: value for name, value in values.items() if value is not None}


def _check(chosen: TrainConfig) -> None:
    """Refuse a recipe the loop cannot run: each setting by its field's rule (the door's), then the epochs together."""
    for values in (chosen, chosen.augment):
        for name, rule in rules(type(values)).items():
            enforce(name, getattr(values, name), rule)
    if chosen.epochs_head + chosen.epochs_finetune < 1:
        raise SettingsError(f"epochs_head ({chosen.epochs_head}) and epochs_finetune ({chosen.epochs_finetune}) "
                            "must train at least one epoch together")


def class_weights(labels: np.ndarray, n_classes: int, *, power: float):
    """Loss weight per class ~ (1 / count) ** power, scaled so the average photo weighs 1."""
    import torch

    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    raw = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0) ** power
    raw *= len(labels) / max((raw * counts).sum(), 1e-12)
    return torch.tensor(raw, dtype=torch.float32)
