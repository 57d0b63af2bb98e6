"""Training speed and accuracy, side by side in one run: the naive loop vs meterlib's presets vs a probe.

    python benchmarks/bench_training.py                       # demo data at the original scale, 224 px
    python benchmarks/bench_training.py --dataset jomjol      # ../shared/datasets/jomjol_digit11
    python benchmarks/bench_training.py --methods original default --image-size 96
    python benchmarks/bench_training.py --methods naive original --seed 0 1 2 3 4   # paired, same split

- naive: the original recipe as plain PyTorch would write it: every epoch decodes every photo and
  runs the whole backbone (frozen part in eval mode, as "frozen" means), then evaluates val.
  Epochs are chosen as meterlib chooses them: best val accuracy, ties by lower val loss, and
  phase 2 starts from phase 1's best head.
- original: meterlib's ``original`` preset (same recipe; cached decoding and frozen-part activations).
- default: meterlib's ``default`` preset.
- probe: logistic regression on the pretrained backbone's features (no augmentation).

Targets: original >= 4x faster than naive with test accuracy within 1 point; default beats naive and
probe; default training <= 10 minutes on 2 CPU cores. One run's accuracy moves by a few points
with the training seed, so several seeds on the same split give the paired difference to naive
with its 95 % interval.
"""

from __future__ import annotations

import argparse
import atexit
import copy
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from meterlib import train
from meterlib.data import audit, photos, splits
from meterlib.model import backbones, inference, transforms
from meterlib.run import paths, runner
from meterlib.train import probe

METHODS = ("naive", "original", "default", "probe")


def dataset_table(name: str, *, data_dir: str, seed: int):
    """The training table of a dataset, generating the demo data and splitting it as 01 does."""
    if name == "jomjol":
        source = paths.project_root().parent / "shared" / "datasets" / "jomjol_digit11"
        if not source.is_dir():
            raise SystemExit(f"{source} not found")
        # 01 expects raw/<class>/; a scratch copy keeps the shared folder untouched.
        scratch = tempfile.mkdtemp(prefix="bench-jomjol-")
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        dataset_dir = Path(scratch) / "jomjol_digit11"
        shutil.copytree(source, dataset_dir / "raw", ignore=shutil.ignore_patterns("*.csv", "*.txt"))
    else:
        dataset_dir = paths.resolve(dataset=name, data_dir=data_dir).dataset_dir
        if name == "demo" and not dataset_dir.exists():
            from meterlib import synth

            synth.ensure_dataset(dataset_dir, synth.DatasetSpec(seed=seed))
    splits_csv = dataset_dir / "splits.csv"
    if splits_csv.is_file():
        manifest = splits.read_manifest(splits_csv)
    else:
        # As the main job splits it: the demo profile's unseen classes stay out of training.
        holdout = runner.load_profile("demo")["holdout_classes"].split(",") if name == "demo" else ()
        manifest = splits.build_manifest(audit.audit_dataset(dataset_dir), seed=seed,
                                         holdout_classes=holdout)
    return train.training_table(manifest, dataset_dir)


class _PhotoFolder(torch.utils.data.Dataset):
    """Decode from disk on every access, as a plain ImageFolder-style dataset does."""

    def __init__(self, files, labels, transform):
        self.files, self.labels, self.transform = list(files), list(labels), transform

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        return self.transform(photos.load_rgb(self.files[i])), self.labels[i]


def naive(table, *, backbone: str, cfg: train.TrainConfig, seed: int, workers: int) -> float:
    """The original recipe in plain PyTorch; returns test accuracy of the best-val epoch."""
    torch.manual_seed(seed)
    device = inference.default_device()
    class_names = sorted(table.loc[table["split"] == "train", "class"].unique())
    index = {c: i for i, c in enumerate(class_names)}
    model, name, _ = backbones.create(backbone, len(class_names))
    model = model.to(device).to(memory_format=torch.channels_last)
    mean, std = backbones.normalisation(name)

    def batch(x):
        return x.to(device).contiguous(memory_format=torch.channels_last)

    def loader(split, transform, shuffle):
        rows = table[table["split"] == split]
        data = _PhotoFolder(rows["file"], [index[c] for c in rows["class"]], transform)
        return torch.utils.data.DataLoader(data, batch_size=cfg.batch_size, shuffle=shuffle,
                                           num_workers=workers)

    train_loader = loader("train", transforms.train_transform(cfg.augment, image_size=cfg.image_size,
                                                              mean=mean, std=std), True)
    eval_tf = transforms.eval_transform(image_size=cfg.image_size, mean=mean, std=std)
    val_loader, test_loader = loader("val", eval_tf, False), loader("test", eval_tf, False)
    labels = torch.tensor([index[c] for c in table.loc[table["split"] == "train", "class"]])
    weights = train.class_weights(labels.numpy(), len(class_names), power=cfg.class_weight_power)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights.to(device))

    def scores(data):
        """(accuracy, minus unweighted cross-entropy): meterlib's epoch keys, higher is better in both."""
        model.eval()
        right = total = loss = 0.0
        with torch.no_grad():
            for x, y in data:
                logits = model(batch(x)).cpu()
                right += int((logits.argmax(1) == y).sum())
                loss += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
                total += len(y)
        return right / max(total, 1), -loss / max(total, 1)

    best, curve = ((-1.0, 0.0), None), []
    for trainable, lr, epochs in ((model.head, cfg.lr_head, cfg.epochs_head),
                                  (torch.nn.Sequential(model.last_block, model.head), cfg.lr_finetune,
                                   cfg.epochs_finetune)):
        for param in model.parameters():
            param.requires_grad_(False)
        for param in trainable.parameters():
            param.requires_grad_(True)
        optimizer = torch.optim.Adam(trainable.parameters(), lr=lr)
        for _ in range(epochs):
            model.eval()
            trainable.train()  # frozen layers stay in eval mode: frozen includes their statistics
            for x, y in train_loader:
                loss = loss_fn(model(batch(x)), y.to(device))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            score = scores(val_loader)
            curve.append(score[0])
            if score > best[0]:
                best = (score, copy.deepcopy(model.state_dict()))
        model.load_state_dict(best[1])  # phase 2 starts from the best head; the end keeps the best epoch
    print("    naive val accuracy per epoch: " + " ".join(f"{v:.2f}" for v in curve))
    return scores(test_loader)[0]


def meterlib_preset(table, *, preset: str, backbone: str, image_size: int, seed: int,
                    workers: int) -> tuple[float, str]:
    """Train a meterlib preset (decoding included); returns test accuracy and the backbone used."""
    cfg = train.config(preset, image_size=image_size)
    result = train.train(table, cfg=cfg, backbone=backbone, progress=False,
                         options=train.RunOptions(seed=seed, workers=workers))
    test = table[table["split"] == "test"]
    images = inference.load_resized(list(test["file"]), image_size=image_size)
    print(f"  {preset}: {result.backbone}, kept epoch {result.best_epoch}/{len(result.history)}, "
          + ", ".join(f"{k} {v:.0f}s" for k, v in result.timings.items()))
    print("    val accuracy per epoch: " + " ".join(f"{v:.2f}" for v in result.history["val_acc"]))
    return train.accuracy(result.model, images, result.class_names, list(test["class"]),
                             image_size=image_size, mean=result.mean, std=result.std), result.backbone


def linear_probe(table, *, backbone: str, image_size: int, seed: int) -> float:
    """Linear probe on decoded photos of every split."""
    name, _ = backbones.choose(backbone)
    images = train.decode_splits(table, image_size=image_size)
    classes = {s: list(table.loc[table["split"] == s, "class"]) for s in splits.SPLITS}
    return probe.run(name, images, classes, image_size=image_size, seed=seed).test_accuracy


def run_method(method: str, table, args, seed: int) -> tuple[float, float, float]:
    """Train one method with one training seed; returns (wall s, test accuracy, CPU s)."""
    start, cpu_start = time.perf_counter(), time.process_time()
    if method == "naive":
        cfg = train.config("original", image_size=args.image_size)
        acc = naive(table, backbone=args.backbone, cfg=cfg, seed=seed, workers=args.workers)
    elif method == "probe":
        acc = linear_probe(table, backbone=args.backbone, image_size=args.image_size, seed=seed)
    else:
        acc, _ = meterlib_preset(table, preset=method, backbone=args.backbone,
                                 image_size=args.image_size, seed=seed, workers=args.workers)
    return time.perf_counter() - start, acc, time.process_time() - cpu_start


def print_summary(results: dict) -> None:
    """Times, ratios and accuracies of one training seed."""
    # CPU seconds (all threads of this process) are the fairer clock on a shared machine.
    for method, (seconds, acc, cpu) in results.items():
        ratio = (f"   {results['naive'][0] / seconds:5.2f}x faster than naive (CPU time: "
                 f"{results['naive'][2] / cpu:5.2f}x)" if "naive" in results and method != "naive" else "")
        print(f"{method:>8}: {seconds:7.1f} s wall, {cpu:7.1f} s CPU   test accuracy {100 * acc:6.2f} %{ratio}")
    if {"naive", "original"} <= set(results):
        gap = 100 * (results["original"][1] - results["naive"][1])
        print(f"original - naive test accuracy: {gap:+.2f} points (target: within 1)")
    if "default" in results:
        others = {m: a for m, (_, a, _) in results.items() if m in ("naive", "probe", "original")}
        print("default beats " + ", ".join(f"{m}: {results['default'][1] >= a}" for m, a in others.items()))


def print_across_seeds(by_seed: dict[int, dict]) -> None:
    """Mean and spread per method, and each preset's paired difference to naive with a 95 % t-interval."""
    methods = list(next(iter(by_seed.values())))
    print(f"\nover training seeds {', '.join(map(str, by_seed))} (same split)")
    accs = {m: 100 * np.array([runs[m][1] for runs in by_seed.values()]) for m in methods}
    wall = {m: np.mean([runs[m][0] for runs in by_seed.values()]) for m in methods}
    for m in methods:
        ratio = f" ({wall['naive'] / wall[m]:.2f}x faster than naive)" if "naive" in wall and m != "naive" else ""
        print(f"{m:>8}: test accuracy mean {accs[m].mean():6.2f} %, sd {accs[m].std(ddof=1):5.2f}; "
              f"mean wall {wall[m]:7.1f} s{ratio}")
    for m in (m for m in methods if "naive" in methods and m != "naive"):
        gaps = accs[m] - accs["naive"]
        half = stats.t.ppf(0.975, len(gaps) - 1) * gaps.std(ddof=1) / np.sqrt(len(gaps))
        print(f"{m} - naive: mean {gaps.mean():+.2f} points, 95 % interval "
              f"[{gaps.mean() - half:+.2f}, {gaps.mean() + half:+.2f}]; per seed "
              + " ".join(f"{g:+.2f}" for g in gaps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="demo", help="demo, jomjol, or a dataset folder/name")
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--backbone", default=backbones.DEFAULT)
    parser.add_argument("--seed", type=int, nargs="+", default=[0],
                        help="training seeds; several give mean, spread and paired differences")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the demo data and of the split")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (naive, presets)")
    args = parser.parse_args()

    table = dataset_table(args.dataset, data_dir=args.data_dir, seed=args.split_seed)
    counts = table["split"].value_counts()
    name, reason = backbones.choose(args.backbone)
    print(f"dataset {args.dataset}: {table['class'].nunique()} classes, "
          + ", ".join(f"{s} {counts.get(s, 0)}" for s in splits.SPLITS)
          + f"; {args.image_size} px; backbone {name} ({reason}); device {inference.default_device()}; "
          f"torch threads {torch.get_num_threads()}; workers {args.workers}")
    by_seed = {}
    for seed in args.seed:
        results = by_seed[seed] = {}
        for method in args.methods:
            results[method] = run_method(method, table, args, seed)
            seconds, acc, cpu = results[method]
            print(f"{method:>8} (seed {seed}): {seconds:7.1f} s wall, {cpu:7.1f} s CPU   "
                  f"test accuracy {acc:.4f}", flush=True)
        print(f"\nsummary, training seed {seed}")
        print_summary(results)
    if len(by_seed) > 1:
        print_across_seeds(by_seed)


if __name__ == "__main__":
    main()
