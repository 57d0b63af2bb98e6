"""Two-phase transfer learning (new head on a frozen backbone, then the last block fine-tuned), fast on CPU.

The backbone's frozen part (``model.stem``) never changes and runs in eval mode, so its output
for a given input never changes either. Each augmented view of the training set therefore goes
through it once; every epoch of both phases then only runs ``last_block`` (phase 2) or just the
head (phase 1, on pooled features) on those cached activations. ``views`` sets how many
different augmented versions of each photo are cached; epoch ``e`` uses view ``e % views``.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from meterlib.data import splitting
from meterlib.model import backbones, folding, inference, transforms
from meterlib.run import seeding

SPLIT_NAMES = ("train", "val", "test")
PRECISIONS = ("auto", "float32", "bfloat16")


@dataclass(frozen=True)
class TrainConfig:
    """Every number of the recipe (see ``PRESETS``); stored in the checkpoint."""

    image_size: int = 224
    epochs_head: int = 6
    epochs_finetune: int = 8
    lr_head: float = 1e-3
    lr_finetune: float = 1e-4
    weight_decay: float = 0.0
    batch_size: int = 32
    views: int = 3  # augmented versions of each training photo pushed through the frozen part
    clean_view: bool = False  # view 0 is the un-augmented photo (test photos are not augmented)
    class_weight_power: float = 0.5  # loss weight of a class ~ (1 / its photo count) ** power
    label_smoothing: float = 0.0
    finetune_bn: str = "train"  # 'train': last block's batch norms use batch statistics; 'frozen'
    lr_schedule: str = "constant"  # or 'cosine' (per phase)
    patience: int = 0  # stop a phase after this many epochs without a better val score; 0: never
    min_val_images: int = 10  # fewer val photos than this: keep the last epoch instead of the best
    frozen_precision: str = "auto"  # frozen part's arithmetic: 'float32', 'bfloat16', or 'auto' (below)
    augment: dict = field(default_factory=dict)  # strengths for transforms.augmentation

    def as_dict(self) -> dict:
        """Plain dict of the parameters (checkpoint and report friendly)."""
        return dataclasses.asdict(self)


SEED_AUGMENT = dict(crop_scale_min=0.7, rotation_deg=10.0, perspective=0.2, perspective_p=0.5,
                    brightness=0.3, contrast=0.3, saturation=0.3, hue=0.02, blur_p=0.3,
                    blur_sigma_max=1.5)
PRESETS = {
    # The original system's recipe. It draws new augmentations every epoch; seven cached views
    # (each seen twice in the 14 epochs) keep most of that variety at half the frozen-part cost.
    "seed": TrainConfig(augment=SEED_AUGMENT, views=7),
    # What the seed's validation curves asked for: phase 2 was still improving when it stopped.
    "default": TrainConfig(augment=SEED_AUGMENT, views=6, clean_view=True, epochs_head=10,
                           epochs_finetune=15, lr_finetune=5e-4, weight_decay=1e-4,
                           label_smoothing=0.1, finetune_bn="frozen", lr_schedule="cosine", patience=5),
}


def config(preset: str = "default", **overrides) -> TrainConfig:
    """A preset with some parameters replaced; unknown names are an error."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    base = PRESETS[preset]
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown training parameter(s): {', '.join(unknown)}")
    if "augment" in overrides:
        overrides["augment"] = {**base.augment, **overrides["augment"]}
    chosen = dataclasses.replace(base, **overrides)
    if chosen.finetune_bn not in ("train", "frozen") or chosen.lr_schedule not in ("constant", "cosine"):
        raise ValueError("finetune_bn must be 'train' or 'frozen', lr_schedule 'constant' or 'cosine'")
    if chosen.frozen_precision not in PRECISIONS:
        raise ValueError(f"frozen_precision must be one of {', '.join(PRECISIONS)}")
    if chosen.views < 1 or chosen.batch_size < 1 or chosen.image_size < 32:
        raise ValueError("views and batch_size must be >= 1 and image_size >= 32")
    if min(chosen.epochs_head, chosen.epochs_finetune) < 0 or chosen.epochs_head + chosen.epochs_finetune < 1:
        raise ValueError(f"epochs_head ({chosen.epochs_head}) and epochs_finetune ({chosen.epochs_finetune}) "
                         "must be >= 0 and train at least one epoch together")
    return chosen


def training_table(manifest: pd.DataFrame, dataset_dir) -> pd.DataFrame:
    """Rows of splits.csv that take part (train/val/test) with an absolute ``file`` column."""
    from pathlib import Path

    missing = {"path", "class", "split"} - set(manifest.columns)
    if missing:
        raise ValueError(f"splits manifest lacks column(s) {', '.join(sorted(missing))}")
    used = manifest[manifest["split"].isin(SPLIT_NAMES)].copy()
    used["file"] = [str(Path(dataset_dir) / rel) for rel in used["path"]]
    splitting.require_trainable_classes(used)
    strays = sorted(set(used["class"]) - set(used.loc[used["split"] == "train", "class"]))
    if strays:
        raise ValueError(f"classes without training photos: {', '.join(strays[:5])}")
    return used.reset_index(drop=True)


def class_weights(labels: np.ndarray, n_classes: int, *, power: float):
    """Loss weight per class ~ (1 / count) ** power, scaled so the average photo weighs 1."""
    import torch

    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    raw = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0) ** power
    raw *= len(labels) / max((raw * counts).sum(), 1e-12)
    return torch.tensor(raw, dtype=torch.float32)


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


def _to_device(x, device):
    """Move a batch to ``device``; image-like (4-D) batches go channels-last, which conv kernels prefer."""
    import torch

    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def _batched(model_part, tensors, *, batch_size: int, device):
    import torch

    # no_grad rather than inference_mode: cached outputs later feed layers that autograd tracks.
    with torch.no_grad():
        return torch.cat([model_part(_to_device(tensors[start:start + batch_size], device)).cpu()
                          for start in range(0, len(tensors), batch_size)])


def uses_bfloat16(precision: str, device) -> bool:
    """Whether the frozen part runs in bfloat16: asked for, or 'auto' on a CPU with native bfloat16.

    Such CPUs (AVX512-BF16, AMX) run the frozen part about twice as fast in bfloat16; the cached
    activations differ from float32 by rounding only (about 3 significant digits).
    """
    import torch

    if precision != "auto":
        return precision == "bfloat16"
    if torch.device(device).type != "cpu":
        return False
    try:  # torch has no public query for this; an older or newer build without it keeps float32
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def stem_activations(stem, images: Sequence, transform, *, batch_size: int, device, workers: int = 0,
                     progress: bool = False, desc: str = "frozen part", precision: str = "float32"):
    """Output of the frozen part (float32) for each PIL image after ``transform`` (one random draw per image)."""
    import torch
    from tqdm.auto import tqdm

    device = torch.device(device)
    loader = torch.utils.data.DataLoader(_Transformed(images, transform), batch_size=batch_size,
                                         num_workers=workers, shuffle=False)
    folded = folding.fold_batch_norms(stem)
    chunks = []
    low = uses_bfloat16(precision, device)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=low):
        for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
            chunks.append(folded(_to_device(batch, device)).float().cpu())
    return torch.cat(chunks)


class _Transformed:
    """Indexable view of images through a transform (a map-style dataset for DataLoader)."""

    def __init__(self, images, transform):
        self.images, self.transform = images, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.transform(self.images[index])


def train(table: pd.DataFrame, *, cfg: TrainConfig, backbone: str = "auto", seed: int = 0,
          deterministic: bool = False, device=None, workers: int = 0, progress: bool = True,
          images: dict | None = None, weights_path=None) -> TrainResult:
    """Run the two-phase recipe on ``training_table`` rows; keep the best epoch on val."""
    import torch

    started = time.perf_counter()
    seeding.seed_everything(seed, deterministic=deterministic)
    device = torch.device(device) if device is not None else inference.default_device()
    class_names = sorted(table.loc[table["split"] == "train", "class"].unique())
    index = {name: i for i, name in enumerate(class_names)}
    model, backbone_name, reason = backbones.create(backbone, len(class_names), weights_path=weights_path)
    mean, std = backbones.normalisation(backbone_name)
    model = model.to(device).to(memory_format=torch.channels_last)
    timings = {}

    tick = time.perf_counter()
    images = images if images is not None else decode_splits(table, image_size=cfg.image_size,
                                                            progress=progress)
    timings["decode"] = time.perf_counter() - tick
    labels = {split: torch.tensor([index[c] for c in table.loc[table["split"] == split, "class"]],
                                  dtype=torch.long) for split in ("train", "val")}

    tick = time.perf_counter()
    train_views = augmented_activations(model.stem, images["train"], cfg=cfg, mean=mean, std=std,
                                        device=device, workers=workers, progress=progress)
    val_acts = None
    if len(images.get("val", [])):
        val_acts = stem_activations(model.stem, images["val"],
                                    transforms.eval_transform(image_size=cfg.image_size, mean=mean, std=std),
                                    batch_size=64, device=device, workers=workers, progress=progress,
                                    desc="val", precision=cfg.frozen_precision)
    timings["frozen_part"] = time.perf_counter() - tick

    use_val = val_acts is not None and len(val_acts) >= cfg.min_val_images
    selection = ("best val accuracy (ties: lower val loss)" if use_val else
                 f"last epoch (only {0 if val_acts is None else len(val_acts)} val photos)")
    weights = class_weights(labels["train"].numpy(), len(class_names), power=cfg.class_weight_power)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights.to(device), label_smoothing=cfg.label_smoothing)
    tracker = _Tracker(use_val=use_val)

    tick = time.perf_counter()
    run_phase1(model, train_views, labels["train"], val_acts, labels["val"], cfg=cfg, loss_fn=loss_fn,
               device=device, tracker=tracker, seed=seed, progress=progress)
    timings["phase1"] = time.perf_counter() - tick
    tick = time.perf_counter()
    run_phase2(model, train_views, labels["train"], val_acts, labels["val"], cfg=cfg, loss_fn=loss_fn,
               device=device, tracker=tracker, seed=seed, progress=progress)
    timings["phase2"] = time.perf_counter() - tick

    model.load_state_dict(tracker.best_state)
    model.eval()
    return TrainResult(model=model, backbone=backbone_name, backbone_reason=reason,
                       class_names=class_names, mean=tuple(mean), std=tuple(std), config=cfg,
                       history=pd.DataFrame(tracker.rows), best_epoch=tracker.best_epoch,
                       selection=selection, seconds=time.perf_counter() - started, timings=timings)


def decode_splits(table: pd.DataFrame, *, image_size: int, progress: bool = False) -> dict:
    """Decoded, squash-resized PIL images per split (decode every JPEG once)."""
    return {split: inference.load_resized(list(table.loc[table["split"] == split, "file"]),
                                          image_size=image_size, progress=progress)
            for split in SPLIT_NAMES}


def augmented_activations(stem, images: Sequence, *, cfg: TrainConfig, mean, std, device,
                          workers: int = 0, progress: bool = False) -> list:
    """The frozen part's output for ``cfg.views`` views of the training images."""
    augment = transforms.train_transform(image_size=cfg.image_size, mean=mean, std=std, **cfg.augment)
    clean = transforms.eval_transform(image_size=cfg.image_size, mean=mean, std=std)
    return [stem_activations(stem, images, clean if cfg.clean_view and view == 0 else augment,
                             batch_size=64, device=device, workers=workers, progress=progress,
                             desc=f"view {view + 1}/{cfg.views}", precision=cfg.frozen_precision)
            for view in range(cfg.views)]


class _Tracker:
    """History rows and the best state so far (by val accuracy, then val loss; or the last epoch)."""

    def __init__(self, *, use_val: bool):
        self.use_val, self.rows, self.best_key = use_val, [], None
        self.best_state, self.best_epoch, self.stale = None, 0, 0

    def record(self, model, row: dict) -> None:
        self.rows.append(row)
        key = (row["val_acc"], -row["val_loss"]) if self.use_val else (row["epoch"],)
        if self.best_key is None or key > self.best_key:
            self.best_key, self.best_epoch, self.stale = key, row["epoch"], 0
            self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.stale += 1

    def should_stop(self, patience: int) -> bool:
        return self.use_val and patience > 0 and self.stale >= patience


def _scheduler(optimizer, cfg: TrainConfig, epochs: int):
    import torch

    if cfg.lr_schedule == "cosine" and epochs > 1:
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    return None


def _evaluate(forward, acts, labels, *, batch_size: int, device) -> tuple[float, float]:
    import torch

    if acts is None or len(acts) == 0:
        return float("nan"), float("nan")
    logits = _batched(forward, acts, batch_size=batch_size, device=device)
    # Unweighted, unsmoothed loss: comparable across presets.
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    return float((logits.argmax(1) == labels).float().mean()), loss


def _epoch(forward, optimizer, inputs, labels, loss_fn, *, batch_size: int, generator, device):
    import torch

    order = torch.randperm(len(inputs), generator=generator)
    total_loss, correct = 0.0, 0
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        x = _to_device(inputs[idx], device)
        y = labels[idx].to(device)
        logits = forward(x)
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(idx)
        correct += int((logits.argmax(1) == y).sum())
    return total_loss / len(order), correct / len(order)


def _end_epoch(model, tracker, scheduler, cfg, *, phase: int, **row) -> bool:
    """Step the schedule, record the epoch; True when early stopping says the phase is over."""
    if scheduler:
        scheduler.step()
    tracker.record(model, dict(epoch=len(tracker.rows) + 1, phase=phase, **row))
    return tracker.should_stop(cfg.patience)


def run_phase1(model, train_views, train_labels, val_acts, val_labels, *, cfg, loss_fn, device,
               tracker, seed: int, progress: bool = False) -> None:
    """Phase 1: train only the head, on pooled features of the frozen backbone (all in eval mode)."""
    import torch
    from tqdm.auto import trange

    model.eval()
    features_of = torch.nn.Sequential(model.last_block, model.pool)
    features = [_batched(features_of, acts, batch_size=128, device=device) for acts in train_views]
    val_features = None if val_acts is None else _batched(features_of, val_acts, batch_size=128, device=device)
    optimizer = torch.optim.Adam(model.head.parameters(), lr=cfg.lr_head, weight_decay=cfg.weight_decay)
    scheduler = _scheduler(optimizer, cfg, cfg.epochs_head)
    generator = torch.Generator().manual_seed(seed)
    for epoch in trange(cfg.epochs_head, desc="phase 1 (head)", disable=not progress, leave=False):
        lr = optimizer.param_groups[0]["lr"]
        train_loss, train_acc = _epoch(model.head, optimizer, features[epoch % len(features)],
                                       train_labels, loss_fn, batch_size=cfg.batch_size,
                                       generator=generator, device=device)
        val_acc, val_loss = _evaluate(model.head, val_features, val_labels, batch_size=256,
                                      device=device)
        if _end_epoch(model, tracker, scheduler, cfg, phase=1, train_loss=train_loss,
                      train_acc=train_acc, val_loss=val_loss, val_acc=val_acc, lr=lr):
            break
    # Phase 2 starts from the best head so far, as a fresh run of the recipe would.
    if tracker.best_state is not None:  # epochs_head=0 skips phase 1
        model.load_state_dict(tracker.best_state)
    tracker.stale = 0


def run_phase2(model, train_views, train_labels, val_acts, val_labels, *, cfg, loss_fn, device,
               tracker, seed: int, progress: bool = False) -> None:
    """Phase 2: fine-tune the last block and head on the cached frozen-part activations."""
    import torch
    from tqdm.auto import trange

    if cfg.epochs_finetune <= 0:
        return
    tail = torch.nn.Sequential(model.last_block, model.pool, model.head)
    optimizer = torch.optim.Adam(tail.parameters(), lr=cfg.lr_finetune, weight_decay=cfg.weight_decay)
    scheduler = _scheduler(optimizer, cfg, cfg.epochs_finetune)
    generator = torch.Generator().manual_seed(seed + 1)

    for epoch in trange(cfg.epochs_finetune, desc="phase 2 (fine-tune)", disable=not progress, leave=False):
        lr = optimizer.param_groups[0]["lr"]
        set_finetune_mode(model, bn=cfg.finetune_bn)
        train_loss, train_acc = _epoch(tail, optimizer, train_views[epoch % len(train_views)],
                                       train_labels, loss_fn, batch_size=cfg.batch_size,
                                       generator=generator, device=device)
        model.eval()
        val_acc, val_loss = _evaluate(tail, val_acts, val_labels, batch_size=128, device=device)
        if _end_epoch(model, tracker, scheduler, cfg, phase=2, train_loss=train_loss,
                      train_acc=train_acc, val_loss=val_loss, val_acc=val_acc, lr=lr):
            break


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


def accuracy(model, images: Sequence, class_names: Sequence[str], true_classes: Sequence[str], *,
             image_size: int, mean, std, device=None) -> float:
    """Top-1 accuracy of a model on decoded images with the eval preprocessing."""
    if not len(images):
        return float("nan")
    logits = inference.logits_for_images(model, images, image_size=image_size, mean=mean, std=std,
                                         device=device)
    predicted = np.asarray(class_names)[logits.argmax(1).numpy()]
    return float(np.mean(predicted == np.asarray(true_classes)))
