"""The training table: which photos take part, in which split, decoded once."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from meterlib.data import splits
from meterlib.errors import DataError
from meterlib.model import inference


def training_table(manifest: pd.DataFrame, dataset_dir) -> pd.DataFrame:
    """Rows of splits.csv that take part (train/val/test) with an absolute ``file`` column."""
    missing = {"path", "class", "split"} - set(manifest.columns)
    if missing:
        raise DataError(f"splits manifest lacks column(s) {', '.join(sorted(missing))}")
    used = manifest[manifest["split"].isin(splits.SPLITS)].copy()
    used["file"] = [str(Path(dataset_dir) / rel) for rel in used["path"]]
    splits.require_trainable_classes(used)
    strays = sorted(set(used["class"]) - set(used.loc[used["split"] == "train", "class"]))
    if strays:
        raise DataError(f"classes without training photos: {', '.join(strays[:5])}")
    return used.reset_index(drop=True)


def decode_splits(table: pd.DataFrame, *, image_size: int, progress: bool = False) -> dict:
    """Decoded, squash-resized PIL images per split (decode every JPEG once)."""
    return {split: inference.load_resized(list(table.loc[table["split"] == split, "file"]),
                                          image_size=image_size, progress=progress)
            for split in splits.SPLITS}
