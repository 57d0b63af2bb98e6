"""The phase loop: one loop for both phases of the recipe, and the tracker of the best epoch.

Phase 1 trains only the head, on pooled features of the frozen backbone; phase 2 fine-tunes the
last block and the head on the cached frozen-part activations (see ``cache``). Each phase starts
from the best state so far, as a fresh run of the recipe would.
"""

from __future__ import annotations

import copy
import functools
import time
from dataclasses import dataclass
from typing import Callable

from meterlib.model import network
from meterlib.train import recipe
from meterlib.train.recipe import TrainConfig


class Tracker:
    """History rows and the best state so far (by val accuracy, then val loss; or the last epoch)."""

    def __init__(self, *, use_val: bool):
        self.use_val, self.rows, self.best_key = use_val, [], None
        self.best_state, self.best_epoch, self.stale = None, 0, 0

    def start_phase(self, model) -> None:
        """Put the best state so far back into ``model``; early stopping counts afresh."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
        self.stale = 0

    def record(self, model, row: dict) -> None:
        """Add an epoch's history row; keep the model's state when the epoch is the best so far."""
        self.rows.append(row)
        key = (row["val_acc"], -row["val_loss"]) if self.use_val else (row["epoch"],)
        if self.best_key is None or key > self.best_key:
            self.best_key, self.best_epoch, self.stale = key, row["epoch"], 0
            # Keeping the last epoch, the model's own tensors are that state: no copy needed.
            self.best_state = copy.deepcopy(model.state_dict()) if self.use_val else model.state_dict()
        else:
            self.stale += 1

    def should_stop(self, patience: int) -> bool:
        """Whether ``patience`` epochs in a row (this phase) brought no better val score."""
        return self.use_val and patience > 0 and self.stale >= patience


@dataclass
class Fit:
    """What both phases of one run share."""

    model: object
    cfg: TrainConfig
    train_views: list  # cached frozen-part activations, one tensor per view (float32 or bfloat16)
    train_labels: object
    val_acts: object  # None without val photos
    val_labels: object
    loss_fn: object
    device: object
    tracker: Tracker
    seed: int
    # Pooled features of ``train_views`` through the pretrained last block: phase 1 computes them
    # once; cross-fitting folds reuse their rows (the last block is the same pretrained one there).
    pooled: list | None = None


def loss_function(labels, n_classes: int, *, cfg: TrainConfig, device):
    """The recipe's training loss: class-weighted (from ``labels``' counts), label-smoothed cross-entropy."""
    import torch

    weights = recipe.class_weights(labels.numpy(), n_classes, power=cfg.class_weight_power)
    return torch.nn.CrossEntropyLoss(weight=weights.to(device), label_smoothing=cfg.label_smoothing)


@dataclass
class Phase:
    """One phase: what trains at which rate, on which inputs, in which modes."""

    number: int
    title: str
    epochs: int
    lr: float
    forward: object  # the trained part; its inputs are ``inputs``
    inputs: list  # one tensor per view
    val_inputs: object
    eval_batch_size: int  # per phase as it always was: another batch size may round val scores differently
    train_mode: Callable[[], None]


def head_phase(fit: Fit) -> Phase:
    """Phase 1: only the head trains, on pooled features (everything in eval mode)."""
    model, device = fit.model, fit.device
    model.eval()
    features_of = network.pooled(model)
    if fit.pooled is None:
        fit.pooled = [network.batched(features_of, acts, batch_size=128, device=device)
                      for acts in fit.train_views]
    val_features = (None if fit.val_acts is None
                    else network.batched(features_of, fit.val_acts, batch_size=128, device=device))
    return Phase(number=1, title="phase 1 (head)", epochs=fit.cfg.epochs_head, lr=fit.cfg.lr_head,
                 forward=model.head, inputs=fit.pooled, val_inputs=val_features, eval_batch_size=256,
                 train_mode=model.eval)


def finetune_phase(fit: Fit) -> Phase:
    """Phase 2: the last block and head train on the cached frozen-part activations."""
    model = fit.model
    return Phase(number=2, title="phase 2 (fine-tune)", epochs=fit.cfg.epochs_finetune,
                 lr=fit.cfg.lr_finetune, forward=network.tail(model), inputs=fit.train_views, val_inputs=fit.val_acts,
                 eval_batch_size=128,
                 train_mode=functools.partial(set_finetune_mode, model, bn=fit.cfg.finetune_bn))


def run_recipe(fit: Fit, *, progress: bool = False, stop_after: tuple[int | None, int | None] = (None, None),
               after_phase: Callable[[str], None] | None = None) -> tuple[dict, tuple[int, int]]:
    """Phase 1, then phase 2; (seconds per phase, epochs of each phase on the way to the kept state).

    ``stop_after`` cuts a phase short (None: all its epochs); its learning-rate schedule still spans
    the configured epochs, so a run that replays another run's kept epochs follows the same path.
    ``after_phase`` is called with "phase1" and "phase2" as each ends (run or skipped).
    """
    seconds, counts = {}, []
    for name, build, epochs, limit in (("phase1", head_phase, fit.cfg.epochs_head, stop_after[0]),
                                       ("phase2", finetune_phase, fit.cfg.epochs_finetune, stop_after[1])):
        tick = time.perf_counter()
        if epochs > 0 and limit != 0:
            run_phase(fit, build, progress=progress, stop_after=limit)
        seconds[name] = time.perf_counter() - tick
        if after_phase is not None:
            after_phase(name)
        counts.append((len(fit.tracker.rows), fit.tracker.best_epoch))
    (phase1_rows, phase1_best), (_, best) = counts
    # Phase 2 started from phase 1's best state; it either improved on it or left it kept.
    return seconds, ((phase1_best, best - phase1_rows) if best > phase1_rows else (best, 0))


def run_phase(fit: Fit, build: Callable[[Fit], Phase], *, progress: bool = False,
              stop_after: int | None = None) -> None:
    """Run the phase ``build`` describes, from the best state so far; one history row per epoch.

    ``stop_after`` ends the phase after that many epochs; the learning-rate schedule is unchanged.
    """
    import torch
    from tqdm.auto import trange

    cfg, tracker = fit.cfg, fit.tracker
    tracker.start_phase(fit.model)
    phase = build(fit)
    optimizer = torch.optim.Adam(phase.forward.parameters(), lr=phase.lr, weight_decay=cfg.weight_decay)
    scheduler = _scheduler(optimizer, cfg, phase.epochs)
    # A generator per phase: one phase's batch order does not depend on how long the other ran.
    generator = torch.Generator().manual_seed(fit.seed + phase.number - 1)
    epochs = phase.epochs if stop_after is None else min(stop_after, phase.epochs)
    for epoch in trange(epochs, desc=phase.title, disable=not progress, leave=False):
        lr = optimizer.param_groups[0]["lr"]
        phase.train_mode()
        train_loss, train_acc = _epoch(phase.forward, optimizer, phase.inputs[epoch % len(phase.inputs)],
                                       fit.train_labels, fit.loss_fn, batch_size=cfg.batch_size,
                                       generator=generator, device=fit.device)
        fit.model.eval()
        val_acc, val_loss = _evaluate(phase.forward, phase.val_inputs, fit.val_labels,
                                      batch_size=phase.eval_batch_size, device=fit.device)
        if scheduler:
            scheduler.step()
        tracker.record(fit.model, dict(epoch=len(tracker.rows) + 1, phase=phase.number, train_loss=train_loss,
                                       train_acc=train_acc, val_loss=val_loss, val_acc=val_acc, lr=lr))
        if tracker.should_stop(cfg.patience):
            break


def _scheduler(optimizer, cfg: TrainConfig, epochs: int):
    import torch

    if cfg.lr_schedule == "cosine" and epochs > 1:
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    return None


def _evaluate(forward, acts, labels, *, batch_size: int, device) -> tuple[float, float]:
    import torch

    if acts is None or len(acts) == 0:
        return float("nan"), float("nan")
    logits = network.batched(forward, acts, batch_size=batch_size, device=device)
    # Unweighted, unsmoothed loss: comparable across presets.
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    return float((logits.argmax(1) == labels).float().mean()), loss


def _epoch(forward, optimizer, inputs, labels, loss_fn, *, batch_size: int, generator, device):
    import torch

    order = torch.randperm(len(inputs), generator=generator)
    total_loss, correct = 0.0, 0
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        x = network.to_device(inputs[idx], device)
        y = labels[idx].to(device)
        logits = forward(x)
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(idx)
        correct += int((logits.argmax(1) == y).sum())
    return total_loss / len(order), correct / len(order)


def set_finetune_mode(model, *, bn: str) -> None:
    """Phase-2 modes: frozen part in eval mode; last block trains, its batch norms per ``bn``."""
    import torch

    model.eval()
    model.last_block.train()
    model.head.train()
    if bn == "frozen":
        for module in model.last_block.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()
