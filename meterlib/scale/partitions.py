"""A job's folder: its photos cut into numbered partitions, the manifest a resumed run must match, and which
partitions are finished.

A partition is finished when its result file exists. Every file is written atomically and a partition's
result file last, so a partition cut short (a killed worker, a stopped job) is simply not finished, and
running it again, anywhere, writes the same file: nothing is lost and nothing is counted twice.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import meterlib
from meterlib.errors import DataError, OutputError, SettingsError
from meterlib.run import atomic

PARTITION_SIZE = 256  # photos a task: enough to amortise its overhead, few enough that a lost one costs seconds
MANIFEST = "job.json"
RESUME_FLAG = "--resume"


@dataclass(frozen=True)
class Partition:
    """Photos predicted together, and the file that holds their result once finished."""

    index: int
    items: list  # what a worker reads: absolute paths (or URLs), so that its working folder does not matter
    names: list[str]  # what the results call them: as the user named them, as the serial command does
    result: Path

    def file(self, suffix: str) -> Path:
        """Another file of this partition: its result's name with ``suffix`` instead of the result's own."""
        return self.result.with_suffix(suffix)


@dataclass(frozen=True)
class Job:
    """A job's folder and every partition of it, finished or not."""

    folder: Path
    partitions: list[Partition]

    def unfinished(self) -> list[Partition]:
        """The partitions still to run."""
        return [partition for partition in self.partitions if not partition.result.is_file()]

    def report(self, *, ran: int, where: str) -> str:
        """One line: how many partitions the job has, how many ran ``where`` and how many were finished before."""
        total = len(self.partitions)
        return (f"{total} partition{'s' * (total != 1)} in {self.folder}: {ran} run {where}, "
                f"{total - ran} finished before")


def file_identity(path: str | os.PathLike) -> dict:
    """What tells a file from its replacement, for a manifest: its absolute path, size and time of change."""
    info = os.stat(path)
    return {"path": os.path.abspath(path), "bytes": info.st_size, "modified_ns": info.st_mtime_ns}


def plan(folder: str | os.PathLike, items: Sequence, *, result: str, settings: dict, resume: bool,
         size: int = PARTITION_SIZE, batch: int = 1) -> Job:
    """The job of ``items`` (paths or URLs, in the serial command's order) in ``folder``, ``size`` a partition.

    ``size`` is rounded up to whole batches of ``batch`` photos, so that every batch holds the photos the
    serial command's does: the network's float rounding depends on what else is in a batch.

    Partition ``i``'s result is ``result.format(i)`` (e.g. ``part-{:05d}.csv``). The manifest records
    the photos, ``settings`` (what shapes the results: the model file, top-k...) and ``size``; with
    ``resume`` a folder started with another manifest is refused and its finished partitions are kept;
    without, a job folder of ours is cleared and started again. A folder meterlib did not start is never touched.
    """
    folder, size = Path(folder), math.ceil(size / batch) * batch
    names = [str(item) for item in items]
    absolute = [Path(os.path.abspath(item)) if isinstance(item, os.PathLike) else item for item in items]
    manifest = {"job": result, "settings": settings, "partition_size": size, "photos": len(names),
                "photos_sha256": hashlib.sha256(json.dumps([names, list(map(str, absolute))]).encode()).hexdigest()}
    existing = _manifest(folder)
    if resume and existing is not None and existing != manifest:
        changed = sorted(key for key in manifest.keys() | existing.keys() if manifest.get(key) != existing.get(key))
        raise SettingsError(f"{folder}: holds a job with other {', '.join(changed)}; {RESUME_FLAG} continues only "
                            f"the same job (run without {RESUME_FLAG} to start this one over)")
    if not resume or existing is None:
        _start(folder, existing, pattern=result)
        atomic.write_json(folder / MANIFEST, {**manifest, "meterlib": meterlib.__version__})
    partitions = [Partition(index, absolute[start:start + size], names[start:start + size],
                            folder / result.format(index))
                  for index, start in enumerate(range(0, len(names), size))]
    return Job(folder, partitions)


def _manifest(folder: Path) -> dict | None:
    """The manifest of a job folder (without the version that wrote it); None when ``folder`` holds none."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise OutputError(f"{folder / MANIFEST}: cannot be read as a job manifest ({exc}); remove the folder "
                          "to start over") from None
    manifest.pop("meterlib", None)
    return manifest


def _start(folder: Path, existing: dict | None, *, pattern: str) -> None:
    """Make ``folder`` an empty job folder: a job of ours has its partition files removed; another folder
    that holds files is refused."""
    if existing is None and folder.is_dir() and any(folder.iterdir()):
        raise OutputError(f"{folder}: holds files that are not a meterlib job; give another output, or empty it")
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: is a file; the job's partitions need a folder of this name")
    folder.mkdir(parents=True, exist_ok=True)
    stem = pattern.split("{")[0]  # e.g. 'part-': every file a partition of an earlier run left
    for path in folder.iterdir():
        if path.name.startswith(stem) or path.name == MANIFEST:
            path.unlink()


def results(folder: str | os.PathLike) -> list[Path]:
    """The result files of a finished job's partitions, in order; DataError when ``folder`` is no job's or
    some partition is unfinished."""
    folder = Path(folder)
    manifest = _manifest(folder)
    if manifest is None:
        raise DataError(f"{folder}: holds no {MANIFEST}: not the folder of a meterlib job")
    count = math.ceil(manifest["photos"] / manifest["partition_size"])
    files = [folder / manifest["job"].format(index) for index in range(count)]
    missing = [file.name for file in files if not file.is_file()]
    if missing:
        raise DataError(f"{folder}: {len(missing)} of {count} partitions are unfinished (the first: {missing[0]}); "
                        f"run the command again with {RESUME_FLAG}")
    return files


def merge_text(files: Sequence[Path], target: str | os.PathLike) -> Path:
    """Text files with one header line (e.g. CSV) as one file, the header once, in order, atomically."""
    with atomic.atomic_path(target) as tmp, open(tmp, "w", encoding="utf-8", newline="") as out:
        for number, file in enumerate(files):
            with open(file, encoding="utf-8", newline="") as part:
                header = part.readline()
                if number == 0:
                    out.write(header)
                out.writelines(part)
    return Path(target)
