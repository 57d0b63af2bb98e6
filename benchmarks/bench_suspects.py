"""Does the suspect-label list find planted label swaps, and how many clean photos does it flag?

    python benchmarks/bench_suspects.py                 # demo data, 30 swaps, default preset
    python benchmarks/bench_suspects.py --swaps 30 --seed 1

A copy of the demo training table gets ``--swaps`` training photos relabelled to another class
(drawn at random; val and test untouched). The model is then trained on the noisy labels as 02
trains it, with cross-fitting, and each source of out-of-fold probabilities goes through
``meterlib.evaluate.suspects``:

- phase-1 folds: the out-of-fold logits 03 calibrates with (heads on the pretrained features);
- final-feature folds: logistic regression in the same folds on the final model's features of the
  un-augmented training photos (what 02 stores for the suspect list).

Printed per source: OOF accuracy against the true labels, swaps found, clean photos flagged per
1,000. Targets: at least 20 of 30 swaps, fewer than 10 clean photos per 1,000.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench_training import dataset_table
from meterlib import train
from meterlib.confidence import calibration
from meterlib.evaluate import suspects
from meterlib.train import crossfit


def plant_swaps(table, *, swaps: int, seed: int):
    """(noisy table, positions in the training rows of the swapped photos): each moved to another class."""
    rng = np.random.default_rng(seed)
    noisy = table.copy()
    train_rows = np.flatnonzero(noisy["split"].to_numpy() == "train")
    classes = sorted(noisy.loc[noisy["split"] == "train", "class"].unique())
    picked = rng.choice(len(train_rows), size=swaps, replace=False)
    column = noisy.columns.get_loc("class")
    for position in picked:
        given = noisy.iat[train_rows[position], column]
        noisy.iat[train_rows[position], column] = rng.choice([c for c in classes if c != given])
    return noisy, np.sort(picked)


def score(name, probs, noisy_labels, true_labels, swapped, class_names):
    table = suspects.suspect_labels(probs, noisy_labels, class_names=class_names,
                                    photos=list(range(len(noisy_labels))))
    flagged = set(table["photo"])
    found = len(flagged & set(swapped))
    clean = len(noisy_labels) - len(swapped)
    false = len(flagged) - found
    accuracy = float((probs.argmax(1) == true_labels).mean())
    print(f"{name:22s} {accuracy:8.3f} {found:>5d}/{len(swapped):<3d} {len(flagged):8d} "
          f"{1000 * false / clean:12.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="demo")
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--swaps", type=int, default=30)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default="", help="also save the OOF arrays to this .npz")
    args = parser.parse_args()

    table = dataset_table(args.dataset, data_dir=args.data_dir, seed=args.seed)
    noisy, swapped = plant_swaps(table, swaps=args.swaps, seed=args.seed)
    started = time.perf_counter()
    result = train.train(noisy, cfg=train.config("default"), progress=False, folds=args.folds,
                         options=train.RunOptions(seed=args.seed))
    print(f"trained on {len(result.out_of_fold.labels)} photos with {args.swaps} swapped labels "
          f"in {time.perf_counter() - started:.0f} s; timings {result.timings}")
    oof = result.out_of_fold
    index = {name: i for i, name in enumerate(result.class_names)}
    true_labels = np.array([index[c] for c in table.loc[oof.index, "class"]])
    print(f"{'source':22s} {'OOF acc':>8s} {'found':>9s} {'flagged':>8s} {'clean/1000':>12s}")
    score("phase-1 folds", calibration.softmax(oof.logits.astype(np.float64), temperature=1.0), oof.labels,
          true_labels, swapped, result.class_names)
    if args.save:
        np.savez(args.save, logits=oof.logits, feature_probs=oof.feature_probs, labels=oof.labels,
                 true_labels=true_labels, swapped=swapped, fold=oof.fold)
    score("final-feature folds", oof.feature_probs, oof.labels, true_labels, swapped, result.class_names)


if __name__ == "__main__":
    main()
