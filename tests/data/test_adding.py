"""Filing named clusters under raw/: links or copies, the user's files untouched, all-or-nothing, idempotent, audited."""

import csv
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import random_photos
from PIL import Image

from meterlib.data import adding, audit, splits
from meterlib.errors import DataError

# Small enough for every class to get train, val and test shares, so that moved splits would show.
RULE = dict(min_images_test=5, min_images_val=10, test_fraction=0.25, val_fraction=0.2)
SIDE = 72  # above the audit's min_side, so the photos carry no 'tiny' flag


@pytest.fixture()
def dataset(tmp_path) -> Path:
    """ds/raw/OLD1 and ds/raw/OLD2 with 14 random photos each."""
    for seed, cls in enumerate(["OLD1", "OLD2"]):
        (tmp_path / "ds" / "raw" / cls).mkdir(parents=True)
        random_photos.save(tmp_path / "ds" / "raw" / cls, 14, width=SIDE, height=SIDE, seed=seed,
                           name=f"{cls.lower()}_{{}}.png")
    return tmp_path / "ds"


def user_photos(folder: Path, count: int, *, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return random_photos.save(folder, count, width=SIDE, height=SIDE, seed=seed, name=f"s{seed}_{{}}.png")


def discovered(folder: Path, clusters: dict[int, list[Path]], names: dict[int, str]) -> Path:
    """members.csv and new_types.csv as `meterlib discover` writes them, with ``names`` filled in."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "members.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["cluster", "file", "status", "known_type", "nearest_type", "similarity"])
        out.writerows([c, str(p), "new", "", "OLD1", "0.412"] for c, files in clusters.items() for p in files)
    with open(folder / "new_types.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["cluster", "photos", "nearest_type", "nearest_similarity", "contact_sheet", "name"])
        out.writerows([c, len(clusters.get(c, [])), "OLD1", "0.412", f"contact_sheet_{c}.png", name]
                      for c, name in names.items())
    return folder / "new_types.csv"


def add(new_types: Path, dataset: Path, **options) -> adding.Addition:
    return adding.add_types(new_types, dataset_dir=dataset, rule=RULE, progress=False, **options)


def entries(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: a link's text, a file's content hash (what 'nothing written' compares)."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            found[path.relative_to(folder).as_posix()] = (
                f"-> {os.readlink(path)}" if path.is_symlink() else
                "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def fingerprints(files: list[Path]) -> list[tuple]:
    return [(hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns, p.stat().st_mode) for p in files]


def test_named_cluster_becomes_links_to_the_untouched_photos(dataset, tmp_path):
    sources = user_photos(tmp_path / "user", 6, seed=10)
    before = fingerprints(sources)
    report = add(discovered(tmp_path / "found", {0: sources}, {0: "NEWA"}), dataset)
    for source in sources:
        link = dataset / "raw" / "NEWA" / source.name
        assert link.is_symlink() and os.readlink(link) == str(source.absolute())
    assert fingerprints(sources) == before and sorted(p.name for p in (tmp_path / "user").iterdir()) == \
        sorted(p.name for p in sources)
    assert report.new_types == ["NEWA"] and report.photos["added"].all()
    # The audit follows the links: it hashed the user's photos and found them usable.
    files = audit.audit_dataset(dataset, progress=False).files.set_index("path")
    assert [files.at[f"raw/NEWA/{p.name}", "sha256"] for p in sources] == [b[0] for b in before]
    assert set(report.photos["split"]) == {"train", "test"}  # 6 photos: train and test under RULE
    assert (report.photos["flags"] == "").all()
    assert "NEWA (new type): 6 photos added, 0 already there" in report.describe()


def test_copy_files_copies(dataset, tmp_path):
    sources = user_photos(tmp_path / "user", 3, seed=10)
    before = fingerprints(sources)
    add(discovered(tmp_path / "found", {0: sources}, {0: "NEWA"}), dataset, copy=True)
    for source in sources:
        copied = dataset / "raw" / "NEWA" / source.name
        assert not copied.is_symlink() and copied.read_bytes() == source.read_bytes()
    assert fingerprints(sources) == before


def test_existing_name_adds_photos_and_equal_names_merge(dataset, tmp_path):
    first, second, skipped = (user_photos(tmp_path / "user", 2, seed=s) for s in (10, 11, 12))
    report = add(discovered(tmp_path / "found", {0: first, 1: skipped, 2: second},
                            {0: "OLD1", 1: "  ", 2: "OLD1"}), dataset)
    assert sorted(p.name for p in (dataset / "raw" / "OLD1").iterdir() if p.is_symlink()) == \
        sorted(p.name for p in first + second)
    assert not any(p.name in os.listdir(dataset / "raw" / "OLD1") for p in skipped)
    assert report.new_types == [] and "OLD1 (existing type): 4 photos added" in report.describe()


def test_split_of_a_new_type_follows_the_rule_and_other_classes_keep_theirs(dataset, tmp_path):
    def split_of_old():
        manifest = splits.build_manifest(audit.audit_dataset(dataset, progress=False), **RULE)
        return manifest.loc[manifest["class"] != "NEWA", ["path", "split"]].reset_index(drop=True)

    before = split_of_old()
    report = add(discovered(tmp_path / "found", {0: user_photos(tmp_path / "user", 12, seed=10)},
                            {0: "NEWA"}), dataset)
    assert split_of_old().equals(before)
    assert report.moved.empty and "Every other class keeps its split" in report.describe()
    # 12 photos: a val and a test share under RULE; none under the defaults (28 photos for a test share).
    assert report.photos["split"].value_counts().to_dict() == {"train": 7, "test": 3, "val": 2}
    assert "NEWA: no test photos" not in report.describe()


def test_a_small_type_is_told_it_gets_no_test_photos(dataset, tmp_path):
    new_types = discovered(tmp_path / "found", {0: user_photos(tmp_path / "user", 3, seed=10)}, {0: "NEWA"})
    report = adding.add_types(new_types, dataset_dir=dataset, progress=False)  # the defaults: 28 for a test share
    assert set(report.photos["split"]) == {"train"}
    assert "NEWA: no test photos (too few usable photos for a test share)" in report.describe()


def test_rerun_adds_nothing_twice(dataset, tmp_path):
    new_types = discovered(tmp_path / "found", {0: user_photos(tmp_path / "user", 4, seed=10)}, {0: "NEWA"})
    add(new_types, dataset)
    after_first = entries(dataset)
    report = add(new_types, dataset)
    assert entries(dataset) == after_first
    assert not report.photos["added"].any() and "NEWA (existing type): 0 photos added, 4 already there" \
        in report.describe()


def test_taken_file_names_get_unique_ones_and_stay_idempotent(dataset, tmp_path):
    one = user_photos(tmp_path / "a", 1, seed=10)[0]
    other = user_photos(tmp_path / "b", 1, seed=11)[0].rename(tmp_path / "b" / one.name)  # same name, other content
    clash = user_photos(tmp_path / "c", 1, seed=12)[0].rename(tmp_path / "c" / "old1_2.png")  # an OLD1 photo's name
    copy = shutil.copy(dataset / "raw" / "OLD1" / "old1_0.png", tmp_path / "c" / "old1_1.png")  # OLD1's content
    new_types = discovered(tmp_path / "found", {0: [one, other, clash, Path(copy)]}, {0: "OLD1"})
    report = add(new_types, dataset).photos.set_index("source")
    assert list(report["path"]) == ["raw/OLD1/s10_0.png", "raw/OLD1/s10_0_2.png", "raw/OLD1/old1_2_2.png",
                                    "raw/OLD1/old1_0.png"]
    assert list(report["added"]) == [True, True, True, False]  # the copy's content is already there
    assert os.readlink(dataset / "raw" / "OLD1" / "s10_0_2.png") == str(other)
    after_first = entries(dataset)
    add(new_types, dataset)
    assert entries(dataset) == after_first


def test_copies_of_existing_photos_are_flagged(dataset, tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    exact = shutil.copy(dataset / "raw" / "OLD2" / "old2_3.png", user / "exact.png")
    pixels = np.array(Image.open(dataset / "raw" / "OLD1" / "old1_5.png"))
    pixels[0, 0] ^= 1  # one pixel off: other content, the same perceptual hash
    Image.fromarray(pixels).save(user / "near.png")
    report = add(discovered(tmp_path / "found", {0: [Path(exact)], 1: [user / "near.png"]},
                           {0: "NEWA", 1: "OLD1"}), dataset)
    photos = report.photos.set_index("path")
    assert "label_conflict" in photos.at["raw/NEWA/exact.png", "flags"]
    assert photos.at["raw/NEWA/exact.png", "same_as"] == "raw/OLD2/old2_3.png"
    assert photos.at["raw/NEWA/exact.png", "split"] == splits.EXCLUDED
    assert photos.at["raw/OLD1/near.png", "flags"] == "near_duplicate"
    assert photos.at["raw/OLD1/near.png", "same_as"] == "raw/OLD1/old1_5.png"
    text = report.describe()
    assert "raw/NEWA/exact.png" in text and "raw/OLD2/old2_3.png" in text
    # The conflict excludes the OLD2 original too, so OLD2 is split afresh: said, not hidden.
    assert "raw/OLD2/old2_3.png" in set(report.moved["path"]) and "of other classes change split" in text


@pytest.mark.parametrize("name, problem", [
    ("a/b", "contains a path separator"), ("a\\b", "contains a path separator"),
    ("..", "starts with '.'"), (".", "starts with '.'"), (".hidden", "starts with '.'"),
    ("tab\there", "contains control characters"), ("x" * 256, "longer than a folder name may be")])
def test_bad_name_is_refused_before_anything_is_written(dataset, tmp_path, name, problem):
    good = user_photos(tmp_path / "user", 2, seed=10)
    new_types = discovered(tmp_path / "found", {0: good, 1: good}, {0: "NEWA", 1: name})
    before = entries(dataset)
    with pytest.raises(DataError, match=rf"new_types.csv: line 3 \(cluster 1\): the name .* {problem}"):
        add(new_types, dataset)
    assert entries(dataset) == before


def test_type_name_problem_accepts_ordinary_names():
    assert [adding.type_name_problem(n) for n in ["ELSTER A1", "Zähler-2", "UNKNOWN.v2"]] == ["", "", ""]
    assert adding.type_name_problem(" padded ") == "begins or ends with spaces"


def test_missing_photo_is_refused_before_anything_is_written(dataset, tmp_path):
    good = user_photos(tmp_path / "user", 3, seed=10)
    gone = user_photos(tmp_path / "gone", 2, seed=11)
    new_types = discovered(tmp_path / "found", {0: good, 1: gone}, {0: "NEWA", 1: "NEWB"})
    for path in gone:
        path.unlink()
    before = entries(dataset)
    with pytest.raises(DataError, match=rf"members.csv: line 5 \(cluster 1\): {gone[0]}: file not found "
                                        r"\(and 1 more photo that cannot be read\); nothing was filed"):
        add(new_types, dataset)
    assert entries(dataset) == before


@pytest.mark.parametrize("rows, problem", [
    ({0: "NEWA", 7: "NEWB"}, r"line 3 \(cluster 7\): no such cluster in the members.csv"),
    ({0: "NEWA", -1: "NOISE"}, r"line 3 \(cluster -1\): no such cluster"),
    ({0: "NEWA", "x": "NEWB"}, r"line 3 \(cluster x\): cluster 'x' is not a whole number"),
    ({0: "", 1: ""}, "no cluster is named: fill in the name column")])
def test_rows_that_name_no_real_cluster_are_refused(dataset, tmp_path, rows, problem):
    photos = user_photos(tmp_path / "user", 2, seed=10)
    new_types = discovered(tmp_path / "found", {0: photos[:1], 1: photos[1:], -1: photos[1:]}, rows)
    before = entries(dataset)
    with pytest.raises(DataError, match=problem):
        add(new_types, dataset)
    assert entries(dataset) == before


def test_one_cluster_named_twice_is_refused(dataset, tmp_path):
    new_types = discovered(tmp_path / "found", {0: user_photos(tmp_path / "user", 1, seed=10)}, {0: "NEWA"})
    with open(new_types, "a", newline="") as f:
        csv.writer(f).writerow([0, 1, "OLD1", "0.4", "contact_sheet_0.png", "NEWB"])
    with pytest.raises(DataError, match=r"line 3 \(cluster 0\): the cluster is named twice \('NEWA' and 'NEWB'\)"):
        add(new_types, dataset)
    assert not (dataset / "raw" / "NEWA").exists()


def test_missing_members_csv_is_named(dataset, tmp_path):
    new_types = discovered(tmp_path / "found", {0: user_photos(tmp_path / "user", 1, seed=10)}, {0: "NEWA"})
    (tmp_path / "found" / "members.csv").unlink()
    with pytest.raises(DataError, match=r"members.csv: not found"):
        add(new_types, dataset)


def test_dataset_must_exist_and_have_raw(dataset, tmp_path):
    new_types = discovered(tmp_path / "found", {0: user_photos(tmp_path / "user", 1, seed=10)}, {0: "NEWA"})
    with pytest.raises(DataError, match="dataset not found"):
        add(new_types, tmp_path / "typo")
    split_only = tmp_path / "seedlike"
    (split_only / "processed" / "train").mkdir(parents=True)
    shutil.copytree(dataset / "raw" / "OLD1", split_only / "processed" / "train" / "OLD1")
    with pytest.raises(DataError, match=r"existing processed/<split>/<class>/ split without raw/"):
        add(new_types, split_only)
    assert not (split_only / "raw").exists() and not (tmp_path / "typo").exists()


def test_a_linked_dataset_links_each_photo_and_files_into_the_copy_only(tmp_path, dataset):
    (dataset / "raw" / "HELD").mkdir()
    random_photos.save(dataset / "raw" / "HELD", 3, width=SIDE, height=SIDE, seed=9, name="h_{}.png")
    before = entries(dataset)
    child = adding.linked_dataset(dataset, tmp_path / "child", leave_out=["HELD"])
    assert sorted(os.listdir(child / "raw")) == ["OLD1", "OLD2"]
    linked = sorted((child / "raw" / "OLD1").iterdir())
    assert len(linked) == 14 and all(path.is_symlink() for path in linked)
    assert linked[0].resolve() == (dataset / "raw" / "OLD1" / linked[0].name).resolve()

    new = user_photos(tmp_path / "mine", 4, seed=5)
    add(discovered(tmp_path / "found", {0: new}, {0: "OLD1"}), child)  # into an existing type
    assert len(list((child / "raw" / "OLD1").iterdir())) == 18
    assert entries(dataset) == before  # the source dataset is as it was

    rebuilt = adding.linked_dataset(dataset, tmp_path / "child")  # a rerun starts afresh
    assert sorted(os.listdir(rebuilt / "raw")) == ["HELD", "OLD1", "OLD2"]
    assert len(list((rebuilt / "raw" / "OLD1").iterdir())) == 14
    assert not list(tmp_path.glob(".child*"))


def test_a_processed_only_dataset_cannot_be_linked(tmp_path):
    (tmp_path / "ds" / "processed" / "train" / "A").mkdir(parents=True)
    with pytest.raises(DataError, match="has no raw/ folder"):
        adding.linked_dataset(tmp_path / "ds", tmp_path / "child")
    assert not (tmp_path / "child").exists()


def test_the_addition_carries_the_whole_manifest_under_the_rule(tmp_path, dataset):
    new = user_photos(tmp_path / "mine", 6, seed=4)
    addition = add(discovered(tmp_path / "found", {0: new}, {0: "NEW1"}), dataset)
    manifest = addition.manifest
    assert manifest.groupby("class").size().to_dict() == {"NEW1": 6, "OLD1": 14, "OLD2": 14}
    placed = manifest.set_index("path").loc[addition.photos["path"], "split"]
    assert list(placed) == list(addition.photos["split"])
