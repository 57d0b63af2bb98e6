"""Many photos at once, tolerantly: which files to read, what to call each photo, and decoding that never stops.

A photo that cannot be used becomes an ImageError in its place, so one broken upload or file
costs only its own answer.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from meterlib.data import photos
from meterlib.errors import MeterlibError
from meterlib.model import inference

# A phone photo is 2-12 MB; a file far larger is no meter photo and would only fill the memory.
MAX_PHOTO_BYTES = 50 * 2**20


def expand_inputs(arguments: Sequence[str | os.PathLike]) -> list[Path]:
    """The files to predict, sorted and without repeats: named files as given, photos found in named folders.

    Folders are searched recursively for photo names (``photos.is_image_name``), skipping hidden
    files and folders. A file named explicitly is kept whatever its suffix, and so is a path that
    does not exist, so that each gets its own error. Nothing at all to predict, or only paths that
    do not exist (a typo), is a MeterlibError.
    """
    found: set[Path] = set()
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found.update(_photos_under(path))
        else:
            found.add(path)
    if not any(path.exists() for path in found):
        where = ", ".join(map(str, arguments)) or "(no paths given)"
        raise MeterlibError(f"no photos found in {where}" + (" (no such file or folder)" if found else ""))
    return sorted(found, key=str)


def _photos_under(folder: Path) -> list[Path]:
    """Non-hidden files with a photo suffix under ``folder`` (links to folders are not followed)."""
    found = []
    for root, dirnames, filenames in os.walk(folder):
        dirnames[:] = [name for name in dirnames if not name.startswith(".")]
        found += [Path(root, name) for name in filenames
                  if not name.startswith(".") and photos.is_image_name(name)]
    return found


def display_names(items: Sequence, names: Sequence[str] | None = None) -> list[str]:
    """What to call each photo: ``names`` when given, else a path as written, else its place and type."""
    if names is not None:
        names = [str(name) for name in names]
        if len(names) != len(items):
            raise ValueError(f"names: got {len(names)} names for {len(items)} photos")
        return names
    return [str(item) if isinstance(item, (str, os.PathLike)) else f"photo {index + 1} ({type(item).__name__})"
            for index, item in enumerate(items)]


def size_error(source, name: str) -> photos.ImageError | None:
    """An ImageError when a file or its bytes exceed MAX_PHOTO_BYTES; None otherwise (or when unknown)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        size = memoryview(source).nbytes
    elif isinstance(source, (str, os.PathLike)):
        try:
            info = os.stat(source)
        except (OSError, ValueError):  # missing, unreadable, a NUL in the name: the reader says which
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        size = info.st_size
    else:
        return None
    if size <= MAX_PHOTO_BYTES:
        return None
    return photos.ImageError(f"too large ({size / 2**20:.1f} MB; photos of up to "
                             f"{MAX_PHOTO_BYTES // 2**20} MB are read)", path=name)


def decode_each(items: Sequence, names: Sequence[str], *, image_size: int) -> list:
    """Each photo decoded and squashed to ``image_size``, or the ImageError that says why it cannot be used."""
    refused = {index: error for index, (item, name) in enumerate(zip(items, names))
               if (error := size_error(item, name)) is not None}
    kept = [item for index, item in enumerate(items) if index not in refused]
    decoded = iter(inference.load_resized_each(kept, image_size=image_size))
    return [refused[index] if index in refused else next(decoded) for index in range(len(items))]
