"""Write a synthetic dataset folder: raw/<class>/*.jpg, a manifest of every image's nuisances, a marker.

A dataset is generated into a hidden sibling folder and renamed into place only when complete,
so an interrupted run never leaves a folder that looks finished. Existing folders are never
written into; that includes empty ones (an empty folder may be a mount point or a folder the
user made for their own photos, and it costs nothing to delete it by hand).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from meterlib.errors import DataError, OutputError, SettingsError
from meterlib.run import atomic, machine
from meterlib.run.paths import SYNTH_MARKER
from meterlib.synth.catalog import BY_NAME, CATALOG
from meterlib.synth.counts import resolve_class_counts
from meterlib.synth.photo import image_rng, render_photo

# Bump when the renderer changes what a given seed produces: old folders then no longer match.
GENERATOR_VERSION = 1
MANIFEST_NAME = "synth_manifest.csv"
MIN_SIZE = 64
MAX_SIZE = 4096
_CATALOG_NUMBER = {t.class_name: i for i, t in enumerate(CATALOG)}


@dataclass(frozen=True)
class DatasetSpec:
    """What a synthetic dataset holds: the same spec (and generator version) gives the same bytes."""

    n_images: int = 1975
    n_classes: int = 38
    width: int = 720
    height: int = 1280
    seed: int = 0
    class_counts: Sequence[int] | Mapping[str, int] | None = None  # None: a long tail like the field data

    def marker(self) -> dict:
        """Check the parameters and return what identifies the dataset (as stored in its marker)."""
        for name, value, low, high in (("width", self.width, MIN_SIZE, MAX_SIZE),
                                       ("height", self.height, MIN_SIZE, MAX_SIZE),
                                       ("seed", self.seed, 0, 2**63 - 1)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise SettingsError(f"{name} must be an integer, got {value!r}")
            if not low <= value <= high:
                raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
        counts = resolve_class_counts(n_images=self.n_images, n_classes=self.n_classes,
                                      class_counts=self.class_counts)
        return {"generator": "meterlib.synth", "generator_version": GENERATOR_VERSION,
                "n_images": self.n_images, "n_classes": self.n_classes, "width": self.width,
                "height": self.height, "seed": self.seed, "class_counts": counts}


def generate_dataset(dataset_dir: str | os.PathLike, spec: DatasetSpec = DatasetSpec(), *,
                     workers: int | None = None, progress: bool = True) -> Path:
    """Generate a new synthetic dataset folder (refuses any existing path); return its path."""
    record = spec.marker()
    workers = _check_workers(workers)
    target = Path(dataset_dir)
    if target.exists() or target.is_symlink():
        raise OutputError(f"{target}: already exists; the generator only creates new folders "
                          f"(use ensure_dataset to reuse a generated one, or choose another folder)")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{target.name}.partial-{secrets.token_hex(4)}"
    partial.mkdir()  # unlike mkdtemp, keeps the user's umask for the final folder
    try:
        jobs = [(name, k, spec.width, spec.height, spec.seed, str(partial))
                for name, count in record["class_counts"].items() for k in range(count)]
        for name in record["class_counts"]:
            (partial / "raw" / name).mkdir(parents=True)
        rows = list(tqdm(_run(jobs, workers), total=len(jobs), desc="synthetic photos", disable=not progress))
        atomic.write_csv(partial / MANIFEST_NAME, pd.DataFrame(rows))
        atomic.write_json(partial / SYNTH_MARKER, record)  # written last: its presence means complete
        if target.exists():  # someone created it meanwhile; never replace their folder
            raise OutputError(f"{target}: appeared while generating; left untouched")
        os.rename(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


def ensure_dataset(dataset_dir: str | os.PathLike, spec: DatasetSpec = DatasetSpec(), *,
                   workers: int | None = None, progress: bool = True) -> Path:
    """Generate the dataset if absent; reuse it if it was generated with the same parameters; else raise."""
    wanted = spec.marker()
    target = Path(dataset_dir)
    if not target.exists():
        return generate_dataset(target, spec, workers=workers, progress=progress)
    marker = target / SYNTH_MARKER
    if not marker.is_file():
        raise OutputError(f"{target}: exists but is not a generated synthetic dataset (no {SYNTH_MARKER}); "
                          f"choose another dataset name, or move the folder away to generate one here")
    try:
        stored = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{marker}: unreadable marker ({exc}); delete {target} to regenerate it") from None
    differences = [f"{key}: folder has {stored.get(key)!r}, requested {value!r}"
                   for key, value in wanted.items() if stored.get(key) != value]
    if differences:
        raise DataError(f"{target}: generated with other parameters ({'; '.join(differences)}); "
                        f"pass the folder's parameters, choose another dataset name, or delete it to regenerate")
    return target




def read_manifest(dataset_dir: str | os.PathLike) -> pd.DataFrame:
    """The manifest of a generated dataset (one row per image; ``path`` relative to the folder)."""
    path = Path(dataset_dir) / MANIFEST_NAME
    if not path.is_file():
        raise DataError(f"{path}: no synthetic-data manifest here (was the folder made by generate_dataset?)")
    return pd.read_csv(path, dtype={"lcd_reading": str, "serial": str})


def _check_workers(workers: int | None) -> int:
    if workers is None:
        return machine.usable_cpus()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SettingsError(f"workers must be a positive integer or None (all cores), got {workers!r}")
    return workers


def _run(jobs: list[tuple], workers: int):
    if workers == 1 or len(jobs) < 2 * workers:
        yield from map(_render_job, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(_render_job, jobs, chunksize=4)


def _render_job(job: tuple) -> dict:
    """Render, encode and write one image; return its manifest row (runs in a worker process)."""
    name, k, width, height, seed, root = job
    mtype = BY_NAME[name]
    photo, values = render_photo(mtype, image_rng(seed, _CATALOG_NUMBER[name], k), width=width, height=height)
    rel = f"raw/{name}/{name.lower()}_{k:04d}.jpg"
    photo.save(Path(root) / rel, "JPEG", quality=values["jpeg_quality"])
    return {"path": rel, "class": name, "family": mtype.family, "variant": mtype.variant, **values}
