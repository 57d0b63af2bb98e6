"""Audit a photo collection: find every file, hash it, measure it, and flag what is wrong."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd

from meterlib.data.photos import ImageError, read_photo

SPLITS = ("train", "val", "test")
# A file with one of these flags cannot be used at all; it is named in the manifest and skipped.
UNUSABLE_FLAGS = ("zero_byte", "not_image", "truncated", "unreadable", "no_class", "no_split",
                  "special_file", "broken_link", "link_loop", "bad_name")
# Problems found before any decoding: the 'error' text starts with the key, the flag is the value.
_ERROR_FLAGS = {"special file": "special_file", "broken link": "broken_link",
                "link loop": "link_loop", "bad name": "bad_name", "cannot read": "unreadable"}
_SPECIAL_KINDS = {stat.S_IFIFO: "named pipe (FIFO)", stat.S_IFSOCK: "socket",
                  stat.S_IFCHR: "character device", stat.S_IFBLK: "block device"}
# Folders above the class folder: raw/<class>/, processed/<split>/<class>/.
_CLASS_DEPTH = {"raw": 1, "processed": 2}
# The file's colour mode, reported because it is converted to 8-bit RGB on loading.
MODE_FLAGS = {"CMYK": "cmyk", "P": "palette", "RGBA": "alpha", "LA": "alpha", "PA": "alpha",
              "L": "grayscale", "1": "grayscale", "I;16": "16bit", "I;16B": "16bit",
              "I;16L": "16bit", "I": "16bit", "F": "16bit"}
# Quality is measured on a copy this large, so scores compare across photo sizes.
QUALITY_SIDE = 256
# Below this many files a process pool costs more than it saves.
_POOL_MIN_FILES = 64

COLUMNS = ["path", "class", "found_split", "size_bytes", "sha256", "phash", "width", "height",
           "mode", "format", "exif_rotated", "brightness", "contrast", "sharpness", "error"]


@dataclass
class Audit:
    """Every file of a dataset with its measurements and flags, and the class folders found."""

    files: pd.DataFrame
    classes: list[str]
    layout: str  # 'raw' (photos sorted by class) or 'processed' (an existing train/val/test tree)
    settings: dict = field(default_factory=dict)


def detect_layout(dataset_dir: str | os.PathLike) -> str:
    """'raw' when dataset_dir/raw exists, else 'processed' for an existing split tree."""
    dataset_dir = Path(dataset_dir)
    if (dataset_dir / "raw").is_dir():
        return "raw"
    if (dataset_dir / "processed").is_dir():
        return "processed"
    raise FileNotFoundError(f"{dataset_dir}: no raw/<class>/ or processed/<split>/<class>/ folder; "
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


def inspect_file(path: str | os.PathLike) -> dict:
    """Content hash, perceptual hash, size, colour mode and quality scores of one file."""
    path = Path(path)
    problem = _not_regular(path)
    if problem:
        return {"error": problem}
    try:
        data = path.read_bytes()
    except OSError as exc:
        return {"error": f"cannot read: {exc.strerror or exc}"}
    facts = {"size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    try:
        photo = read_photo(path, max_side=QUALITY_SIDE)
    except ImageError as exc:
        # The message starts with the (absolute) path; the manifest names files relatively.
        return {**facts, "error": str(exc).split(": ", 1)[-1]}
    except Exception as exc:  # a decoder bug on one odd file must not end the whole audit
        return {**facts, "error": f"unreadable image ({type(exc).__name__}: {exc})"}
    gray = np.asarray(photo.image.convert("L"), dtype=np.float64)
    return {**facts, "phash": str(imagehash.phash(photo.image)), "width": photo.width,
            "height": photo.height, "mode": photo.mode, "format": photo.format,
            "exif_rotated": photo.exif_rotated, "brightness": gray.mean() / 255,
            "contrast": gray.std() / 255, "sharpness": _laplacian_variance(gray), "error": ""}


def _not_regular(path: Path) -> str:
    """Why ``path`` must not be opened (a FIFO would block forever), or '' for a regular file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if path.is_symlink():
            return "broken link: its target does not exist"
        return "cannot read: the file vanished during the audit"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "link loop: the link leads back to itself"
        return f"cannot read: {exc.strerror or exc}"
    if stat.S_ISREG(mode):
        return ""
    return f"special file: a {_SPECIAL_KINDS.get(stat.S_IFMT(mode), 'special file')}, not a photo"


def _laplacian_variance(gray: np.ndarray) -> float:
    # Variance of the 4-neighbour Laplacian: low when edges are soft (defocus or motion blur).
    if min(gray.shape) < 3:
        return 0.0
    lap = (gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:]
           - 4 * gray[1:-1, 1:-1])
    return float(lap.var())


def inspect_files(paths: list[Path], *, workers: int | None = None,
                  progress: bool = True) -> list[dict]:
    """inspect_file over many files, in a process pool when that pays off."""
    from tqdm.auto import tqdm

    workers = workers or os.cpu_count() or 1
    bar = dict(total=len(paths), desc="audit", unit="file", disable=not progress)
    if workers == 1 or len(paths) < _POOL_MIN_FILES:
        return [inspect_file(f) for f in tqdm(paths, **bar)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(inspect_file, paths, chunksize=16), **bar))


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


def flag_files(files: pd.DataFrame, *, layout: str, near_distance: int, min_side: int,
               dark_below: float, low_contrast_below: float, blurry_below: float) -> pd.DataFrame:
    """Add the 'flags' (semicolon-separated) and 'group' (duplicate group) columns."""
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
    files["flags"] = [";".join(f) for f in flags]
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


def flag_counts(audit: Audit) -> pd.DataFrame:
    """How many files carry each flag, with one example file per flag."""
    exploded = audit.files.assign(flag=audit.files["flags"].str.split(";")).explode("flag")
    exploded = exploded[exploded["flag"].fillna("") != ""]
    table = exploded.groupby("flag").agg(files=("path", "size"), example=("path", "first"))
    return table.sort_values(["files"], ascending=False, kind="stable")


def files_with_flag(files: pd.DataFrame, flag: str) -> pd.DataFrame:
    """The rows whose flags include ``flag``."""
    return files[files["flags"].str.split(";").apply(lambda f: flag in f)]
