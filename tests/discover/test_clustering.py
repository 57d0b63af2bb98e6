"""Discovery's clustering on synthetic feature blobs: new types found, known ones named, noise left, settings
chosen on known types alone."""

import dataclasses

import numpy as np
import pytest

from meterlib.discover import clustering
from meterlib.discover.clustering import KNOWN, NEW, NOISY, Settings
from meterlib.errors import DataError, SettingsError

DIMS = 48
SETTINGS = Settings(min_cluster_size=5, min_samples=3, pca_dims=16)


def _unit(rows):
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _blobs(centres, count, rng, spread=0.08):
    """``count`` unit vectors around each centre, and the centre's index for each."""
    points = np.concatenate([centre + spread * rng.standard_normal((count, DIMS)) / np.sqrt(DIMS) * 4
                             for centre in centres])
    return _unit(points), np.repeat(np.arange(len(centres)), count)


@pytest.fixture()
def world():
    """Six known types (30 training photos each), two new ones, and centres far apart."""
    rng = np.random.default_rng(0)
    centres = _unit(rng.standard_normal((8, DIMS)))
    reference, labels = _blobs(centres[:6], 30, rng)
    new, new_labels = _blobs(centres[6:], 12, rng)
    return {"rng": rng, "centres": centres, "reference": reference, "labels": labels, "new": new,
            "new_labels": new_labels}


def test_new_types_form_clusters_known_photos_are_named_and_strays_are_noise(world):
    rng = world["rng"]
    known, _ = _blobs(world["centres"][[2]], 8, rng)
    strays = -world["centres"][:4]  # each opposite a known type: far from every photo
    photos = np.concatenate([world["new"], known, strays])
    found = clustering.find_clusters(photos, world["reference"], world["labels"], settings=SETTINGS)
    new = slice(0, 24)
    assert len(found.new_types) == 2 and set(found.status[new]) == {NEW}
    assert [set(found.cluster[new][world["new_labels"] == t]) for t in (0, 1)] in ([{0}, {1}], [{1}, {0}])
    assert list(found.status[24:32]) == [KNOWN] * 8 and set(found.known_type[24:32]) == {2}
    assert set(found.cluster[24:32]) == {2}  # numbered after the new clusters
    assert list(found.status[32:]) == [NOISY] * 4 and list(found.cluster[32:]) == [-1] * 4
    assert set(found.known_type[:24]) == set(found.known_type[32:]) == {-1}
    for kind in found.new_types:
        assert sorted(kind.members) == sorted(np.flatnonzero(found.cluster == kind.cluster))
        assert len(kind.nearest) == clustering.NEAREST
        assert [s for _, s in kind.nearest] == sorted((s for _, s in kind.nearest), reverse=True)
    assert scores_of(found, world) == (1.0, 1.0, 1.0)


def scores_of(found, world):
    truth = np.concatenate([world["new_labels"] + 10, np.full(len(found.status) - 24, 2)])
    scores = clustering.score(found, truth, new=truth >= 10)
    assert (scores.new_clusters, scores.new_types, scores.false_new) == (2, 2, 0)
    return scores.purity, scores.adjusted_rand, scores.clustered


def test_many_photos_of_a_known_type_are_named_known_not_new(world):
    # More photos of type 4 than it has training photos: the cluster holds most of the type's photos.
    known, _ = _blobs(world["centres"][[4]], 50, world["rng"])
    found = clustering.find_clusters(known, world["reference"], world["labels"], settings=SETTINGS)
    assert found.new_types == [] and set(found.status) <= {KNOWN, NOISY}
    assert set(found.known_type[found.status == KNOWN]) == {4} and (found.status == KNOWN).mean() > 0.8


def test_each_photo_gets_its_nearest_training_photo_and_a_cluster_its_nearest_types(world):
    photos = world["new"][:12]
    found = clustering.find_clusters(photos, world["reference"], world["labels"], settings=SETTINGS)
    similarity = photos @ world["reference"].T
    assert np.allclose(found.similarity, similarity.max(axis=1), atol=1e-6)
    assert list(found.nearest_type) == list(world["labels"][similarity.argmax(axis=1)])
    kind, = found.new_types
    per_type = np.stack([similarity[:, world["labels"] == t].max(axis=1) for t in range(6)], axis=1).mean(axis=0)
    assert [label for label, _ in kind.nearest] == list(np.argsort(-per_type)[:3])
    # the medoid: the member with the least total distance to the others where they are clustered, first
    embedded = clustering._embedded(np.vstack([photos, world["reference"]]), dims=SETTINGS.pca_dims)[:12]
    assert kind.members[0] == np.argmin(np.linalg.norm(embedded[:, None] - embedded[None], axis=2).sum(axis=1))


def test_clustering_refuses_features_that_do_not_fit(world):
    with pytest.raises(DataError, match="fit the photos' 10 feature values"):
        clustering.find_clusters(np.ones((3, 10)), world["reference"], world["labels"])
    with pytest.raises(DataError, match="at least one photo"):
        clustering.find_clusters(np.ones((0, DIMS)), world["reference"], world["labels"])
    with pytest.raises(SettingsError, match="min_samples"):
        clustering.find_clusters(world["new"], world["reference"], world["labels"],
                                 settings=dataclasses.replace(SETTINGS, min_samples=0))


def test_the_settings_chooser_judges_only_held_out_known_types(world, monkeypatch):
    reference, labels = world["reference"], world["labels"]
    calls = []
    real = clustering.find_clusters

    def recording(photos, known, known_labels, *, settings):
        calls.append((photos, known, known_labels))
        return real(photos, known, known_labels, settings=settings)

    monkeypatch.setattr(clustering, "find_clusters", recording)
    grid = (SETTINGS, Settings(min_cluster_size=40, min_samples=3, pca_dims=16))
    tuning = clustering.choose_settings(reference, labels, grid=grid, held_out=2, rotations=2, photos_per_type=12)
    assert len(calls) == 2 * len(grid)
    held = []
    for photos, known, known_labels in calls:
        rows = [int(np.argmin(np.linalg.norm(reference - row, axis=1))) for row in photos]
        assert np.allclose(reference[rows], photos)  # every judged photo is a training photo
        judged_types = set(labels[rows])
        new_types = judged_types - set(known_labels)
        assert len(new_types) == 2  # held out: not among the known photos it is judged against
        assert not set(rows) & {int(np.argmin(np.linalg.norm(reference - row, axis=1))) for row in known}
        held.append(frozenset(new_types))
    assert len(set(held)) == 2 and not held[0] & held[-1]  # disjoint types in turn
    # a smallest cluster larger than the photos of each held-out type can never find them
    assert tuning.settings == SETTINGS
    assert list(tuning.table["min_cluster_size"]) == [5, 40]
    assert tuning.table.loc[0, "adjusted_rand"] > 0.9 and tuning.table.loc[1, "clustered"] == 0


def test_the_settings_chooser_needs_more_types_than_it_holds_out(world):
    with pytest.raises(SettingsError, match="more than 3 known types"):
        clustering.choose_settings(world["reference"][:90], world["labels"][:90], held_out=3)


def test_field_photos_that_outnumber_a_known_types_training_photos_stay_that_type():
    """A much-photographed known type: each of its four looks has 8 training photos and 24 field photos."""
    rng = np.random.default_rng(3)
    centres = _unit(rng.standard_normal((4, DIMS)))
    looks = _unit(centres[0] + 0.6 * _unit(rng.standard_normal((4, DIMS))))
    reference = np.concatenate([_blobs(centres[1:], 30, rng, spread=0.04)[0], _blobs(looks, 8, rng, spread=0.04)[0]])
    labels = np.concatenate([np.repeat([1, 2, 3], 30), np.zeros(32, int)])
    photos, _ = _blobs(looks, 24, rng, spread=0.04)
    found = clustering.find_clusters(photos, reference, labels, settings=SETTINGS)
    assert not found.new_types
    assert set(found.known_type[found.status == KNOWN]) == {0} and (found.status == KNOWN).mean() > 0.9
