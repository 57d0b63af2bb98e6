"""``train``: the two-phase recipe from a training table to the model of the best epoch."""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from meterlib.model import backbones, inference
from meterlib.run import seeding
from meterlib.train import crossfit, phases, warm
from meterlib.train.prepare import RunOptions, prepare
from meterlib.train.recipe import TrainConfig

# A warm start's steps, each a place to stop: new rows imprinted, the head refit on every photo
# (phase 1), the short fine-tune (phase 2). Phase epochs of 0 stop a run after the step before.
WARM_STEPS = ("imprint", "head", "finetune")


@dataclass
class TrainResult:
    """What ``train`` produced: the model at its best epoch and how it got there."""

    model: object
    backbone: str
    backbone_choice: str  # the backbone asked for (``backbone`` is the one used)
    backbone_reason: str
    class_names: list[str]
    mean: tuple
    std: tuple
    config: TrainConfig
    options: RunOptions
    history: pd.DataFrame
    best_epoch: int
    selection: str  # how the kept epoch was chosen
    seconds: float
    timings: dict = field(default_factory=dict)
    out_of_fold: crossfit.OutOfFold | None = None  # with ``folds``: predictions of the training photos
    # The pretrained frozen part's output for un-augmented photos, per split: val, and train when the
    # recipe caches a clean view (the linear probe reuses float32 ones), in the precision it ran in.
    clean_activations: dict = field(default_factory=dict)
    lineage: dict | None = None  # with ``warm_start``: the parent checkpoint, the types added
    # With ``warm_start``: the kept state after each step a user can stop after (``WARM_STEPS``).
    warm_steps: dict = field(default_factory=dict)

    def warm_step_seconds(self) -> dict:
        """{step: seconds from the start of the run to the end of that warm step}; {} for a cold run."""
        if not self.warm_steps:
            return {}
        imprinted = sum(self.timings[name] for name in ("decode", "frozen_part", "imprint"))
        return dict(zip(WARM_STEPS, (imprinted, imprinted + self.timings["phase1"], self.seconds)))


def train(table: pd.DataFrame, *, cfg: TrainConfig, backbone: str = backbones.DEFAULT, weights_path=None,
          images: dict | None = None, progress: bool = True, options: RunOptions = RunOptions(),
          folds: int = 0, warm_start: str | os.PathLike | None = None) -> TrainResult:
    """Run the two-phase recipe on ``training_table`` rows; keep the best epoch on val.

    ``folds`` >= 2 also cross-fits: ``out_of_fold`` then holds a prediction of every training photo
    from a model that did not train on it (a head trained on the other folds; see ``meterlib.train.crossfit``).
    ``warm_start``: a checkpoint to start from instead of the pretrained backbone (``meterlib.train.warm``);
    such a run makes no out-of-fold predictions, because its parent trained on the old photos of every
    fold, so 03 calibrates it on val alone.
    """
    parent = warm.load_parent(warm_start) if warm_start else None
    # Deterministic kernels only while training: torch's process-wide settings come back after.
    with seeding.deterministic_kernels(options.deterministic):
        seeding.seed_everything(options.seed)
        started = time.perf_counter()
        run = prepare(table, cfg=cfg, backbone=backbone, weights_path=weights_path, images=images,
                      progress=progress, options=options, parent=parent)
        steps = _StepStates(run.fit) if parent is not None else None
        seconds, kept = phases.run_recipe(run.fit, progress=progress,
                                          after_phase=None if steps is None else steps.keep)
        run.timings.update(seconds)
        model = run.fit.model
        if run.fit.tracker.best_state is not None:  # None: no epoch ran, the starting state is the result
            model.load_state_dict(run.fit.tracker.best_state)
        model.eval()
        oof = None
        if folds and parent is None:
            # The folds replay phase 1 only: a small part of phase 2's time, where replaying phase 2 too
            # costs several times phase 2's, and the temperature, UNKNOWN threshold and APS quantile
            # fitted on either did as well on test (benchmarks/bench_calibration.py; see crossfit).
            oof = crossfit.cross_fit(run, epochs=(kept[0], 0), folds=folds, progress=progress, workers=options.workers)
            run.timings["crossfit"] = oof.seconds
    return TrainResult(model=model, backbone=run.backbone, backbone_choice=backbone,
                       backbone_reason=run.backbone_reason, class_names=run.class_names, mean=run.mean,
                       std=run.std, config=cfg, options=options,
                       history=pd.DataFrame(run.fit.tracker.rows), best_epoch=run.fit.tracker.best_epoch,
                       selection=run.selection, seconds=time.perf_counter() - started, timings=run.timings,
                       out_of_fold=oof, clean_activations=_clean_activations(run.fit), lineage=run.lineage,
                       warm_steps={} if steps is None else steps.states)


class _StepStates:
    """Copies of the kept state as a warm run passes each of ``WARM_STEPS`` (the first as it starts)."""

    def __init__(self, fit: phases.Fit):
        self.fit = fit
        self.states = {WARM_STEPS[0]: copy.deepcopy(fit.model.state_dict())}

    def keep(self, phase: str) -> None:
        best = self.fit.tracker.best_state  # None until an epoch ran: the step changed nothing
        self.states[WARM_STEPS[len(self.states)]] = (list(self.states.values())[-1] if best is None
                                                     else copy.deepcopy(best))


def _clean_activations(fit: phases.Fit) -> dict:
    cached = {"train": fit.train_views[0] if fit.cfg.clean_view else None, "val": fit.val_acts}
    return {split: acts for split, acts in cached.items() if acts is not None}


def accuracy(model, images: Sequence, class_names: Sequence[str], true_classes: Sequence[str], *,
             image_size: int, mean, std, device=None) -> float:
    """Top-1 accuracy of a model on decoded images with the eval preprocessing."""
    if not len(images):
        return float("nan")
    logits = inference.logits_for_images(model, images, image_size=image_size, mean=mean, std=std,
                                         device=device)
    predicted = np.asarray(class_names)[logits.argmax(1).numpy()]
    return float(np.mean(predicted == np.asarray(true_classes)))
