"""List every file of a dataset with its class (and split) from its folders, and what cannot be read."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pandas as pd

from meterlib.errors import DataError

# Folders above the class folder: raw/<class>/, processed/<split>/<class>/.
_CLASS_DEPTH = {"raw": 1, "processed": 2}


def detect_layout(dataset_dir: str | os.PathLike) -> str:
    """'raw' when dataset_dir/raw exists, else 'processed' for an existing split tree."""
    dataset_dir = Path(dataset_dir)
    if (dataset_dir / "raw").is_dir():
        return "raw"
    if (dataset_dir / "processed").is_dir():
        return "processed"
    raise DataError(f"{dataset_dir}: no raw/<class>/ or processed/<split>/<class>/ folder; "
                    "put one folder of photos per class under raw/")


def list_files(dataset_dir: str | os.PathLike, *, layout: str) -> tuple[pd.DataFrame, list[str]]:
    """Every non-hidden file under raw/ or processed/, with its class (and split), plus all class folders.

    Entries that cannot be read at all (a name that is not UTF-8, a folder link back into the tree,
    a folder that cannot be listed) come with their problem in the 'error' column.
    """
    dataset_dir = Path(dataset_dir)
    root = dataset_dir / layout
    rows, classes, failed = [], set(), []
    # Each real folder is listed once, so a link to itself or to an ancestor cannot loop the walk.
    seen = {_folder_key(root): layout}
    for folder, dirnames, filenames in os.walk(root, followlinks=True, onerror=failed.append):
        parts = Path(folder).relative_to(root).parts
        if len(parts) == _CLASS_DEPTH[layout]:
            classes.add(printable_name(parts[-1]))
        for name, first in _prune_folders(Path(folder), dirnames, seen, dataset_dir):
            rows.append(_entry(Path(folder, name), dataset_dir, layout,
                               error=f"link loop: leads to {first}/ again, not followed"))
        # Hidden files (.DS_Store, ._AppleDouble) are not photos.
        rows += [_entry(Path(folder, name), dataset_dir, layout)
                 for name in filenames if not name.startswith(".")]
    rows += [_entry(Path(exc.filename), dataset_dir, layout,
                    error=f"cannot read: folder not listed ({exc.strerror or exc})") for exc in failed]
    frame = pd.DataFrame(rows, columns=["path", "class", "found_split", "error"])
    return frame.sort_values("path", ignore_index=True), sorted(classes)


def printable_name(name: str) -> str:
    """A file name as UTF-8 text: bytes that are not UTF-8 shown as \\xNN escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def shown_name(name: str | os.PathLike) -> str:
    """A name safe to show on a terminal or a page: ``printable_name``, control and format characters escaped.

    Escapes, bidi overrides and line breaks in a file name could otherwise move the cursor, erase
    or reorder what is shown beside it; each becomes its ``\\xNN`` or ``\\uNNNN`` code.
    """
    return "".join(_escaped(char) for char in printable_name(os.fspath(name)))


def _escaped(char: str) -> str:
    if unicodedata.category(char) not in ("Cc", "Cf", "Zl", "Zp"):
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _folder_key(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino


def _prune_folders(folder: Path, dirnames: list[str], seen: dict,
                   dataset_dir: Path) -> list[tuple[str, str]]:
    """Keep only unseen, non-hidden folders in ``dirnames``; return (name, first path) of seen ones."""
    keep, again = [], []
    for name in sorted(d for d in dirnames if not d.startswith(".")):
        try:
            key = _folder_key(folder / name)
        except OSError:
            continue  # vanished since it was listed
        if key in seen:
            again.append((name, seen[key]))
        else:
            seen[key] = printable_name((folder / name).relative_to(dataset_dir).as_posix())
            keep.append(name)
    dirnames[:] = keep
    return again


def _entry(path: Path, dataset_dir: Path, layout: str, *, error: str = "") -> dict:
    rel = path.relative_to(dataset_dir).as_posix()
    parts = path.relative_to(dataset_dir / layout).parts[:-1]  # the folders it lies in
    depth = _CLASS_DEPTH[layout]
    if not error and printable_name(rel) != rel:
        error = "bad name: not valid UTF-8, so it is not read (rename the file)"
    return {"path": printable_name(rel),
            "class": printable_name(parts[depth - 1]) if len(parts) >= depth else "",
            "found_split": parts[0] if layout == "processed" and parts else "",
            "error": error}
