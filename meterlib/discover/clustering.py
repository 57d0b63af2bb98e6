"""New types among photos: their features clustered together with the known types' training features.

The photos' L2-normalised features and the checkpoint's ``reference_features`` are reduced
together by a PCA and clustered by HDBSCAN. A cluster is a known type when known training photos
make up at least ``KNOWN_SHARE`` of it, or when it holds at least ``KNOWN_SHARE`` of one type's
training photos (so a folder full of photos of a known type is not reported as a new one); the
other clusters are new types, and photos in no cluster are noise. HDBSCAN's settings are chosen
on the training features alone, by holding out known types as if they were new
(``choose_settings``), never on the photos being judged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from meterlib.data.adding import NOISE
from meterlib.errors import DataError, SettingsError
from meterlib.model import inference

NEW, KNOWN, NOISY = "new", "known", "noise"  # a photo's status (members.csv)
# A new type's photos find no training photos of their own in their cluster, while field photos of a
# known type may outnumber its training photos there: at 0.5, the demo's own test photos of one type
# made four "new" clusters beside its training photos; a quarter is known enough.
KNOWN_SHARE = 0.25
NEAREST = 3  # known types listed beside a new cluster


@dataclass(frozen=True)
class Settings:
    """How features are clustered: HDBSCAN's smallest cluster and neighbourhood, and the PCA's dimensions."""

    min_cluster_size: int
    min_samples: int
    pca_dims: int  # capped by the number of photos and of feature values


# Chosen by ``choose_settings`` (its defaults) on the demo model's training features, 35 types: of the
# settings with no false new type, the best adjusted Rand index (0.38; purity 0.88, 56 % clustered).
DEFAULT_SETTINGS = Settings(min_cluster_size=5, min_samples=2, pca_dims=32)
GRID = tuple(Settings(size, samples, dims) for size in (4, 5, 8, 12) for samples in (2, 3, 5)
             for dims in (16, 32, 64))


@dataclass(frozen=True)
class NewType:
    """A cluster of photos unlike every known type: its number, its photos (medoid first), the known types nearest."""

    cluster: int
    members: np.ndarray  # indices into the photos, the medoid first, then in input order
    nearest: list[tuple[int, float]]  # (known class index, mean over members of the best cosine similarity)


@dataclass(frozen=True)
class Clusters:
    """Where each photo went: its cluster and status, the known type of a known cluster, its nearest known type."""

    cluster: np.ndarray  # (n,) cluster number, NOISE for none; new clusters first, largest first
    status: np.ndarray  # (n,) NEW, KNOWN or NOISY
    known_type: np.ndarray  # (n,) class index of the photo's known cluster, -1 for the others
    nearest_type: np.ndarray  # (n,) class index of the most alike training photo
    similarity: np.ndarray  # (n,) cosine similarity to that photo (full features)
    new_types: list[NewType]
    settings: Settings


@dataclass(frozen=True)
class Scores:
    """A clustering against the truth: how pure and complete its new clusters are, and the false ones."""

    purity: float  # photos in new clusters that share their cluster's majority type (NaN: no new cluster)
    adjusted_rand: float  # of the new-type photos' clusters (noise and known ones each a photo apart)
    clustered: float  # share of the new-type photos in some new cluster
    new_clusters: int
    new_types: int  # how many new types there really are
    false_new: int  # new clusters made mostly of photos of known types


@dataclass(frozen=True)
class Tuning:
    """What ``choose_settings`` found: the settings chosen and every setting's mean scores (one row each)."""

    settings: Settings
    table: pd.DataFrame


def find_clusters(photos, reference, labels, *, settings: Settings = DEFAULT_SETTINGS) -> Clusters:
    """Cluster the photos' features (n x d, L2-normalised) with known training features (m x d) and their classes."""
    photos, reference = np.asarray(photos, np.float32), np.asarray(reference, np.float32)
    labels = np.asarray(labels, np.int64).reshape(-1)
    if photos.ndim != 2 or not len(photos):
        raise DataError(f"need the features of at least one photo (n x d), got shape {photos.shape}")
    if reference.ndim != 2 or reference.shape[1] != photos.shape[1] or len(reference) != len(labels):
        raise DataError(f"the known photos' features {reference.shape} and labels ({len(labels)}) do not "
                        f"fit the photos' {photos.shape[1]} feature values")
    for field in dataclasses.fields(settings):
        inference.positive_int(field.name, getattr(settings, field.name))
    n = len(photos)
    embedded = _embedded(np.vstack([photos, reference]), dims=settings.pca_dims)
    found = _hdbscan(embedded, settings)
    best = _best_per_type(photos, reference, labels)  # (n, classes)
    per_type = np.bincount(labels)
    new, known = [], {}  # HDBSCAN's cluster -> photos' indices; -> (class index, photos' indices)
    for label in np.unique(found[:n][found[:n] != NOISE]):
        members = np.flatnonzero(found == label)
        mine, theirs = members[members < n], labels[members[members >= n] - n]
        majority = np.bincount(theirs).argmax() if len(theirs) else -1
        if len(theirs) and (len(theirs) >= KNOWN_SHARE * len(members)
                            or np.sum(theirs == majority) >= KNOWN_SHARE * per_type[majority]):
            known[label] = (int(majority), mine)
        else:
            new.append(mine)
    new.sort(key=len, reverse=True)  # stable: HDBSCAN's order among equals
    cluster = np.full(n, NOISE)
    status = np.full(n, NOISY, dtype=object)
    known_type = np.full(n, -1)
    new_types = []
    for number, mine in enumerate(new):
        cluster[mine], status[mine] = number, NEW
        medoid = _medoid(embedded[mine])
        order = np.concatenate([[mine[medoid]], np.delete(mine, medoid)])
        likeness = best[mine].mean(axis=0)
        nearest = [(int(i), float(likeness[i])) for i in np.argsort(-likeness, kind="stable")[:NEAREST]
                   if np.isfinite(likeness[i])]
        new_types.append(NewType(number, order, nearest))
    for number, (majority, mine) in enumerate(known.values(), start=len(new)):
        cluster[mine], status[mine], known_type[mine] = number, KNOWN, majority
    return Clusters(cluster, status.astype(str), known_type, best.argmax(axis=1), best.max(axis=1),
                    new_types, settings)


def _embedded(features: np.ndarray, *, dims: int) -> np.ndarray:
    """The features reduced by a PCA to ``dims`` values (fewer for few photos)."""
    from sklearn.decomposition import PCA

    # Not scaled back to length 1: a photo unlike all the others lies mostly outside the kept
    # dimensions, and scaling its small remainder up would place it inside some cluster.
    return PCA(n_components=min(dims, *features.shape), random_state=0).fit_transform(features)


def _hdbscan(points: np.ndarray, settings: Settings) -> np.ndarray:
    """HDBSCAN's cluster of each point, NOISE for none."""
    from sklearn.cluster import HDBSCAN

    size = min(settings.min_cluster_size, len(points))
    return HDBSCAN(min_cluster_size=max(2, size), min_samples=min(settings.min_samples, len(points)),
                   copy=True).fit_predict(points)


def _best_per_type(photos: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n, classes): each photo's best cosine similarity to each type's training photos (-inf: a type without any)."""
    similarity = photos @ reference.T
    best = np.full((len(photos), labels.max() + 1), -np.inf, dtype=np.float32)
    for label in np.unique(labels):
        best[:, label] = similarity[:, labels == label].max(axis=1)
    return best


def _medoid(points: np.ndarray) -> int:
    """The row with the smallest summed distance to the others."""
    return int(np.argmin(np.linalg.norm(points[:, None] - points[None], axis=2).sum(axis=1)))


def score(found: Clusters, truth, *, new) -> Scores:
    """``found`` against the photos' true classes ``truth``; ``new`` marks the photos of new types."""
    from sklearn.metrics import adjusted_rand_score

    truth, new = np.asarray(truth), np.asarray(new, dtype=bool)

    in_new = found.status == NEW
    majority_share, false_new = [], 0
    for kind in found.new_types:
        _, counts = np.unique(truth[kind.members], return_counts=True)
        majority_share.append(counts.max())
        false_new += int(np.mean(new[kind.members]) < 0.5)  # mostly photos of known types
    # A photo in no new cluster stands alone, so missing it costs the index as splitting it off would.
    alone = -1 - np.arange(len(truth))
    guessed = np.where(in_new, found.cluster, alone)[new]
    return Scores(purity=sum(majority_share) / in_new.sum() if in_new.any() else float("nan"),
                  adjusted_rand=float(adjusted_rand_score(truth[new], guessed)) if new.any() else float("nan"),
                  clustered=float(in_new[new].mean()) if new.any() else float("nan"),
                  new_clusters=len(found.new_types), new_types=len(np.unique(truth[new])), false_new=false_new)


def choose_settings(reference, labels, *, grid=GRID, held_out: int = 3, rotations: int = 5,
                    photos_per_type: int = 20, known_share: float = 0.2, seed: int = 0) -> Tuning:
    """The settings of ``grid`` that find known types best when they are held out as if new, on training features alone.

    Each rotation holds out ``held_out`` types (disjoint, seeded): up to ``photos_per_type`` of
    their photos, with ``known_share`` of the other types' photos, are judged against the rest.
    Chosen: the fewest false new clusters on average, then the best adjusted Rand index.
    """
    reference, labels = np.asarray(reference, np.float32), np.asarray(labels, np.int64).reshape(-1)
    held_out = inference.positive_int("held_out", held_out)
    photos_per_type = inference.positive_int("photos_per_type", photos_per_type)
    if not 0 <= known_share < 1:
        raise SettingsError(f"known_share must be at least 0 and below 1, got {known_share!r}")
    rng = np.random.default_rng(seed)
    types = rng.permutation(np.unique(labels))
    rotations = min(inference.positive_int("rotations", rotations), (len(types) - 1) // held_out)
    if rotations < 1 or not grid:
        raise SettingsError(f"choosing settings needs more than {held_out} known types and a grid of settings; "
                            f"got {len(types)} types and {len(grid)} settings")
    rows = []
    for rotation in range(rotations):
        new_types = types[rotation * held_out:(rotation + 1) * held_out]
        new = np.zeros(len(labels), dtype=bool)
        for label in new_types:
            new[rng.permutation(np.flatnonzero(labels == label))[:photos_per_type]] = True
        known = ~np.isin(labels, new_types)
        judged = new | (known & (rng.random(len(labels)) < known_share))
        kept = known & ~judged
        for settings in grid:
            found = find_clusters(reference[judged], reference[kept], labels[kept], settings=settings)
            rows.append({**dataclasses.asdict(settings), "rotation": rotation,
                         **dataclasses.asdict(score(found, labels[judged], new=new[judged]))})
    names = [field.name for field in dataclasses.fields(Settings)]
    table = (pd.DataFrame(rows).drop(columns="rotation").groupby(names, sort=False).mean().reset_index()
             .sort_values(["false_new", "adjusted_rand"], ascending=[True, False], kind="stable", ignore_index=True))
    return Tuning(Settings(**{name: int(table.loc[0, name]) for name in names}), table)
