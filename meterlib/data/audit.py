"""Audit a photo collection: find every file, hash it, measure it, and flag what is wrong.

The steps live in ``listing`` (which files), ``measuring`` (what each is) and ``flagging``
(what is wrong with it); the flags column's format in ``flags``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from meterlib.data.flagging import flag_files
from meterlib.data.flags import parse_flags
from meterlib.data.listing import detect_layout, list_files
from meterlib.data.measuring import inspect_files

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
