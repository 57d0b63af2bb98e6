"""Suspect labels: planted swaps in out-of-fold-like probabilities are found, clean photos left alone."""

import numpy as np
import pandas as pd
import pytest
import torch

from meterlib.errors import DataError
from meterlib.evaluate import suspects

N_CLASSES = 38
CLASS_NAMES = [f"meter_{i:02d}" for i in range(N_CLASSES)]


def _oof_with_swaps(seed, *, n=1000, swaps=30):
    """Probabilities like a ~92%-accurate model's out of fold, and labels with planted swaps.

    Each class has a look-alike that takes some of its probability; half the swaps relabel a
    photo as its class's look-alike (the usual human mistake), half as any other class.
    """
    rng = np.random.default_rng(seed)
    sizes = rng.integers(8, 60, N_CLASSES)
    true = rng.choice(N_CLASSES, n, p=sizes / sizes.sum())
    true[:2 * N_CLASSES] = np.tile(np.arange(N_CLASSES), 2)  # every class has photos
    look_alike = rng.permutation(N_CLASSES)
    rows = np.arange(n)
    strength = rng.gamma(4.0, 2.0, n)  # how clearly each photo shows its class
    logits = rng.normal(size=(n, N_CLASSES))
    logits[rows, true] += strength
    logits[rows, look_alike[true]] += 0.3 * strength * rng.uniform(0.5, 1.5, n)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    swapped = rng.choice(n, swaps, replace=False)
    labels = true.copy()
    other = (true[swapped] + rng.integers(1, N_CLASSES, swaps)) % N_CLASSES
    labels[swapped] = np.where(rng.uniform(size=swaps) < 0.5, look_alike[true[swapped]], other)
    return probs, labels, swapped, true


def _flagged(table):
    return table["photo"].str.removeprefix("photo_").astype(int).to_numpy()


def test_most_planted_swaps_are_found_with_few_false_alarms():
    # Three draws of 1,000 photos with 30 swaps each, pooled: one draw's count varies by about 3.
    found = false = 0
    for seed in (0, 1, 2):
        probs, labels, swapped, true = _oof_with_swaps(seed)
        photos = [f"photo_{i}" for i in range(len(labels))]
        table = suspects.suspect_labels(probs, labels, class_names=CLASS_NAMES, photos=photos)
        flagged = _flagged(table)
        hit = np.isin(flagged, swapped)
        found, false = found + hit.sum(), false + (~hit).sum()
        # Most suspect first; each suspect's model prefers another class: for a swap, mostly the true one.
        assert table["label_quality"].is_monotonic_increasing and (table["label_quality"] < 0.5).all()
        assert (table["given_class"] != table["suggested_class"]).all()
        suggested_true = table["suggested_class"][hit] == [CLASS_NAMES[c] for c in true[flagged[hit]]]
        assert suggested_true.mean() > 0.9
    assert found >= 3 * 20  # of 90 swaps (about 25 of 30 per draw on average)
    assert false < 3 * 10  # among 2,910 clean photos


def test_the_inputs_are_left_unchanged():
    probs, labels, _, _ = _oof_with_swaps(0, n=400, swaps=10)
    probs32 = probs.astype(np.float32)  # float32 rows sum to 1 only roughly: renormalised on a copy
    photos = [f"photo_{i}" for i in range(400)]
    before = (probs32.copy(), labels.copy(), list(photos))
    table = suspects.suspect_labels(probs32, labels, class_names=CLASS_NAMES, photos=photos)
    np.testing.assert_array_equal(probs32, before[0])
    np.testing.assert_array_equal(labels, before[1])
    assert photos == before[2]
    assert isinstance(table, pd.DataFrame) and list(table.columns) == suspects.COLUMNS and len(table) > 0


def test_clean_labels_give_few_or_no_suspects():
    probs, _, _, true = _oof_with_swaps(1)
    table = suspects.suspect_labels(probs, true, class_names=CLASS_NAMES, photos=list(range(len(true))))
    assert len(table) < 10


def test_unusable_inputs_are_refused_with_the_reason():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    names = ["a", "b"]
    with pytest.raises(DataError, match=r"at least 2 photos of every class; too few for 'b' \(1\)"):
        suspects.suspect_labels(probs, [0, 0, 0, 1], class_names=names, photos=list("wxyz"))
    with pytest.raises(DataError, match=r"too few for 'a' \(0\)"):
        suspects.suspect_labels(probs, [1, 1, 1, 1], class_names=names, photos=list("wxyz"))
    with pytest.raises(DataError, match="each row summing to 1"):
        suspects.suspect_labels(probs * 2, [0, 0, 1, 1], class_names=names, photos=list("wxyz"))
    with pytest.raises(DataError, match="one column per class"):
        suspects.suspect_labels(probs, [0, 0, 1, 1], class_names=["a", "b", "c"], photos=list("wxyz"))
    with pytest.raises(DataError, match="one label and one photo per row"):
        suspects.suspect_labels(probs, [0, 0, 1, 1], class_names=names, photos=list("wxy"))
    with pytest.raises(DataError, match="class indices"):
        suspects.suspect_labels(probs, [0, 0, 1, 2], class_names=names, photos=list("wxyz"))


def _checkpoint_out_of_fold(n: int, classes: list[str]) -> dict:
    """A checkpoint's out_of_fold field: random logits, labels cycling through the classes."""
    logits = np.random.default_rng(0).normal(scale=2.0, size=(n, len(classes)))
    return {"logits": torch.tensor(logits, dtype=torch.float32),
            "labels": torch.arange(n, dtype=torch.int64) % len(classes), "photos": [f"p{i}.jpg" for i in range(n)],
            "fold": torch.arange(n, dtype=torch.int64) % 3, "method": "3-fold cross-fitting"}


def test_suspect_table_of_a_checkpoint_skips_with_a_reason():
    classes = ["zeta", "alpha", "mu", "nu"]
    table, note = suspects.suspect_table({"class_names": classes}, temperature=1.0)
    assert table is None and "no out-of-fold" in note
    oof = _checkpoint_out_of_fold(5, classes)  # one photo of most classes: cleanlab's requirement fails
    table, note = suspects.suspect_table({"class_names": classes, "out_of_fold": oof}, temperature=1.0)
    assert table is None and note.startswith("skipped") and "at least" in note


def test_suspects_are_ranked_by_the_feature_probabilities_when_stored():
    classes = ["zeta", "alpha", "mu", "nu"]
    oof = _checkpoint_out_of_fold(40, classes)
    labels = oof["labels"].numpy()
    confident = np.full((40, len(classes)), 0.01)
    confident[np.arange(40), labels] = 0.97
    oof["logits"] = torch.tensor(np.log(confident), dtype=torch.float32)  # agrees with every label
    wrong = (labels + 1) % len(classes)
    flipped = confident.copy()
    flipped[:3] = 0.01
    flipped[np.arange(3), wrong[:3]] = 0.97  # the feature model puts photos 0-2 in another class
    content = {"class_names": classes, "out_of_fold": oof}
    table, _ = suspects.suspect_table(content, temperature=1.0)
    assert table.empty
    oof["feature_probs"] = torch.tensor(flipped)
    table, note = suspects.suspect_table(content, temperature=1.0)
    assert sorted(table["photo"]) == ["p0.jpg", "p1.jpg", "p2.jpg"] and note.startswith("3 suspect labels")
    suggested = table.set_index("photo").loc[["p0.jpg", "p1.jpg", "p2.jpg"], "suggested_class"]
    assert suggested.tolist() == [classes[i] for i in wrong[:3]]
