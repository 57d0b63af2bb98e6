"""Measure one file: content and perceptual hash, size, colour mode, orientation and quality scores."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import imagehash
import numpy as np

from meterlib.data.photos import read_file_bytes, read_photo
from meterlib.data.quality import QUALITY_SIDE, quality
from meterlib.errors import DataError
from meterlib.run import machine

_SPECIAL_KINDS = {stat.S_IFIFO: "named pipe (FIFO)", stat.S_IFSOCK: "socket",
                  stat.S_IFCHR: "character device", stat.S_IFBLK: "block device"}
# Below this many files a process pool costs more than it saves.
_POOL_MIN_FILES = 64


def inspect_file(path: str | os.PathLike) -> dict:
    """Content hash, perceptual hash, size, colour mode and quality scores of one file."""
    path = Path(path)
    problem = _not_regular(path)
    if problem:
        return {"error": problem}
    try:
        data = read_file_bytes(path)  # bounded: a link to a file that blocks (procfs) does not hang the audit
    except DataError as exc:
        return {"error": exc.problem}
    facts = {"size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    try:
        photo = read_photo(path, max_side=QUALITY_SIDE)
    except DataError as exc:
        # The problem alone, without the absolute path: the manifest names files relatively.
        return {**facts, "error": exc.problem}
    except Exception as exc:  # a decoder bug on one odd file must not end the whole audit
        return {**facts, "error": f"unreadable image ({type(exc).__name__}: {exc})"}
    return {**facts, "phash": str(imagehash.phash(photo.image)), "width": photo.width,
            "height": photo.height, "mode": photo.mode, "format": photo.format,
            "exif_rotated": photo.exif_rotated, **quality(photo.image), "error": ""}


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


def inspect_files(paths: list[Path], *, workers: int | None = None,
                  progress: bool = True) -> list[dict]:
    """inspect_file over many files, in a process pool when that pays off."""
    from tqdm.auto import tqdm

    workers = workers or machine.usable_cpus()
    bar = dict(total=len(paths), desc="audit", unit="file", disable=not progress)
    if workers == 1 or len(paths) < _POOL_MIN_FILES:
        return [inspect_file(f) for f in tqdm(paths, **bar)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(inspect_file, paths, chunksize=16), **bar))
