"""The adaptive, group-aware split rule: which photos of a class go to train, val and test.

The rule follows the seed system: a class with very few photos is used for training only, a
medium class also gets a test share, and a large class gets train, val and test shares.
Files that share a duplicate group (same content or near-identical perceptual hash) always land
in the same split, so no near-copy of a test photo is trained on.
"""

from __future__ import annotations

import math
import numbers
import zlib

import numpy as np
import pandas as pd

from meterlib.data.flags import UNUSABLE_FLAGS, has_flag
from meterlib.errors import MeterlibError

SPLITS = ("train", "val", "test")
EXCLUDED = "excluded"
# Whole classes kept out of training, to test how the model treats meter types it never saw.
HOLDOUT = "holdout"
# Besides unusable files: every copy of an image after the first adds weight but no information,
# and a group whose members carry different labels cannot be trusted as ground truth.
EXCLUDING_FLAGS = (*UNUSABLE_FLAGS, "duplicate", "label_conflict")


class SplitError(MeterlibError, RuntimeError):
    """A split that cannot be made or written safely; the message says why."""


def class_tier(n_images: int, *, min_images_test: int, min_images_val: int) -> str:
    """Which splits a class of ``n_images`` usable photos takes part in."""
    if n_images >= min_images_val:
        return "train+val+test"
    if n_images >= min_images_test:
        return "train+test"
    return "train"


def is_excluded(files: pd.DataFrame) -> pd.Series:
    """True for the rows whose flags keep the file out of every split (see EXCLUDING_FLAGS)."""
    return has_flag(files, *EXCLUDING_FLAGS)


def assign_splits(files: pd.DataFrame, *, seed: int = 0, min_images_test: int = 28,
                  min_images_val: int = 50, test_fraction: float = 0.2,
                  val_fraction: float = 0.15) -> pd.Series:
    """Split per class by the adaptive rule, whole duplicate groups at a time; unusable -> 'excluded'."""
    check_rule(seed=seed, min_images_test=min_images_test, min_images_val=min_images_val,
               test_fraction=test_fraction, val_fraction=val_fraction)
    split = pd.Series(EXCLUDED, index=files.index, dtype=object)
    usable = ~is_excluded(files)
    for cls, rows in files[usable].groupby("class", sort=True):
        n = len(rows)
        tier = class_tier(n, min_images_test=min_images_test, min_images_val=min_images_val)
        targets = {"test": max(1, round(n * test_fraction))} if tier != "train" else {}
        if tier == "train+val+test" and val_fraction > 0:
            targets["val"] = max(1, round(n * val_fraction))
        sizes = rows.groupby("group").size()
        # The class name seeds its own generator: adding a class leaves the others' splits alone.
        rng = np.random.default_rng([seed, zlib.crc32(str(cls).encode())])
        order = list(sizes.index[rng.permutation(len(sizes))])
        chosen = _choose_groups(order, sizes.to_dict(), targets)
        split[rows.index] = rows["group"].map(lambda g: chosen.get(g, "train"))
    return split


def check_rule(*, seed: int, min_images_test: int, min_images_val: int, test_fraction: float,
               val_fraction: float) -> None:
    """Raise SplitError naming the first split-rule parameter that cannot work."""
    for name, value in (("seed", seed), ("min_images_test", min_images_test),
                        ("min_images_val", min_images_val)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
            raise SplitError(f"{name} must be a whole number >= 0, got {value!r}")
    for name, value in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
            raise SplitError(f"{name} must be a number between 0 and 1, got {value!r}")
    if not 0 < min_images_test <= min_images_val:
        raise SplitError(f"need 0 < min_images_test ({min_images_test}) <= min_images_val "
                         f"({min_images_val})")
    if not (0 < test_fraction < 1 and 0 <= val_fraction < 1 and test_fraction + val_fraction < 1):
        raise SplitError(f"test_fraction ({test_fraction}) and val_fraction ({val_fraction}) must "
                         "lie in [0, 1) and leave a share for training")


def _choose_groups(order: list[str], sizes: dict[str, int], targets: dict[str, int]) -> dict[str, str]:
    chosen: dict[str, str] = {}
    for name, target in targets.items():
        taken = 0
        for group in list(order):
            if len(order) <= 1 or taken >= target:
                break  # training always keeps at least one group of every class
            if taken + sizes[group] <= target:
                chosen[group] = name
                order.remove(group)
                taken += sizes[group]
        if taken == 0 and len(order) > 1:
            # Every group is larger than the share: hold out the smallest rather than none.
            group = min(order, key=lambda g: sizes[g])
            chosen[group] = name
            order.remove(group)
    return chosen
