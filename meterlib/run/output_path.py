"""Where a command may write its result: checked before any work, so that a user's file is never lost.

An output is refused when it is one of the command's inputs (a photo, the model), when it is a
folder, a device or lies below a file, when its folder cannot be written, and when it exists but
was not written by meterlib, unless the user says ``--overwrite``. A link is written through:
the file it points to is replaced, the link stays.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from meterlib.errors import OutputError

OVERWRITE_FLAG = "--overwrite"


def check(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (),
          ours: Callable[[Path], bool], overwrite: bool = False) -> Path:
    """The file to write for the output ``path`` (a link resolved), or OutputError saying why not.

    ``inputs``: files the command reads, never to be replaced; ``ours(path)``: whether an existing
    file was written by meterlib (and so may be replaced without ``overwrite``).
    """
    shown = os.fspath(path)
    target = Path(os.path.realpath(path))
    try:
        info = target.stat()
    except (FileNotFoundError, NotADirectoryError):  # the latter: a folder on the way is a file
        _check_folder(Path(shown).parent, shown)  # as the user wrote it, to be named so in the message
        return target
    except OSError as exc:  # e.g. a component of the path is a file: "Not a directory"
        raise OutputError(f"{shown}: cannot be written ({exc.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise OutputError(f"{shown}: is a folder; give the name of a file to write")
    if not stat.S_ISREG(info.st_mode):
        raise OutputError(f"{shown}: is not a regular file (a FIFO, socket or device); give another name")
    if any(_same_file(info, item) for item in inputs):
        raise OutputError(f"{shown}: is one of this command's inputs; give another name")
    _check_folder(target.parent, shown)
    if not overwrite and not ours(target):
        raise OutputError(f"{shown}: exists and was not written by meterlib; give another name, "
                          f"or {OVERWRITE_FLAG} to replace it")
    return target


def _check_folder(folder: Path, shown: str) -> None:
    """OutputError unless ``folder`` (or, when it does not exist yet, its nearest ancestor) takes new files."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{shown}: cannot be written ({existing} is a file, not a folder)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{shown}: cannot be written (no permission to write in {existing})")


def _same_file(info: os.stat_result, other: str | os.PathLike) -> bool:
    try:
        theirs = os.stat(other)
    except (OSError, ValueError):
        return False
    return (info.st_dev, info.st_ino) == (theirs.st_dev, theirs.st_ino)


def starts_with(prefix: bytes) -> Callable[[Path], bool]:
    """An ``ours`` test: the file begins with ``prefix`` (e.g. the header line meterlib writes)."""
    def test(path: Path) -> bool:
        try:
            with open(path, "rb") as handle:
                return handle.read(len(prefix)) == prefix
        except OSError:
            return False
    return test
