"""Adding meter types to a trained model: warm (``meterlib run --warm-start``) against a full retrain, side by side.

    python benchmarks/bench_new_types.py                          # demo, 1 rotation, cut recipe
    python benchmarks/bench_new_types.py --rotations 5 --epochs-head 10 --epochs-finetune 15 --views 6

Each rotation draws ``--drop`` classes (seeded) among the demo's classes with at least the largest
``--photos`` training photos and some test photos. A parent model trains on the other classes
(``--views``, ``--epochs-head``, ``--epochs-finetune``: the default recipe, cut to fit 2 cores).
Then, for each count in ``--photos``, the dropped classes come back with that many training photos
each (their val and test photos as the split has them) and the model is trained:

- warm (what ``--warm-start`` runs), judged after each of its steps: the parent's weights with the new
  rows imprinted; the ``warm`` preset's phase 1 (the head refit); its short fine-tune;
- full retrain: the same cut recipe from the pretrained backbone (at the middle count only).

Printed per run: test accuracy on the old and on the new types, test ECE after a temperature
fitted on val, and the seconds it took. The parent's accuracy on the old types is "before".
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from meterlib import train
from meterlib.data import splits
from meterlib.evaluate import new_types
from meterlib.model import backbones, checkpoint
from meterlib.run import paths


def judge(result: train.TrainResult, table: pd.DataFrame, new: list[str], *, seconds: float) -> dict:
    """Old- and new-type test accuracy, and test ECE at the temperature val gives."""
    images = train.decode_splits(table, image_size=result.config.image_size)
    photos = {split: new_types.Judged(images[split], list(table.loc[table["split"] == split, "class"]))
              for split in ("val", "test")}
    return {**new_types.judge(result.model, result.class_names, **photos, new=new,
                              image_size=result.config.image_size, mean=result.mean, std=result.std),
            "seconds": seconds}


def with_new_photos(table: pd.DataFrame, new: list[str], count: int, *, seed: int) -> pd.DataFrame:
    """``table`` with the ``new`` classes' training photos cut to ``count`` each (drawn with ``seed``)."""
    is_new_train = table["class"].isin(new) & (table["split"] == "train")
    kept = (table[is_new_train].groupby("class", group_keys=False)
            .apply(lambda rows: rows.sample(n=count, random_state=seed)).index)
    return table[~is_new_train | table.index.isin(kept)].reset_index(drop=True)


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def rotation(table: pd.DataFrame, new: list[str], *, cfg: train.TrainConfig, counts: list[int], seed: int,
             workdir: Path) -> list[dict]:
    """One rotation's rows: the parent, then warm and full runs with the dropped classes back."""
    options = train.RunOptions(seed=seed)
    old_table = table[~table["class"].isin(new)].reset_index(drop=True)
    parent, seconds = timed(lambda: train.train(old_table, cfg=cfg, progress=False, options=options))
    parent_path = workdir / "parent.pt"
    spec = checkpoint.ModelSpec(parent.backbone, parent.class_names, cfg.image_size, parent.mean, parent.std)
    checkpoint.save(parent_path, model=parent.model, spec=spec)
    rows = [{"run": "parent (before)", "photos": 0, **judge(parent, old_table, new, seconds=seconds)}]
    warm_cfg = dataclasses.replace(train.PRESETS["warm"], image_size=cfg.image_size)
    for count in counts:
        grown = with_new_photos(table, new, count, seed=seed)
        result, seconds = timed(lambda: train.train(grown, cfg=warm_cfg, progress=False, options=options,
                                                    warm_start=parent_path))
        for step, elapsed in result.warm_step_seconds().items():
            result.model.load_state_dict(result.warm_steps[step])
            rows.append({"run": f"warm: {step}", "photos": count, **judge(result, grown, new, seconds=elapsed)})
        if count == counts[len(counts) // 2]:
            result, seconds = timed(lambda: train.train(grown, cfg=cfg, progress=False, options=options))
            rows.append({"run": "full retrain", "photos": count, **judge(result, grown, new, seconds=seconds)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="demo")
    parser.add_argument("--rotations", type=int, default=1)
    parser.add_argument("--drop", type=int, default=3, help="classes added back per rotation")
    parser.add_argument("--photos", type=int, nargs="+", default=[5, 10, 20], help="training photos per new type")
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--epochs-head", type=int, default=10)
    parser.add_argument("--epochs-finetune", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    where = paths.resolve(dataset=args.dataset)
    manifest = splits.read_manifest(where.splits_csv)
    table = train.training_table(manifest, where.dataset_dir)
    counts = table.groupby(["class", "split"]).size().unstack(fill_value=0).reindex(columns=list(splits.SPLITS),
                                                                                     fill_value=0)
    eligible = sorted(counts.index[(counts["train"] >= max(args.photos)) & (counts["test"] >= 5)])
    cfg = train.config("default", views=args.views, epochs_head=args.epochs_head,
                       epochs_finetune=args.epochs_finetune)
    print(f"{args.dataset}: {len(counts)} classes, {len(eligible)} with >= {max(args.photos)} training and 5 test "
          f"photos; backbone {backbones.DEFAULT}; recipe cut to {args.views} views, {args.epochs_head} + "
          f"{args.epochs_finetune} epochs; warm preset {train.PRESETS['warm'].views} views, "
          f"{train.PRESETS['warm'].epochs_head} + {train.PRESETS['warm'].epochs_finetune} epochs")
    rng = np.random.default_rng(args.seed)
    rows = []
    for r in range(args.rotations):
        new = sorted(rng.choice(eligible, args.drop, replace=False))
        with tempfile.TemporaryDirectory() as workdir:
            found = rotation(table, new, cfg=cfg, counts=args.photos, seed=args.seed + r, workdir=Path(workdir))
        rows += [{"rotation": r, "added": ",".join(new), **row} for row in found]
        print(pd.DataFrame(rows[-len(found):]).round(3).to_string(index=False), flush=True)
    frame = pd.DataFrame(rows)
    summary = frame.groupby(["run", "photos"], sort=False)[["old types", "new types", "test ECE", "seconds"]]
    print("\nmean over rotations:")
    print(summary.mean().round(3).to_string())


if __name__ == "__main__":
    main()
