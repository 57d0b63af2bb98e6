"""Audit a photo collection: find every file, hash it, measure it, flag what is wrong and group its copies.

The first steps live in ``listing`` (which files) and ``measuring`` (what each is); the flags
column's format in ``flags``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from meterlib.data.flags import UNUSABLE_FLAGS, join_flags, parse_flags
from meterlib.data.listing import detect_layout, list_files
from meterlib.data.measuring import inspect_files
from meterlib.data.splits import SPLITS

COLUMNS = ["path", "class", "found_split", "size_bytes", "sha256", "phash", "width", "height",
           "mode", "format", "exif_rotated", "brightness", "contrast", "sharpness", "error"]


@dataclass
class Audit:
    """Every file of a dataset with its measurements and flags, and the class folders found."""

    files: pd.DataFrame
    classes: list[str]
    layout: str  # 'raw' (photos sorted by class) or 'processed' (an existing train/val/test tree)
    settings: dict = field(default_factory=dict)


def audit_dataset(dataset_dir: str | os.PathLike, *, near_distance: int = 4, min_side: int = 64,
                  dark_below: float = 0.15, low_contrast_below: float = 0.05,
                  blurry_below: float = 60.0, workers: int | None = None,
                  progress: bool = True) -> Audit:
    """Scan raw/ (or an existing processed/ split), measure every file and flag problems."""
    dataset_dir = Path(dataset_dir)
    layout = detect_layout(dataset_dir)
    listed, classes = list_files(dataset_dir, layout=layout)
    todo = listed[listed["error"] == ""]
    facts = inspect_files([dataset_dir / p for p in todo["path"]], workers=workers,
                          progress=progress)
    inspected = pd.DataFrame(facts, index=todo.index)
    files = listed.drop(columns="error").join(inspected).reindex(columns=COLUMNS)
    files["error"] = listed["error"].mask(listed["error"] == "", files["error"])
    files = files.astype({"width": "Int64", "height": "Int64", "size_bytes": "Int64"})
    settings = dict(near_distance=near_distance, min_side=min_side, dark_below=dark_below,
                    low_contrast_below=low_contrast_below, blurry_below=blurry_below)
    files = flag_files(files, layout=layout, **settings)
    return Audit(files=files, classes=classes, layout=layout, settings=settings)


def flag_counts(audit: Audit) -> pd.DataFrame:
    """How many files carry each flag, with one example file per flag."""
    files = audit.files
    exploded = files.assign(flag=files["flags"].map(parse_flags)).explode("flag").dropna(subset=["flag"])
    table = exploded.groupby("flag").agg(files=("path", "size"), example=("path", "first"))
    return table.sort_values(["files"], ascending=False, kind="stable")


# Problems found before any decoding: the 'error' text starts with the key, the flag is the value.
_ERROR_FLAGS = {"special file": "special_file", "broken link": "broken_link",
                "link loop": "link_loop", "bad name": "bad_name", "cannot read": "unreadable"}
# The file's colour mode, reported because it is converted to 8-bit RGB on loading.
MODE_FLAGS = {"CMYK": "cmyk", "P": "palette", "RGBA": "alpha", "LA": "alpha", "PA": "alpha",
              "L": "grayscale", "1": "grayscale", "I;16": "16bit", "I;16B": "16bit",
              "I;16L": "16bit", "I": "16bit", "F": "16bit"}


def flag_files(files: pd.DataFrame, *, layout: str, near_distance: int, min_side: int,
               dark_below: float, low_contrast_below: float, blurry_below: float) -> pd.DataFrame:
    """Add the 'flags' (see ``flags.join_flags``) and 'group' (duplicate group) columns."""
    files = files.copy()
    flags = [[] for _ in range(len(files))]
    readable = files["error"].fillna("").eq("").to_numpy()
    for i, row in enumerate(files.to_dict("records")):
        if not readable[i]:
            flags[i].append(_error_flag(row["error"], row["size_bytes"]))
            continue
        if not row["class"]:  # a file lying directly in raw/ or in a split folder
            flags[i].append("no_class")
        if layout == "processed" and row["found_split"] not in SPLITS:
            flags[i].append("no_split")
        if row["mode"] in MODE_FLAGS:
            flags[i].append(MODE_FLAGS[row["mode"]])
        if row["exif_rotated"]:
            flags[i].append("exif_rotated")
        if min(row["width"], row["height"]) < min_side:
            flags[i].append("tiny")
        if row["brightness"] < dark_below:
            flags[i].append("dark")
        if row["contrast"] < low_contrast_below:
            flags[i].append("low_contrast")
        if row["sharpness"] < blurry_below:
            flags[i].append("blurry")
    usable = readable & np.array([not set(f) & set(UNUSABLE_FLAGS) for f in flags], dtype=bool)
    groups = duplicate_groups(files["sha256"].to_numpy(), files["phash"].to_numpy(), usable,
                              near_distance=near_distance)
    files["group"] = groups
    _flag_groups(files, flags, usable, check_leakage=layout == "processed")
    files["flags"] = [join_flags(f) for f in flags]
    return files


def _error_flag(error: str, size_bytes: int) -> str:
    for start, flag in _ERROR_FLAGS.items():
        if error.startswith(start):
            return flag
    if size_bytes == 0:
        return "zero_byte"
    if "not an image" in error:
        return "not_image"
    return "truncated" if "truncated" in error else "unreadable"


def duplicate_groups(sha256: np.ndarray, phash: np.ndarray, usable: np.ndarray, *,
                     near_distance: int) -> list[str]:
    """Group id per file: files with equal content or phash within ``near_distance`` share one."""
    n = len(sha256)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    index = np.flatnonzero(usable)
    first_of: dict[str, int] = {}
    for i in index:
        union(first_of.setdefault(sha256[i], i), i)
    if near_distance >= 0 and index.size:
        bits = np.array([int(h, 16) for h in phash[index]], dtype=np.uint64)
        for i, j in _close_pairs(bits, near_distance):
            union(index[i], index[j])
    # Name a group after its first member's content hash: stable when other files change.
    return [sha256[find(i)][:12] if usable[i] else "" for i in range(n)]


def _close_pairs(bits: np.ndarray, limit: int, *, block: int = 1024):
    # Hamming distances block by block, so memory stays small for tens of thousands of photos.
    for start in range(0, bits.size, block):
        rows = bits[start:start + block]
        dist = np.bitwise_count(rows[:, None] ^ bits[None, :])
        for i, j in zip(*np.nonzero(dist <= limit)):
            if start + i < j:
                yield start + i, j


def _flag_groups(files: pd.DataFrame, flags: list[list[str]], usable: np.ndarray, *,
                 check_leakage: bool) -> None:
    members = pd.DataFrame({"group": files["group"], "sha256": files["sha256"],
                            "class": files["class"], "split": files["found_split"]})[usable]
    stats = members.groupby("group").agg(n=("sha256", "size"), n_sha=("sha256", "nunique"),
                                         n_class=("class", "nunique"), n_split=("split", "nunique"))
    seen_sha: set[str] = set()
    for i in np.flatnonzero(usable):  # rows are sorted by path: the first copy is the original
        g = stats.loc[files["group"].iat[i]]
        sha = files["sha256"].iat[i]
        if sha in seen_sha:
            flags[i].append("duplicate")
        seen_sha.add(sha)
        if g.n_sha > 1:
            flags[i].append("near_duplicate")
        if g.n_class > 1:
            flags[i].append("label_conflict")
        if check_leakage and g.n_split > 1:
            flags[i].append("leakage")
