"""The seed-compatible processed/{train,val,test}/<class>/ tree: links (or copies) to the photos in raw/.

meterlib records what it made in a marker file and only ever replaces or removes those entries;
anything else found in processed/ is reported and left alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from meterlib.data.listing import printable_name
from meterlib.data.splits import SPLITS, counted, manifest_csv
from meterlib.errors import OutputError
from meterlib.run import atomic

TREE_MARKER = ".meterlib-split.json"


@dataclass
class TreeUpdate:
    """What materialise did in processed/, and what it found there that meterlib did not make."""

    created: int = 0
    removed: int = 0
    kept: int = 0
    foreign: list[str] = field(default_factory=list)  # not made by meterlib: never touched, not used
    conflicts: list[str] = field(default_factory=list)  # foreign files where a link should go

    def describe(self) -> list[str]:
        """The counts, then a sentence on foreign files and on conflicts, if any."""
        lines = [f"processed/: {self.created} created, {self.removed} removed, {self.kept} kept"]
        if self.foreign:
            lines.append(f"{counted(len(self.foreign), 'file')} in processed/ not made by meterlib "
                         f"(e.g. processed/{self.foreign[0]}): not used for training, left as found. "
                         "Photos belong in raw/<class>/; re-run notebook 01 to add them to the split.")
        if self.conflicts:
            lines.append(f"{counted(len(self.conflicts), 'file')} of these in the place of a link "
                         f"meterlib would make (e.g. processed/{self.conflicts[0]}): those photos are "
                         "missing from processed/; move the files away and re-run notebook 01.")
        return lines


def materialise(manifest: pd.DataFrame, dataset_dir: str | os.PathLike, *,
                copy: bool = False) -> TreeUpdate:
    """Build processed/{train,val,test}/<class>/ as links (or copies) to the photos; idempotent.

    Only entries that meterlib made are replaced or removed; anything else in the tree is
    reported in ``foreign`` (and in ``conflicts`` where it takes a link's place), never touched.
    """
    dataset_dir = Path(dataset_dir)
    root = dataset_dir / "processed"
    made = _made_entries(root, dataset_dir)
    wanted = _tree_entries(manifest)
    update = TreeUpdate()
    for entry in sorted(_existing_entries(root)):
        if entry not in made:
            update.foreign.append(entry)
        elif entry in wanted and _points_to(root / entry, dataset_dir / wanted[entry], copy=copy):
            update.kept += 1
        else:
            (root / entry).unlink()
            made.discard(entry)
            _remove_emptied(root / entry, root)
            update.removed += 1
    for entry, target in sorted(wanted.items()):
        if os.path.lexists(root / entry):
            if entry not in made:
                update.conflicts.append(entry)
            continue
        _place(dataset_dir / target, root / entry, copy=copy)
        made.add(entry)
        update.created += 1
    _write_marker(root / TREE_MARKER, manifest, copy=copy, entries=made)
    return update


def _made_entries(root: Path, dataset_dir: Path) -> set[str]:
    """The entries of processed/ that meterlib made and that are still what it made."""
    marker = root / TREE_MARKER
    if not marker.is_file():
        if os.path.lexists(root) and (not root.is_dir() or any(root.iterdir())):
            raise OutputError(f"{root} exists and was not made by meterlib; it is left alone "
                              "(move it away, or use it as the input by removing raw/)")
        return set()
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = {}  # unreadable: trust only what the link rule below recognises
    if not isinstance(record, dict) or not isinstance(record.get("entries"), list):
        # Markers before the entry list: a link is ours only if it is exactly what we would make.
        return {e for e in _existing_entries(root) if _links_into_raw(root / e, dataset_dir)}
    # A recorded entry the user has since replaced (by a file or a link of their own) is theirs.
    made_copies = bool(record.get("copies"))
    return {e for e in record["entries"] if isinstance(e, str)
            and (_is_copy(root / e) if made_copies else _links_into_raw(root / e, dataset_dir))}


def _links_into_raw(link: Path, dataset_dir: Path) -> bool:
    """True for a link whose text is exactly the relative path from its folder to a file in raw/."""
    if not link.is_symlink():
        return False
    text = os.readlink(link)
    target = os.path.normpath(os.path.join(link.parent, text))
    raw = os.path.normpath(dataset_dir / "raw")
    return (not os.path.isabs(text) and target.startswith(raw + os.sep)
            and os.path.relpath(target, link.parent) == text and not os.path.isdir(target))


def _is_copy(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _place(source: Path, link: Path, *, copy: bool) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if copy:
        shutil.copy2(source, link)
    else:
        link.symlink_to(os.path.relpath(source, link.parent))


def _write_marker(marker: Path, manifest: pd.DataFrame, *, copy: bool, entries: set[str]) -> None:
    digest = hashlib.sha256(manifest_csv(manifest).encode()).hexdigest()
    record = {"made_by": "meterlib", "manifest_sha256": digest, "copies": copy,
              "entries": sorted(entries)}
    try:
        unchanged = json.loads(marker.read_text(encoding="utf-8")) == record
    except (OSError, ValueError):
        unchanged = False
    if not unchanged:
        atomic.write_json(marker, record)


def _tree_entries(manifest: pd.DataFrame) -> dict[str, str]:
    # processed/<split>/<class>/<name>: nested raw folders fold into the file name.
    entries: dict[str, str] = {}
    for row in manifest[manifest["split"].isin(SPLITS)].to_dict("records"):
        name = "__".join(Path(row["path"]).parts[2:])
        entry = f"{row['split']}/{row['class']}/{name}"
        if entry in entries:  # only possible when names already contain '__'
            entry = f"{row['split']}/{row['class']}/{row['sha256'][:8]}__{name}"
        entries[entry] = row["path"]
    return entries


def _existing_entries(root: Path):
    """Files and links under ``root`` (links to folders included, never followed), hidden ones aside."""
    if not root.is_dir():
        return
    for folder, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if (Path(folder) / d).is_symlink()]:
            if not name.startswith("."):  # .DS_Store and our marker are nobody's photos
                yield printable_name((Path(folder) / name).relative_to(root).as_posix())


def _points_to(link: Path, source: Path, *, copy: bool) -> bool:
    if copy:
        return (_is_copy(link) and link.stat().st_size == source.stat().st_size
                and link.read_bytes() == source.read_bytes())
    return link.is_symlink() and os.readlink(link) == os.path.relpath(source, link.parent)


def _remove_emptied(path: Path, root: Path) -> None:
    """Remove the folders above ``path`` that its removal left empty, up to ``root``."""
    folder = path.parent
    while folder != root and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
