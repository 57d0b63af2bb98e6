"""Data audit flags on planted files, the adaptive group-aware split, the manifest and the tree."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from meterlib.data import audit, flags, photos, processed_tree, splits
from meterlib.errors import DataError, OutputError, SettingsError

RULE = dict(min_images_test=4, min_images_val=10, test_fraction=0.25, val_fraction=0.2)


def photo(seed: int, size=(120, 200)) -> Image.Image:
    """A distinct, sharp test picture (blocky noise: its perceptual hash differs from other seeds)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (8, 5, 3), dtype=np.uint8)
    return Image.fromarray(blocks).resize(size, Image.Resampling.NEAREST)


def save(img: Image.Image, path: Path, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **options)
    return path


def make_raw(root: Path, counts: dict[str, int], *, start: int = 0) -> Path:
    """dataset/raw/<class>/<n>.jpg with distinct pictures."""
    seed = start
    for cls, n in counts.items():
        (root / "raw" / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            save(photo(seed), root / "raw" / cls / f"{i:03d}.jpg", quality=92)
            seed += 1
    return root


def tree_digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def flags_of(files: pd.DataFrame, name: str) -> set[str]:
    row = files[files["path"].str.endswith(name)]
    assert len(row) == 1, name
    return flags.parse_flags(row["flags"].iat[0])


@pytest.fixture()
def planted(tmp_path) -> Path:
    """A raw/ tree with one of every problem the audit should name."""
    ds = make_raw(tmp_path / "ds", {"alpha": 6, "beta": 6})
    raw = ds / "raw"
    good = (raw / "alpha" / "000.jpg").read_bytes()
    (raw / "alpha" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (raw / "alpha" / "empty.jpg").write_bytes(b"")
    (raw / "alpha" / "notes.txt").write_text("not a photo")
    (raw / "alpha" / "fake.png").write_bytes(b"PK\x03\x04 a zip file, really")
    save(photo(100).convert("CMYK"), raw / "alpha" / "cmyk.jpg")
    sixteen = (np.asarray(photo(101).convert("L"), dtype=np.uint16) * 257)
    save(Image.fromarray(sixteen), raw / "beta" / "deep 16-bit.png")
    rotated = photo(102, size=(200, 120))
    exif = Image.Exif()
    exif[photos.EXIF_ORIENTATION] = 6
    save(rotated, raw / "beta" / "nested" / "rotated.jpg", exif=exif)
    (raw / "alpha" / "zz copy.jpg").write_bytes(good)
    save(Image.open(raw / "beta" / "000.jpg").point(lambda v: min(255, v + 6)),
         raw / "beta" / "near twin.jpg", quality=70)
    (raw / "beta" / "zz from alpha.jpg").write_bytes((raw / "alpha" / "001.jpg").read_bytes())
    save(photo(103).convert("P"), raw / "beta" / "palette ü.gif")
    save(Image.new("RGB", (120, 200), (8, 8, 10)), raw / "beta" / "dark.png")
    save(photo(104).resize((20, 30)), raw / "beta" / "tiny.bmp")
    (raw / "gamma").mkdir()
    (raw / "loose.jpg").write_bytes(good)
    (raw / "alpha" / ".DS_Store").write_bytes(b"\0junk")
    return ds


def test_audit_names_every_planted_problem(planted):
    result = audit.audit_dataset(planted, progress=False)
    files = result.files
    assert result.layout == "raw"
    assert result.classes == ["alpha", "beta", "gamma"]
    assert not files["path"].str.contains("DS_Store").any()
    assert flags_of(files, "truncated.jpg") == {"truncated"}
    assert flags_of(files, "empty.jpg") == {"zero_byte"}
    assert flags_of(files, "notes.txt") == {"not_image"}
    assert flags_of(files, "fake.png") == {"not_image"}
    assert flags_of(files, "cmyk.jpg") == {"cmyk"}
    assert flags_of(files, "deep 16-bit.png") == {"16bit"}
    assert flags_of(files, "rotated.jpg") == {"exif_rotated"}
    assert flags_of(files, "zz copy.jpg") == {"duplicate"}
    assert flags_of(files, "alpha/000.jpg") == set()  # the original of the copy
    assert flags_of(files, "near twin.jpg") == {"near_duplicate"}
    assert flags_of(files, "beta/000.jpg") == {"near_duplicate"}
    assert flags_of(files, "zz from alpha.jpg") == {"duplicate", "label_conflict"}
    assert flags_of(files, "alpha/001.jpg") == {"label_conflict"}
    assert flags_of(files, "palette ü.gif") == {"palette"}
    assert {"dark", "low_contrast", "blurry"} <= flags_of(files, "dark.png")
    assert flags_of(files, "tiny.bmp") == {"tiny"}
    assert flags_of(files, "loose.jpg") >= {"no_class"}
    assert flags_of(files, "beta/001.jpg") == set()


def test_audit_records_sizes_modes_and_groups(planted):
    files = audit.audit_dataset(planted, progress=False).files.set_index("path")
    rotated = files.loc["raw/beta/nested/rotated.jpg"]
    assert (rotated["width"], rotated["height"], rotated["class"]) == (120, 200, "beta")
    assert files.loc["raw/beta/deep 16-bit.png", "mode"] == "I;16"
    assert files.loc["raw/alpha/cmyk.jpg", "mode"] == "CMYK"
    assert files.loc["raw/alpha/zz copy.jpg", "group"] == files.loc["raw/alpha/000.jpg", "group"]
    assert files.loc["raw/beta/near twin.jpg", "group"] == files.loc["raw/beta/000.jpg", "group"]
    assert files.loc["raw/beta/001.jpg", "group"] != files.loc["raw/beta/000.jpg", "group"]
    assert files.loc["raw/alpha/empty.jpg", "group"] == ""
    assert "0 bytes" in files.loc["raw/alpha/empty.jpg", "error"]
    assert str(planted) not in "".join(files["error"])  # errors name files relatively
    counts = audit.flag_counts(audit.audit_dataset(planted, progress=False))
    assert counts.loc["not_image", "files"] == 2


def test_near_duplicate_distance_is_a_parameter(planted):
    files = audit.audit_dataset(planted, near_distance=-1, progress=False).files
    assert flags_of(files, "near twin.jpg") == set()
    assert flags_of(files, "zz copy.jpg") == {"duplicate"}  # exact copies are always grouped


def test_pool_and_serial_audits_agree(tmp_path):
    ds = make_raw(tmp_path / "ds", {"a": 40, "b": 30})
    pooled = audit.audit_dataset(ds, workers=2, progress=False).files
    serial = audit.audit_dataset(ds, workers=1, progress=False).files
    pd.testing.assert_frame_equal(pooled, serial)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "I;16", "I", "F", "1"])
def test_load_rgb_handles_every_mode(tmp_path, mode):
    base = photo(7)
    img = Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 200) \
        if mode == "I;16" else base.convert(mode)
    path = save(img, tmp_path / ("x.tiff" if mode in ("I", "F", "CMYK") else "x.png"))
    out = photos.load_rgb(path)
    assert out.mode == "RGB" and out.size == (120, 200)
    assert np.asarray(out).max() > 0


def test_read_photo_reduced_jpeg_keeps_full_size_facts(tmp_path):
    path = save(photo(1, size=(720, 1280)), tmp_path / "big.jpg")
    facts = photos.read_photo(path, max_side=256)
    assert (facts.width, facts.height, facts.format) == (720, 1280, "JPEG")
    assert max(facts.image.size) <= 256


@pytest.mark.parametrize("min_side, expected", [(224, (720, 1280)), (400, (720, 1280)), (90, (180, 320))])
def test_load_rgb_min_side_shrinks_every_format_alike_and_keeps_twice_the_side(tmp_path, min_side, expected):
    path = save(photo(1, size=(720, 1280)), tmp_path / "big.jpg")
    assert photos.load_rgb(path, min_side=min_side).size == expected
    png = save(photo(1, size=(720, 1280)), tmp_path / "big.png")
    assert photos.load_rgb(png, min_side=min_side).size == expected


def test_load_rgb_applies_exif_orientation(tmp_path):
    exif = Image.Exif()
    exif[photos.EXIF_ORIENTATION] = 6
    path = save(photo(3, size=(200, 120)), tmp_path / "r.jpg", exif=exif)
    assert photos.load_rgb(path).size == (120, 200)
    assert photos.read_photo(path).exif_rotated


def test_image_error_keeps_the_file_and_the_problem_apart(tmp_path):
    path = tmp_path / "meter: front.jpg"  # ': ' in the name, where the message joins the two
    path.write_bytes(b"field notes")
    with pytest.raises(DataError) as err:
        photos.read_photo(path)
    assert (err.value.path, err.value.problem) == (str(path), "not an image file (format not recognised)")
    assert str(err.value) == f"{path}: not an image file (format not recognised)"


def test_flags_are_joined_parsed_and_matched_in_one_place():
    assert flags.join_flags(["dark", "blurry"]) == "dark;blurry" and flags.join_flags([]) == ""
    assert flags.parse_flags("dark;blurry") == {"dark", "blurry"}
    assert flags.parse_flags("") == flags.parse_flags(None) == flags.parse_flags(float("nan")) == set()
    files = pd.DataFrame({"flags": ["", "dark;tiny", "truncated", None]})
    assert flags.has_flag(files, "tiny", "truncated").tolist() == [False, True, True, False]
    assert flags.is_unusable(files).tolist() == [False, False, True, False]
    assert flags.has_flag(files.iloc[:0], "dark").dtype == bool


# --- the split rule -------------------------------------------------------------------------

def frame(groups_per_class: dict[str, list[int]]) -> pd.DataFrame:
    """A fake audit table: for each class, duplicate groups of the given sizes."""
    rows = []
    for cls, sizes in groups_per_class.items():
        for g, size in enumerate(sizes):
            rows += [{"path": f"raw/{cls}/{g}_{k}.jpg", "class": cls, "flags": "",
                      "group": f"{cls}-{g}"} for k in range(size)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("n, tier", [(1, "train"), (3, "train"), (4, "train+test"),
                                     (9, "train+test"), (10, "train+val+test")])
def test_class_tier_thresholds(n, tier):
    assert splits.class_tier(n, min_images_test=4, min_images_val=10) == tier


def test_a_class_of_one_image_is_train_only():
    files = frame({"one": [1], "big": [1] * 20})
    split = splits.assign_splits(files, **RULE)
    assert split[files["class"] == "one"].tolist() == ["train"]
    assert set(split[files["class"] == "big"]) == {"train", "val", "test"}


def test_all_classes_tiny_gives_train_only():
    files = frame({c: [1] * 3 for c in "abc"})
    split = splits.assign_splits(files, **RULE)
    assert set(split) == {"train"}
    assert splits.check_split(files.assign(split=split)) == []


def test_medium_class_gets_train_and_test_in_proportion():
    files = frame({"m": [1] * 8})
    split = splits.assign_splits(files, **RULE)
    assert split.value_counts().to_dict() == {"train": 6, "test": 2}


def test_groups_never_span_splits_and_train_keeps_every_class():
    files = frame({"a": [5, 4, 3, 3, 2, 1, 1, 1, 1, 1], "b": [12, 1], "c": [9]})
    for seed in range(20):
        manifest = files.assign(split=splits.assign_splits(files, seed=seed, **RULE))
        assert splits.check_split(manifest) == []
        assert manifest.loc[manifest["class"] == "c", "split"].eq("train").all()  # one group only


def test_excluded_files_stay_out_of_every_split():
    files = frame({"a": [1] * 12})
    files.loc[0, "flags"] = "truncated"
    files.loc[1, "flags"] = "duplicate"
    files.loc[2, "flags"] = "label_conflict;near_duplicate"
    files.loc[3, "flags"] = "dark;blurry"
    split = splits.assign_splits(files, **RULE)
    assert split[:3].tolist() == ["excluded"] * 3
    assert split[3] != "excluded"


def test_split_is_seeded_and_classes_are_independent():
    files = frame({"a": [1] * 30, "b": [1] * 30})
    first = splits.assign_splits(files, seed=1, **RULE)
    assert first.equals(splits.assign_splits(files, seed=1, **RULE))
    assert not first.equals(splits.assign_splits(files, seed=2, **RULE))
    more = frame({"a": [1] * 30, "b": [1] * 30, "aa": [1] * 7})
    again = splits.assign_splits(more, seed=1, **RULE)
    assert again[more["class"] != "aa"].tolist() == first.tolist()


@pytest.mark.parametrize("bad", [dict(min_images_test=0), dict(min_images_test=20, min_images_val=10),
                                 dict(test_fraction=0.6, val_fraction=0.5)])
def test_bad_rule_is_refused(bad):
    with pytest.raises(SettingsError):
        splits.assign_splits(frame({"a": [1]}), **{**RULE, **bad})


def test_two_classes_alike_in_shape_draw_their_photos_independently():
    files = frame({"a": [1] * 30, "b": [1] * 30})
    split = splits.assign_splits(files, seed=1, **RULE)
    # Same group sizes in the same order: a shared generator would hold out the same positions.
    assert split[files["class"] == "a"].tolist() != split[files["class"] == "b"].tolist()


def test_a_small_share_still_holds_out_one_photo_and_no_val_share_none():
    rule = {**RULE, "test_fraction": 0.05, "val_fraction": 0.04}  # 10 photos: 0.5 and 0.4 round to 0
    counts = splits.assign_splits(frame({"a": [1] * 10}), **rule).value_counts().to_dict()
    assert counts == {"train": 8, "test": 1, "val": 1}
    no_val = splits.assign_splits(frame({"a": [1] * 40}), **{**RULE, "val_fraction": 0.0})
    assert no_val.value_counts().to_dict() == {"train": 30, "test": 10}


def test_the_default_rule_gives_val_from_50_photos_and_test_from_28():
    files = frame({"val": [1] * 50, "test": [1] * 49, "test_min": [1] * 28, "train": [1] * 27})
    split = splits.assign_splits(files)
    kinds = {cls: set(split[files["class"] == cls]) for cls in ("val", "test", "test_min", "train")}
    assert kinds == {"val": {"train", "val", "test"}, "test": {"train", "test"},
                     "test_min": {"train", "test"}, "train": {"train"}}
    assert split.equals(splits.assign_splits(files, seed=0))  # the default seed is 0


def test_check_split_names_each_broken_invariant():
    files = frame({"a": [1] * 6})
    manifest = files.assign(split=["train", "train", "test", "dev", "train", "test"])
    manifest = pd.concat([manifest, manifest.iloc[[0]].assign(split="test")], ignore_index=True)
    manifest.loc[4, "flags"] = "truncated"
    assert splits.check_split(manifest) == [
        "1 files appear in more than one split",
        "unknown split names: dev",
        "1 duplicate groups span several splits: a-0",
        "1 files that should be excluded are in a split, e.g. raw/a/4_0.jpg",
    ]
    assert splits.check_split(manifest.assign(split="excluded")) == []


def test_check_split_reports_leaks():
    manifest = frame({"a": [2, 1, 1]}).assign(split=["train", "test", "train", "val"])
    manifest.loc[3, "class"] = "b"
    problems = splits.check_split(manifest)
    assert any("span several splits" in p for p in problems)
    assert any("not in train: b" in p for p in problems)


# --- manifest and processed/ tree ------------------------------------------------------------

def split_raw(ds: Path, *, seed: int = 0):
    result = audit.audit_dataset(ds, progress=False)
    manifest = splits.build_manifest(result, seed=seed, **RULE)
    return result, manifest


def test_manifest_columns_and_empty_class(planted):
    result, manifest = split_raw(planted)
    assert list(manifest.columns[:9]) == ["path", "class", "split", "sha256", "phash", "width",
                                          "height", "flags", "group"]
    table = splits.split_table(manifest, classes=result.classes, min_images_test=4,
                               min_images_val=10)
    assert table.loc["gamma"].tolist() == [0, 0, 0, 0, 0, "(empty)"]
    assert splits.check_split(manifest) == []
    excluded = set(manifest.loc[manifest["split"] == "excluded", "path"].str.rsplit("/", n=1).str[-1])
    assert {"truncated.jpg", "empty.jpg", "notes.txt", "fake.png", "zz copy.jpg",
            "zz from alpha.jpg", "001.jpg", "loose.jpg"} <= excluded


def test_split_and_tree_are_idempotent_and_raw_is_untouched(planted):
    before = tree_digest(planted / "raw")
    _, manifest = split_raw(planted)
    csv = planted / "splits.csv"
    assert splits.write_manifest(manifest, csv) is True
    first = processed_tree.materialise(manifest, planted)
    stamp = csv.stat().st_mtime_ns
    _, again = split_raw(planted)  # processed/ now exists beside raw/: raw/ stays the input
    assert splits.write_manifest(again, csv) is False and csv.stat().st_mtime_ns == stamp
    assert processed_tree.materialise(again, planted) == processed_tree.TreeUpdate(kept=first.created)
    assert tree_digest(planted / "raw") == before
    used = manifest[manifest["split"] != "excluded"]
    for row in used.to_dict("records"):
        name = "__".join(Path(row["path"]).parts[2:])
        link = planted / "processed" / row["split"] / row["class"] / name
        assert link.is_symlink() and link.read_bytes() == (planted / row["path"]).read_bytes()
    pd.testing.assert_frame_equal(splits.read_manifest(csv), manifest.reset_index(drop=True),
                                  check_dtype=False)


def test_tree_follows_a_new_split(tmp_path):
    ds = make_raw(tmp_path / "ds", {"a": 30})
    _, first = split_raw(ds, seed=0)
    processed_tree.materialise(first, ds)
    _, second = split_raw(ds, seed=5)
    counts = processed_tree.materialise(second, ds)
    assert counts.removed == counts.created > 0 and not counts.foreign
    linked = sorted(p.relative_to(ds / "processed").as_posix()
                    for p in (ds / "processed").rglob("*.jpg"))
    wanted = sorted(f"{s}/a/{Path(p).name}" for p, s in zip(second["path"], second["split"]))
    assert linked == wanted


def test_copies_instead_of_links(tmp_path):
    ds = make_raw(tmp_path / "ds", {"a": 5})
    _, manifest = split_raw(ds)
    processed_tree.materialise(manifest, ds, copy=True)
    files = [p for p in (ds / "processed").rglob("*.jpg")]
    assert len(files) == 5 and not any(p.is_symlink() for p in files)
    assert processed_tree.materialise(manifest, ds, copy=True).created == 0


def test_a_foreign_processed_tree_is_never_clobbered(tmp_path):
    ds = make_raw(tmp_path / "ds", {"a": 5})
    mine = save(photo(9), ds / "processed" / "train" / "a" / "mine.jpg")
    _, manifest = split_raw(ds)
    with pytest.raises(OutputError, match="not made by meterlib"):
        processed_tree.materialise(manifest, ds)
    assert mine.is_file() and not mine.is_symlink()


def test_existing_split_is_audited_as_found(tmp_path):
    ds = tmp_path / "ds"
    for split, seeds in {"train": [1, 2, 3], "val": [4], "test": [5, 1]}.items():
        for s in seeds:
            save(photo(s), ds / "processed" / split / "a" / f"{s}.jpg", quality=92)
    save(photo(8), ds / "processed" / "test" / "b" / "8.jpg")
    (ds / "processed" / "test" / "b" / "broken.jpg").write_bytes(b"")
    before = tree_digest(ds)
    result = audit.audit_dataset(ds, progress=False)
    assert result.layout == "processed"
    # Paths sort test/ before train/: the train copy is the later one, named the duplicate.
    assert flags_of(result.files, "test/a/1.jpg") == {"leakage"}
    assert flags_of(result.files, "train/a/1.jpg") == {"duplicate", "leakage"}
    manifest = splits.build_manifest(result, **RULE)
    assert manifest.set_index("path").loc["processed/test/a/1.jpg", "split"] == "test"
    assert manifest.set_index("path").loc["processed/test/b/broken.jpg", "split"] == "excluded"
    problems = splits.check_split(manifest)
    assert any("span several splits" in p for p in problems)
    assert any("not in train: b" in p for p in problems)
    resplit = splits.build_manifest(result, resplit=True, **RULE)
    assert splits.check_split(resplit) == []
    assert tree_digest(ds) == before


# --- figures --------------------------------------------------------------------------------

def test_figures_show_one_photo_per_class_and_the_flagged_files(planted):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from meterlib.data import figures

    result, manifest = split_raw(planted)
    sheet = figures.plot_contact_sheet(manifest, planted)
    shown = sorted(ax.get_title() for ax in sheet.axes if ax.images)
    assert shown == ["alpha", "beta"]  # gamma is empty: nothing to show
    flagged = figures.plot_flagged(result.files, planted)
    labels = {t.get_text() for ax in flagged.axes for t in ax.texts}
    assert {"truncated", "zero_byte", "not_image", "duplicate", "label_conflict", "tiny"} <= labels
    assert "cmyk" not in labels  # a format fact, not a problem to look at
    plt.close("all")


def test_class_counts_stack_each_classes_splits_largest_on_top(planted, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from meterlib.data import figures

    result, manifest = split_raw(planted)
    fig = figures.plot_class_counts(manifest, classes=result.classes)
    ax = fig.axes[0]
    assert ax.get_title() == "25 files in 3 classes"  # the loose file has no class
    assert [t.get_text() for t in ax.get_yticklabels()] == ["gamma", "alpha", "beta"]
    splits = [t.get_text() for t in ax.get_legend().get_texts()]
    assert splits == ["train", "val", "test", "excluded"]
    # One bar per class and split, each starting where the class's previous split ended.
    bars = {(row, split): (p.get_x(), p.get_width())
            for split, group in zip(splits, np.split(np.array(ax.patches), 4))
            for row, p in zip(["gamma", "alpha", "beta"], group)}
    assert [bars["beta", split] for split in splits] == [(0, 7), (7, 2), (9, 3), (12, 1)]
    assert [bars["alpha", split][1] for split in splits] == [4, 0, 2, 6]
    assert all(bars["gamma", split][1] == 0 for split in splits)
    fig.savefig(tmp_path / "counts.png", dpi=50)
    assert Image.open(tmp_path / "counts.png").size == (350, 125)  # 7 x 2.5 inches
    plt.close("all")


def test_class_samples_and_quality_histograms_show_the_usable_photos(planted):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from meterlib.data import figures

    result, manifest = split_raw(planted)
    samples = figures.plot_class_samples(manifest, planted, per_class=5)
    assert len(samples.axes) == 2 * 5 and sum(len(ax.images) for ax in samples.axes) == 10
    assert [t.get_text() for ax in samples.axes for t in ax.texts] == ["alpha", "beta"]
    quality = figures.plot_size_and_quality(result.files, result.settings)
    assert [ax.get_xlabel() for ax in quality.axes] == [
        "width (px)", "height (px)", "mean brightness (0-1)", "contrast (std, 0-1)",
        "sharpness (Laplacian variance, log)"]
    readable = int((result.files["error"].fillna("") == "").sum())
    assert all(sum(p.get_height() for p in ax.patches) == readable for ax in quality.axes)
    # The flag thresholds are drawn where the audit applied them.
    thresholds = [ax.lines[0].get_xdata()[0] if ax.lines else None for ax in quality.axes]
    assert thresholds == [None, None, 0.15, 0.05, pytest.approx(np.log10(60.0))]
    plt.close("all")


def test_holdout_classes_leave_train_val_and_test(tmp_path):
    raw = tmp_path / "ds" / "raw"
    rng = np.random.default_rng(0)
    for cls, n in {"A": 12, "B": 12, "C": 5}.items():
        (raw / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(raw / cls / f"{i}.png")
    result = audit.audit_dataset(tmp_path / "ds", workers=1, progress=False)
    manifest = splits.build_manifest(result, holdout_classes=["C"], min_images_test=4,
                                     min_images_val=10)
    assert set(manifest.loc[manifest["class"] == "C", "split"]) == {"holdout"}
    assert "holdout" not in set(manifest.loc[manifest["class"] != "C", "split"])
    assert splits.check_split(manifest) == []
    table = splits.split_table(manifest, min_images_test=4, min_images_val=10)
    assert table.loc["C", "holdout"] == 5 and table.loc["C", "tier"] == "holdout"
    with pytest.raises(SettingsError, match="not in the dataset: Z"):
        splits.build_manifest(result, holdout_classes=["Z"])
    broken = manifest.copy()
    broken.loc[broken.index[0], "split"] = "holdout"
    assert any("held-out classes also in" in p for p in splits.check_split(broken))


# --- what meterlib owns in processed/, and the notes it prints ---------------------------------

def test_marker_lists_the_links_meterlib_made_and_nothing_else(tmp_path):
    ds = make_raw(tmp_path / "ds", {"a": 5, "b": 3})
    _, manifest = split_raw(ds)
    mine = save(photo(9), ds / "processed" / "train" / "a" / "mine.jpg")
    (ds / "processed" / processed_tree.TREE_MARKER).write_text(
        '{"made_by": "meterlib", "entries": []}')  # an (empty) tree meterlib made earlier
    update = processed_tree.materialise(manifest, ds)
    record = json.loads((ds / "processed" / processed_tree.TREE_MARKER).read_text())
    assert len(record["entries"]) == update.created == 8
    assert "train/a/mine.jpg" not in record["entries"] and update.foreign == ["train/a/mine.jpg"]
    assert mine.read_bytes() == save(photo(9), tmp_path / "again.jpg").read_bytes()


def test_tree_notes_say_foreign_files_are_unused_and_where_photos_belong():
    update = processed_tree.TreeUpdate(created=2, foreign=["train/x/1.jpg", "val/a/2.jpg"],
                                  conflicts=["val/a/2.jpg"])
    counts, foreign, conflicts = update.describe()
    assert counts == "processed/: 2 created, 0 removed, 0 kept"
    assert foreign.startswith("2 files in processed/ not made by meterlib (e.g. processed/train/x/1.jpg)")
    assert "not used for training" in foreign and "Photos belong in raw/<class>/" in foreign
    assert conflicts.startswith("1 file of these in the place of a link")
    assert "processed/val/a/2.jpg" in conflicts
    assert processed_tree.TreeUpdate(kept=3).describe() == ["processed/: 0 created, 0 removed, 3 kept"]


def test_pool_and_serial_audits_agree_on_files_they_cannot_read(tmp_path):
    ds = make_raw(tmp_path / "ds", {"a": 40, "b": 30})
    os.symlink("missing.jpg", ds / "raw" / "a" / "dangling.jpg")
    with open(os.fsencode(ds / "raw" / "b") + b"/\xff.jpg", "wb") as out:
        out.write(b"bytes")
    pooled = audit.audit_dataset(ds, workers=2, progress=False).files
    pd.testing.assert_frame_equal(pooled, audit.audit_dataset(ds, workers=1, progress=False).files)
    assert flags_of(pooled, "dangling.jpg") == {"broken_link"}
    assert flags_of(pooled, "b/\\xff.jpg") == {"bad_name"}


def test_table_preview_keeps_short_tables_whole():
    table = pd.DataFrame({"train": [3, 4]}, index=pd.Index(["a", "b"], name="class"))
    assert splits.table_preview(table, max_rows=2) == table.to_string()
    assert splits.table_preview(table, max_rows=1, what="classes").endswith(
        "... 1 more classes not shown (2 in all)")


def test_largest_classes_break_ties_by_name():
    from meterlib.data import figures

    counts = pd.Series({"b": 2, "a": 2, "c": 5, "d": 1})
    assert figures.largest(counts, limit=3) == ["c", "a", "b"]
