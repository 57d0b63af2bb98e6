"""The file splits.csv: its columns, its exact text, writing it only when it changes, reading it back."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from meterlib.data.split_rule import SplitError
from meterlib.run import atomic

# Manifest columns in order; the first nine are the contract that training relies on.
MANIFEST_COLUMNS = ["path", "class", "split", "sha256", "phash", "width", "height", "flags", "group",
                    "mode", "format", "exif_rotated", "brightness", "contrast", "sharpness",
                    "size_bytes", "error"]
# How to repair a manifest that cannot be read.
_REWRITE = "re-run notebook 01 to write it afresh"


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

    A missing, unreadable or foreign file raises an error that names it (FileNotFoundError, SplitError).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest here; run notebook 01 to write it")
    try:
        # utf-8-sig: a spreadsheet program may have added a byte-order mark.
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise SplitError(f"{path}: not a readable CSV manifest ({reason}); {_REWRITE}") from None
    missing = [column for column in MANIFEST_COLUMNS if column not in frame.columns]
    if missing:
        raise SplitError(f"{path}: not a meterlib manifest, missing columns: {', '.join(missing)}; "
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
        raise SplitError(f"{path}: line {line}, column '{column.name}': "
                         f"{column[bad].iat[0]!r} is not {kind}; {_REWRITE}")
    return values.astype(dtype)
