"""Properties of the adaptive, group-aware split rule on synthetic audit tables (hypothesis)."""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from meterlib.data import splits
from meterlib.data.audit import Audit

RULE = dict(min_images_test=4, min_images_val=10, test_fraction=0.25, val_fraction=0.2)
SPLITS = {"train", "val", "test"}
# Quality flags leave a photo in play; the others keep it out of every split.
FLAGS = ["", "", "", "dark", "blurry;tiny", "duplicate", "truncated", "label_conflict;near_duplicate"]
CLASS_NAMES = st.sampled_from(["a", "b", "NaN", "Zähler 3", "x,y", "0", "long " * 8])
fast = settings(max_examples=40, deadline=None)


@st.composite
def audit_tables(draw) -> pd.DataFrame:
    """An audit table: per class, duplicate groups of 1-4 photos, each photo with some flags."""
    classes = draw(st.lists(CLASS_NAMES, min_size=1, max_size=4, unique=True))
    rows = []
    for cls in classes:
        sizes = draw(st.lists(st.integers(1, 4), min_size=1, max_size=14))
        for g, size in enumerate(sizes):
            rows += [{"path": f"raw/{cls}/{g}_{k}.jpg", "class": cls, "group": f"{cls}#{g}",
                      "flags": draw(st.sampled_from(FLAGS))} for k in range(size)]
    return pd.DataFrame(rows)


def split_of(files: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    return files.assign(split=splits.assign_splits(files, seed=seed, **RULE))


@fast
@given(audit_tables(), st.integers(0, 2**32 - 1))
def test_the_split_is_sound(files, seed):
    manifest = split_of(files, seed)
    assert splits.check_split(manifest) == []  # no photo or group in two splits, val/test in train
    used = manifest[manifest["split"] != "excluded"]
    assert used.empty or used.groupby("group")["split"].nunique().max() == 1
    trained = set(manifest.loc[manifest["split"] == "train", "class"])
    assert set(manifest.loc[manifest["split"].isin(["val", "test"]), "class"]) <= trained


@fast
@given(audit_tables())
def test_excluded_exactly_when_a_flag_excludes(files):
    manifest = split_of(files)
    excluded = splits.is_excluded(manifest)
    assert (manifest["split"] == "excluded").equals(excluded)
    assert set(manifest.loc[~excluded, "split"]) <= SPLITS


@fast
@given(audit_tables())
def test_small_classes_are_train_only(files):
    manifest = split_of(files)
    used = manifest[manifest["split"] != "excluded"]
    for cls, rows in used.groupby("class"):
        if len(rows) < RULE["min_images_test"]:
            assert set(rows["split"]) == {"train"}, cls
        if len(rows) < RULE["min_images_val"]:
            assert "val" not in set(rows["split"]), cls


@fast
@given(audit_tables(), st.integers(0, 1000))
def test_deterministic_for_a_seed_and_independent_of_row_order(files, seed):
    first = split_of(files, seed)["split"]
    assert first.equals(split_of(files, seed)["split"])
    shuffled = files.sample(frac=1, random_state=seed)
    assert split_of(shuffled, seed)["split"].sort_index().equals(first)


@fast
@given(audit_tables(), audit_tables(), st.integers(0, 1000))
def test_a_class_split_ignores_the_other_classes(files, others, seed):
    others = others[~others["class"].isin(files["class"])]
    alone = split_of(files, seed)["split"]
    together = split_of(pd.concat([files, others], ignore_index=True), seed)["split"]
    assert together.iloc[: len(files)].tolist() == alone.tolist()


@fast
@given(audit_tables(), st.data())
def test_manifest_holds_out_whole_classes(files, data):
    held = data.draw(st.lists(st.sampled_from(sorted(set(files["class"]))), unique=True))
    audit = Audit(files=files.assign(found_split=""), classes=sorted(set(files["class"])), layout="raw")
    manifest = splits.build_manifest(audit, holdout_classes=held, **RULE)
    assert manifest["path"].tolist() == files["path"].tolist()
    for cls, rows in manifest.groupby("class"):
        allowed = {"holdout", "excluded"} if cls in held else SPLITS | {"excluded"}
        assert set(rows["split"]) <= allowed, cls
    assert splits.check_split(manifest) == []
