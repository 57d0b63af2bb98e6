"""The adaptive, group-aware train/val/test split, its manifest (splits.csv) and the processed/ tree.

The rule follows the seed system: a class with very few photos is used for training only, a
medium class also gets a test share, and a large class gets train, val and test shares.
Files that share a duplicate group (same content or near-identical perceptual hash) always land
in the same split, so no near-copy of a test photo is trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zlib
from typing import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from meterlib import atomic
from meterlib.audit import SPLITS, UNUSABLE_FLAGS, Audit

# Manifest columns in order; the first nine are the contract that training relies on.
MANIFEST_COLUMNS = ["path", "class", "split", "sha256", "phash", "width", "height", "flags", "group",
                    "mode", "format", "exif_rotated", "brightness", "contrast", "sharpness",
                    "size_bytes", "error"]
EXCLUDED = "excluded"
# Whole classes kept out of training, to test how the model treats meter types it never saw.
HOLDOUT = "holdout"
# Besides unusable files: every copy of an image after the first adds weight but no information,
# and a group whose members carry different labels cannot be trusted as ground truth.
EXCLUDING_FLAGS = (*UNUSABLE_FLAGS, "duplicate", "label_conflict")
TREE_MARKER = ".meterlib-split.json"


class SplitError(RuntimeError):
    """A split that cannot be made or written safely; the message says why."""


def class_tier(n_images: int, *, min_images_test: int, min_images_val: int) -> str:
    """Which splits a class of ``n_images`` usable photos takes part in."""
    if n_images >= min_images_val:
        return "train+val+test"
    if n_images >= min_images_test:
        return "train+test"
    return "train"


def is_excluded(flags: str) -> bool:
    """True when a manifest 'flags' value holds a flag that keeps the file out of every split."""
    return bool(set(flags.split(";")) & set(EXCLUDING_FLAGS))


def assign_splits(files: pd.DataFrame, *, seed: int = 0, min_images_test: int = 28,
                  min_images_val: int = 50, test_fraction: float = 0.2,
                  val_fraction: float = 0.15) -> pd.Series:
    """Split per class by the adaptive rule, whole duplicate groups at a time; unusable -> 'excluded'."""
    if not 0 < min_images_test <= min_images_val:
        raise SplitError(f"need 0 < min_images_test ({min_images_test}) <= min_images_val "
                         f"({min_images_val})")
    if not (0 < test_fraction < 1 and 0 <= val_fraction < 1 and test_fraction + val_fraction < 1):
        raise SplitError(f"test_fraction ({test_fraction}) and val_fraction ({val_fraction}) must "
                         "lie in [0, 1) and leave a share for training")
    split = pd.Series(EXCLUDED, index=files.index, dtype=object)
    usable = ~files["flags"].fillna("").map(is_excluded)
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


def build_manifest(audit: Audit, *, resplit: bool = False, holdout_classes: Sequence[str] = (),
                   **rule) -> pd.DataFrame:
    """The splits.csv table: a fresh split of raw/, or an existing processed/ split as found.

    Usable photos of ``holdout_classes`` go to the 'holdout' split instead of train/val/test.
    """
    files = audit.files
    unknown = sorted(set(holdout_classes) - set(files["class"]))
    if unknown:
        raise SplitError(f"holdout class(es) not in the dataset: {', '.join(unknown)}")
    if audit.layout == "processed" and not resplit:
        usable = ~files["flags"].fillna("").map(lambda f: bool(set(f.split(";")) & set(UNUSABLE_FLAGS)))
        split = files["found_split"].where(usable, EXCLUDED)
    else:
        split = assign_splits(files, **rule)
    split = split.mask(files["class"].isin(holdout_classes) & (split != EXCLUDED), HOLDOUT)
    manifest = files.assign(split=split).reindex(columns=MANIFEST_COLUMNS)
    text = ["sha256", "phash", "flags", "group", "mode", "format", "error"]
    manifest[text] = manifest[text].fillna("")
    # Rounded scores keep the CSV text identical from run to run and machine to machine.
    return manifest.round({"brightness": 4, "contrast": 4, "sharpness": 2})


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
    """Load splits.csv: text stays text (a class named 'NaN' or 'None' survives), numbers are numbers."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in ("width", "height", "size_bytes"):
        frame[column] = pd.to_numeric(frame[column].replace("", None)).astype("Int64")
    for column in ("brightness", "contrast", "sharpness"):
        frame[column] = pd.to_numeric(frame[column].replace("", None)).astype(float)
    frame["exif_rotated"] = frame["exif_rotated"].map({"True": True, "False": False})
    return frame


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
    spans = used.groupby("group")["split"].nunique()
    if (spans > 1).any():
        problems.append(f"{(spans > 1).sum()} duplicate groups span several splits: "
                        + ", ".join(spans[spans > 1].index[:5]))
    in_train = set(used.loc[used["split"] == "train", "class"])
    held_out = set(used.loc[used["split"].isin(["val", "test"]), "class"])
    if held_out - in_train:
        problems.append("classes in val/test but not in train: " + ", ".join(sorted(held_out - in_train)))
    bad = manifest[(manifest["split"] != EXCLUDED) & manifest["flags"].map(is_excluded)]
    if len(bad):
        problems.append(f"{len(bad)} files that should be excluded are in a split, e.g. {bad['path'].iat[0]}")
    return problems


def materialise(manifest: pd.DataFrame, dataset_dir: str | os.PathLike, *,
                copy: bool = False) -> dict[str, int]:
    """Build processed/{train,val,test}/<class>/ as links (or copies) to the photos; idempotent."""
    dataset_dir = Path(dataset_dir)
    root = dataset_dir / "processed"
    marker = root / TREE_MARKER
    if root.exists() and not marker.is_file() and any(root.iterdir()):
        raise SplitError(f"{root} exists and was not made by meterlib; it is left alone "
                         "(move it away, or use it as the input by removing raw/)")
    wanted = _tree_entries(manifest)
    counts = {"created": 0, "removed": 0, "kept": 0}
    for entry in sorted(_existing_entries(root)):
        target = wanted.get(entry)
        link = root / entry
        if target is not None and _points_to(link, dataset_dir / target, copy=copy):
            counts["kept"] += 1
            continue
        link.unlink()
        counts["removed"] += 1
    for entry, target in sorted(wanted.items()):
        link = root / entry
        if link.is_symlink() or link.exists():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        source = dataset_dir / target
        if copy:
            shutil.copy2(source, link)
        else:
            link.symlink_to(os.path.relpath(source, link.parent))
        counts["created"] += 1
    _remove_empty_folders(root)
    digest = hashlib.sha256(manifest_csv(manifest).encode()).hexdigest()
    record = {"made_by": "meterlib", "manifest_sha256": digest, "copies": copy}
    if not marker.is_file() or json.loads(marker.read_text(encoding="utf-8")) != record:
        atomic.write_json(marker, record)
    return counts


def _tree_entries(manifest: pd.DataFrame) -> dict[str, str]:
    # processed/<split>/<class>/<name>: nested raw folders fold into the file name.
    entries: dict[str, str] = {}
    for row in manifest[manifest["split"].isin(SPLITS)].to_dict("records"):
        name = "__".join(Path(row["path"]).parts[2:])
        entry = f"{row['split']}/{row['class']}/{name}"
        if entry in entries:  # only possible when names already contain '__'
            entry = f"{row['split']}/{row['class']}/{row['sha256'][:8]}__{name}"
        entries[entry] = row["path"]
    return entries


def _existing_entries(root: Path):
    if not root.is_dir():
        return
    for folder, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if (Path(folder) / d).is_symlink()]:
            entry = (Path(folder) / name).relative_to(root).as_posix()
            if entry != TREE_MARKER:
                yield entry


def _points_to(link: Path, source: Path, *, copy: bool) -> bool:
    if copy:
        return (not link.is_symlink() and link.is_file()
                and link.stat().st_size == source.stat().st_size
                and link.read_bytes() == source.read_bytes())
    return link.is_symlink() and os.readlink(link) == os.path.relpath(source, link.parent)


def _remove_empty_folders(root: Path) -> None:
    if not root.is_dir():
        return
    for folder, dirnames, filenames in os.walk(root, topdown=False):
        here = Path(folder)
        if here != root and not any(here.iterdir()):
            here.rmdir()
