"""Many photos at once, tolerantly: which files to read, what to call each photo, and decoding that never stops.

A photo that cannot be used becomes a DataError in its place, so one broken upload or file
costs only its own answer.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from meterlib.data import photos
from meterlib.errors import DataError, SettingsError
from meterlib.model import inference

NO_SUFFIX = "no suffix"  # Inputs.skipped's reasons besides a suffix such as '.heic'
HIDDEN = "hidden"


@dataclass(frozen=True)
class Inputs:
    """The files to predict, and what was skipped inside the named folders: {reason: count}."""

    files: list[Path]
    skipped: Mapping[str, int]  # a suffix like '.heic', NO_SUFFIX or HIDDEN (files and folders)

    def skipped_summary(self) -> str:
        """What was skipped in folders, e.g. '3 files skipped in folders: 2 .heic, ...'; '' when nothing was."""
        if not self.skipped:
            return ""
        formats = [f"{count} without a suffix" if reason == NO_SUFFIX else f"{count} {reason}"
                   for reason, count in sorted(self.skipped.items(), key=lambda item: (-item[1], item[0]))
                   if reason != HIDDEN]
        parts = [", ".join(formats) + " (not photo formats meterlib reads)"] if formats else []
        if HIDDEN in self.skipped:
            parts.append(f"{self.skipped[HIDDEN]} hidden (names starting with '.')")
        total = sum(self.skipped.values())
        return f"{total} {'file' if total == 1 else 'files'} skipped in folders: {', '.join(parts)}"


def expand_inputs(arguments: Sequence[str | os.PathLike]) -> Inputs:
    """The files to predict, sorted and without repeats: named files as given, photos found in named folders.

    Folders are searched recursively for photo names (``photos.is_image_name``); other files, and
    hidden files and folders (not looked into), are counted in ``Inputs.skipped``. A file named
    explicitly is kept whatever its suffix, and so is a path that does not exist, so that each
    gets its own error. Nothing at all to predict, or only paths that do not exist (a typo), is a
    DataError.
    """
    inputs = found_inputs(arguments)
    require_photos(inputs.files, arguments)
    return inputs


def found_inputs(arguments: Sequence[str | os.PathLike]) -> Inputs:
    """``expand_inputs``' files and skipped counts, without its check that there is something to predict."""
    found: set[Path] = set()
    skipped: Counter[str] = Counter()
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found.update(_photos_under(path, skipped))
        else:
            found.add(path)
    return Inputs(sorted(found, key=str), dict(skipped))


def require_photos(items: Sequence, arguments: Sequence[str | os.PathLike]) -> None:
    """DataError naming ``arguments`` when ``items`` hold nothing to predict: none, or only paths that do not
    exist (a typo); an item that is no local path (a URL) counts as something to try."""
    if not any(not isinstance(item, Path) or item.exists() for item in items):
        where = ", ".join(map(str, arguments)) or "(no paths given)"
        raise DataError(f"no photos found in {where}" + (" (no such file or folder)" if items else ""))


def _photos_under(folder: Path, skipped: Counter) -> list[Path]:
    """Non-hidden photo files under ``folder``; the others count in ``skipped`` (links to folders are not followed)."""
    found = []
    for root, dirnames, filenames in os.walk(folder):
        skipped.update(HIDDEN for name in dirnames if name.startswith("."))
        dirnames[:] = [name for name in dirnames if not name.startswith(".")]
        for name in filenames:
            if name.startswith("."):
                skipped[HIDDEN] += 1
            elif photos.is_image_name(name):
                found.append(Path(root, name))
            else:
                skipped[Path(name).suffix.lower() or NO_SUFFIX] += 1
    return found


def display_names(items: Sequence, names: Sequence[str] | None = None) -> list[str]:
    """What to call each photo: ``names`` when given, else a path as written, else its place and type."""
    if names is not None:
        names = [str(name) for name in names]
        if len(names) != len(items):
            raise SettingsError(f"names: got {len(names)} names for {len(items)} photos")
        return names
    return [str(item) if isinstance(item, (str, os.PathLike)) else f"photo {index + 1} ({type(item).__name__})"
            for index, item in enumerate(items)]


def decode_each(items: Sequence, names: Sequence[str], *, image_size: int, measure: bool = False) -> list:
    """Each photo decoded and squashed to ``image_size`` (with ``measure``: an ``inference.Measured``),
    or the DataError (naming it by ``names``) saying why not.

    An item that is already a DataError (a URL that could not be fetched, say) stays that photo's error.
    """
    decoded = iter(inference.load_resized_each([item for item in items if not isinstance(item, DataError)],
                                               image_size=image_size, measure=measure))
    pictures = [item if isinstance(item, DataError) else next(decoded) for item in items]
    return [DataError(picture.problem, path=name) if isinstance(picture, DataError) else picture
            for picture, name in zip(pictures, names)]
