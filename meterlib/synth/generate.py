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
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from meterlib.run import atomic
from meterlib.synth.catalog import BY_NAME, CATALOG
from meterlib.synth.counts import resolve_class_counts
from meterlib.synth.photo import image_rng, render_photo

# Bump when the renderer changes what a given seed produces: old folders then no longer match.
GENERATOR_VERSION = 1
MARKER_NAME = ".meterlib-synth.json"
MANIFEST_NAME = "synth_manifest.csv"
MIN_SIZE = 64
MAX_SIZE = 4096
# Dataset names that stand for the embedded synthetic data: only these are generated unasked.
EMBEDDED = ("demo", "smoke")
_CATALOG_NUMBER = {t.class_name: i for i, t in enumerate(CATALOG)}


def generate_dataset(dataset_dir: str | os.PathLike, *, n_images: int = 1975, n_classes: int = 38,
                     width: int = 720, height: int = 1280, seed: int = 0,
                     class_counts: Sequence[int] | Mapping[str, int] | None = None,
                     workers: int | None = None, progress: bool = True) -> Path:
    """Generate a new synthetic dataset folder (refuses any existing path); return its path."""
    spec = dataset_spec(n_images=n_images, n_classes=n_classes, width=width, height=height, seed=seed,
                        class_counts=class_counts)
    workers = _check_workers(workers)
    target = Path(dataset_dir)
    if target.exists() or target.is_symlink():
        raise FileExistsError(f"{target}: already exists; the generator only creates new folders "
                              f"(use ensure_dataset to reuse a generated one, or choose another folder)")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{target.name}.partial-{secrets.token_hex(4)}"
    partial.mkdir()  # unlike mkdtemp, keeps the user's umask for the final folder
    try:
        jobs = [(name, k, width, height, seed, str(partial)) for name, count in spec["class_counts"].items()
                for k in range(count)]
        for name in spec["class_counts"]:
            (partial / "raw" / name).mkdir(parents=True)
        rows = list(tqdm(_run(jobs, workers), total=len(jobs), desc="synthetic photos", disable=not progress))
        atomic.write_csv(partial / MANIFEST_NAME, pd.DataFrame(rows))
        atomic.write_json(partial / MARKER_NAME, spec)  # written last: its presence means complete
        if target.exists():  # someone created it meanwhile; never replace their folder
            raise FileExistsError(f"{target}: appeared while generating; left untouched")
        os.rename(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


def ensure_dataset(dataset_dir: str | os.PathLike, *, n_images: int = 1975, n_classes: int = 38,
                   width: int = 720, height: int = 1280, seed: int = 0,
                   class_counts: Sequence[int] | Mapping[str, int] | None = None,
                   workers: int | None = None, progress: bool = True) -> Path:
    """Generate the dataset if absent; reuse it if it was generated with the same parameters; else raise."""
    wanted = dataset_spec(n_images=n_images, n_classes=n_classes, width=width, height=height, seed=seed,
                          class_counts=class_counts)
    target = Path(dataset_dir)
    if not target.exists():
        return generate_dataset(target, n_images=n_images, n_classes=n_classes, width=width, height=height,
                                seed=seed, class_counts=class_counts, workers=workers, progress=progress)
    marker = target / MARKER_NAME
    if not marker.is_file():
        raise FileExistsError(f"{target}: exists but is not a generated synthetic dataset (no {MARKER_NAME}); "
                              f"choose another dataset name, or move the folder away to generate one here")
    try:
        stored = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{marker}: unreadable marker ({exc}); delete {target} to regenerate it") from None
    differences = [f"{key}: folder has {stored.get(key)!r}, requested {value!r}"
                   for key, value in wanted.items() if stored.get(key) != value]
    if differences:
        raise ValueError(f"{target}: generated with other parameters ({'; '.join(differences)}); "
                         f"pass the folder's parameters, choose another dataset name, or delete it to regenerate")
    return target


def needs_generation(dataset: str, dataset_dir: str | os.PathLike, *, generate: bool = False) -> bool:
    """True when synthetic photos belong at ``dataset_dir`` (missing, or made by the generator).

    A missing folder is generated only for the embedded datasets or when ``generate`` asks for it;
    any other missing dataset is an error, so a typo never trains on invented photos.
    """
    target = Path(dataset_dir)
    if target.exists():
        return (target / MARKER_NAME).is_file()
    if generate or dataset in EMBEDDED:
        return True
    raise FileNotFoundError(f"dataset not found: {target} (a dataset is a folder holding raw/ or "
                            f"processed/; a bare name means a folder under the data folder; "
                            f"only {' and '.join(EMBEDDED)} are generated when missing)")


def dataset_spec(*, n_images: int, n_classes: int, width: int, height: int, seed: int,
                 class_counts: Sequence[int] | Mapping[str, int] | None) -> dict:
    """Check the parameters and return what identifies the dataset (as stored in its marker)."""
    for name, value, low, high in (("width", width, MIN_SIZE, MAX_SIZE), ("height", height, MIN_SIZE, MAX_SIZE),
                                   ("seed", seed, 0, 2**63 - 1)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    counts = resolve_class_counts(n_images=n_images, n_classes=n_classes, class_counts=class_counts)
    return {"generator": "meterlib.synth", "generator_version": GENERATOR_VERSION, "n_images": n_images,
            "n_classes": n_classes, "width": width, "height": height, "seed": seed, "class_counts": counts}


def read_manifest(dataset_dir: str | os.PathLike) -> pd.DataFrame:
    """The manifest of a generated dataset (one row per image; ``path`` relative to the folder)."""
    path = Path(dataset_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no synthetic-data manifest here (was the folder made by generate_dataset?)")
    return pd.read_csv(path, dtype={"lcd_reading": str, "serial": str})


def _check_workers(workers: int | None) -> int:
    if workers is None:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer or None (all cores), got {workers!r}")
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
