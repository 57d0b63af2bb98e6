"""The split of an audited dataset: the rule that places each photo, the checks on a split, and splits.csv.

The rule (which photos of a class go to train, val and test) follows the seed system: a class with very few photos is used for training only, a
medium class also gets a test share, and a large class gets train, val and test shares.
Files that share a duplicate group (same content or near-identical perceptual hash) always land
in the same split, so no near-copy of a test photo is trained on. The rows of splits.csv are the
manifest; the processed/ tree is ``processed_tree``.
"""

from __future__ import annotations

import math
import numbers
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from meterlib.data.flags import UNUSABLE_FLAGS, has_flag, is_unusable
from meterlib.errors import DataError, SettingsError
from meterlib.run import atomic

if TYPE_CHECKING:  # only a type here: importing the audit would pull in its image hashing
    from meterlib.data.audit import Audit

SPLITS = ("train", "val", "test")
EXCLUDED = "excluded"
# Whole classes kept out of training, to test how the model treats meter types it never saw.
HOLDOUT = "holdout"
# Besides unusable files: every copy of an image after the first adds weight but no information,
# and a group whose members carry different labels cannot be trusted as ground truth.
EXCLUDING_FLAGS = (*UNUSABLE_FLAGS, "duplicate", "label_conflict")

# Manifest columns in order; the first nine are the contract that training relies on.
MANIFEST_COLUMNS = ["path", "class", "split", "sha256", "phash", "width", "height", "flags", "group",
                    "mode", "format", "exif_rotated", "brightness", "contrast", "sharpness",
                    "size_bytes", "error"]
# How to repair a manifest that cannot be read.
_REWRITE = "re-run notebook 01 to write it afresh"


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
    """Raise SettingsError naming the first split-rule parameter that cannot work."""
    for name, value in (("seed", seed), ("min_images_test", min_images_test),
                        ("min_images_val", min_images_val)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
            raise SettingsError(f"{name} must be a whole number >= 0, got {value!r}")
    for name, value in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
            raise SettingsError(f"{name} must be a number between 0 and 1, got {value!r}")
    if not 0 < min_images_test <= min_images_val:
        raise SettingsError(f"need 0 < min_images_test ({min_images_test}) <= min_images_val "
                            f"({min_images_val})")
    if not (0 < test_fraction < 1 and 0 <= val_fraction < 1 and test_fraction + val_fraction < 1):
        raise SettingsError(f"test_fraction ({test_fraction}) and val_fraction ({val_fraction}) must "
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


RESPLIT_HINT = "Set resplit=True in notebook 01 (-p resplit=true) to split the photos afresh."
# Problems of an existing split that distort the measured accuracy, in words.
_LEAK_SENTENCES = {
    "leakage": "Leakage: {photos} with a (near-)copy in another split ({groups}), e.g. {example}: "
               "the model is tested on pictures it has trained on, so the test accuracy is too high.",
    "duplicate": "Copies: {photos} identical to another photo and used anyway, e.g. {example}: "
                 "they add weight but no information.",
    "label_conflict": "Label conflicts: {photos} with a (near-)copy filed under another class and "
                      "used anyway, e.g. {example}: a photo with two labels is no ground truth.",
}


def build_manifest(audit: Audit, *, resplit: bool = False, holdout_classes: Sequence[str] = (),
                   **rule) -> pd.DataFrame:
    """The splits.csv table: a fresh split of raw/, or an existing processed/ split as found.

    Usable photos of ``holdout_classes`` go to the 'holdout' split instead of train/val/test.
    """
    files = audit.files
    unknown = sorted(set(holdout_classes) - set(files["class"]))
    if unknown:
        raise SettingsError(f"holdout class(es) not in the dataset: {', '.join(unknown)}")
    if audit.layout == "processed" and not resplit:
        split = files["found_split"].where(~is_unusable(files), EXCLUDED)
    else:
        split = assign_splits(files, **rule)
    split = split.mask(files["class"].isin(holdout_classes) & (split != EXCLUDED), HOLDOUT)
    manifest = files.assign(split=split).reindex(columns=MANIFEST_COLUMNS)
    text = ["sha256", "phash", "flags", "group", "mode", "format", "error"]
    manifest[text] = manifest[text].astype(object).fillna("")  # all-empty columns are float
    # Rounded scores keep the CSV text identical from run to run and machine to machine.
    return manifest.round({"brightness": 4, "contrast": 4, "sharpness": 2})


def require_trainable_classes(manifest: pd.DataFrame) -> None:
    """Raise DataError unless at least 2 classes have photos in the train split."""
    trained = sorted(manifest.loc[manifest["split"] == "train", "class"].unique())
    if len(trained) >= 2:
        return
    found = (f"only 1 class has training photos ({trained[0]})" if trained
             else "no class has training photos")
    raise DataError(f"{found}: a classifier needs at least 2 classes to tell apart. Put the "
                    "photos of each meter type in its own folder raw/<class>/ (splits.csv names "
                    "every excluded file and why), or hold out fewer classes.")


def leakage_warnings(manifest: pd.DataFrame) -> list[str]:
    """Sentences on (near-)copies across splits and on copies or label conflicts in use ([] if none)."""
    used = manifest[manifest["split"] != EXCLUDED]
    found = {"leakage": _leaking(used), **{flag: used[has_flag(used, flag)]
                                           for flag in ("duplicate", "label_conflict")}}
    return [_LEAK_SENTENCES[kind].format(photos=counted(len(rows), "photo"),
                                         groups=counted(rows["group"].nunique(), "duplicate group"),
                                         example=rows["path"].iat[0]) + " " + RESPLIT_HINT
            for kind, rows in found.items() if len(rows)]


def _leaking(used: pd.DataFrame) -> pd.DataFrame:
    """The rows whose duplicate group spans several splits."""
    spans = used.groupby("group")["split"].nunique()
    return used[used["group"].isin(spans.index[spans > 1])]


def counted(n: int, noun: str) -> str:
    """``n`` and the noun, plural unless ``n`` is 1 ('1 photo', '3 photos')."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def table_preview(table: pd.DataFrame, *, max_rows: int = 40, what: str = "rows") -> str:
    """The table as text; a long one as its first ``max_rows`` rows and a line on the rest."""
    if len(table) <= max_rows:
        return table.to_string()
    return (table.head(max_rows).to_string()
            + f"\n... {len(table) - max_rows} more {what} not shown ({len(table)} in all)")


def split_table(manifest: pd.DataFrame, *, classes: list[str] | None = None,
                min_images_test: int | None = None,
                min_images_val: int | None = None) -> pd.DataFrame:
    """Photos per class and split, with each class's tier under the rule (if given)."""
    table = pd.crosstab(manifest["class"], manifest["split"])
    table = table.reindex(columns=[*SPLITS, HOLDOUT, EXCLUDED], fill_value=0)
    if classes is not None:
        table = table.reindex(sorted(set(classes) | set(table.index) - {""}), fill_value=0)
    table.index.name, table.columns.name = "class", None
    if min_images_test is not None and min_images_val is not None:
        usable = table[list(SPLITS)].sum(axis=1)
        table["tier"] = [HOLDOUT if held else
                         class_tier(n, min_images_test=min_images_test, min_images_val=min_images_val)
                         if n else "(empty)" for n, held in zip(usable, table[HOLDOUT] > 0)]
    return table


def check_split(manifest: pd.DataFrame) -> list[str]:
    """Broken split invariants, in words (an empty list when the split is sound)."""
    problems = []
    used = manifest[manifest["split"] != EXCLUDED]
    if used["path"].duplicated().any():
        problems.append(f"{used['path'].duplicated().sum()} files appear in more than one split")
    if not used["split"].isin([*SPLITS, HOLDOUT]).all():
        problems.append("unknown split names: "
                        + ", ".join(sorted(set(used["split"]) - {*SPLITS, HOLDOUT})))
    mixed = set(used.loc[used["split"] == HOLDOUT, "class"]) & set(used.loc[used["split"] != HOLDOUT, "class"])
    if mixed:
        problems.append("held-out classes also in train/val/test: " + ", ".join(sorted(mixed)))
    leaking = sorted(_leaking(used)["group"].unique())
    if leaking:
        problems.append(f"{len(leaking)} duplicate groups span several splits: "
                        + ", ".join(leaking[:5]))
    in_train = set(used.loc[used["split"] == "train", "class"])
    held_out = set(used.loc[used["split"].isin(["val", "test"]), "class"])
    if held_out - in_train:
        problems.append("classes in val/test but not in train: " + ", ".join(sorted(held_out - in_train)))
    bad = manifest[(manifest["split"] != EXCLUDED) & is_excluded(manifest)]
    if len(bad):
        problems.append(f"{len(bad)} files that should be excluded are in a split, e.g. {bad['path'].iat[0]}")
    return problems


def manifest_csv(manifest: pd.DataFrame) -> str:
    """The manifest as CSV text (stable line endings, no index)."""
    return manifest.to_csv(index=False, lineterminator="\n")


def write_manifest(manifest: pd.DataFrame, path: str | os.PathLike) -> bool:
    """Atomically write splits.csv; leave the file untouched (return False) when nothing changed."""
    path = Path(path)
    text = manifest_csv(manifest)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    atomic.write_text(path, text)
    return True


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Load splits.csv: text stays text (a class named 'NaN' or 'None' survives), numbers are numbers.

    A missing, unreadable or foreign file raises a DataError that names it.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no manifest here; run notebook 01 to write it")
    try:
        # utf-8-sig: a spreadsheet program may have added a byte-order mark.
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise DataError(f"{path}: not a readable CSV manifest ({reason}); {_REWRITE}") from None
    missing = [column for column in MANIFEST_COLUMNS if column not in frame.columns]
    if missing:
        raise DataError(f"{path}: not a meterlib manifest, missing columns: {', '.join(missing)}; "
                        + _REWRITE)
    for column, dtype in (("width", "Int64"), ("height", "Int64"), ("size_bytes", "Int64"),
                          ("brightness", float), ("contrast", float), ("sharpness", float)):
        frame[column] = _numbers(frame[column], path, dtype)
    frame["exif_rotated"] = frame["exif_rotated"].map({"True": True, "False": False})
    return frame


def _numbers(column: pd.Series, path: Path, dtype) -> pd.Series:
    values = pd.to_numeric(column.replace("", None), errors="coerce")
    bad = values.isna() & column.ne("")
    if dtype == "Int64":
        bad |= values.notna() & (values % 1 != 0)
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # the header is line 1
        kind = "a whole number" if dtype == "Int64" else "a number"
        raise DataError(f"{path}: line {line}, column '{column.name}': "
                        f"{column[bad].iat[0]!r} is not {kind}; {_REWRITE}")
    return values.astype(dtype)
