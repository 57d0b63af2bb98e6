"""Synthetic data: the dataset writer (determinism, manifest, refusing foreign folders, reuse)."""

import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from meterlib.errors import OutputError
from meterlib.run.paths import SYNTH_MARKER
from meterlib.synth import MANIFEST_NAME, DatasetSpec, ensure_dataset, generate_dataset, read_manifest
from meterlib.synth import generate as generate_module

TINY = DatasetSpec(n_images=6, n_classes=3, width=96, height=160, seed=7)


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("synth") / "tiny", TINY, workers=1, progress=False)


def test_same_seed_gives_identical_bytes_for_any_worker_count(tiny, tmp_path):
    again = generate_dataset(tmp_path / "again", TINY, workers=2, progress=False)
    assert _files(again) == _files(tiny)


def test_another_seed_gives_other_images(tiny, tmp_path):
    other = generate_dataset(tmp_path / "other", replace(TINY, seed=8), workers=1, progress=False)
    first = sorted(tiny.rglob("*.jpg"))[0]
    assert (other / first.relative_to(tiny)).read_bytes() != first.read_bytes()


def test_layout_manifest_and_marker(tiny):
    jpgs = sorted(p.relative_to(tiny).as_posix() for p in tiny.rglob("*.jpg"))
    manifest = read_manifest(tiny)
    assert sorted(manifest["path"]) == jpgs and len(jpgs) == 6
    assert list(manifest.columns[:4]) == ["path", "class", "family", "variant"]
    for column in ("rotation_deg", "perspective_deg", "zoom", "defocus_sigma", "motion_blur_px", "brightness",
                   "exposure_ev", "glare", "shadow", "color_cast", "noise_sigma", "jpeg_quality", "occlusion"):
        assert column in manifest.columns
    assert set(manifest["occlusion"]) <= {"none", "hand", "cable", "sticker"}
    assert manifest["jpeg_quality"].between(40, 95).all()
    assert all(p.split("/")[1] == c for p, c in zip(manifest["path"], manifest["class"]))
    marker = json.loads((tiny / SYNTH_MARKER).read_text())
    # Exactly these keys: a folder generated earlier is reused only while its marker matches.
    assert marker == {"generator": "meterlib.synth", "generator_version": 1, "n_images": 6, "n_classes": 3,
                      "width": 96, "height": 160, "seed": 7, "class_counts": marker["class_counts"]}
    assert sum(marker["class_counts"].values()) == 6
    with Image.open(tiny / jpgs[0]) as img:
        assert img.format == "JPEG" and img.size == (96, 160) and img.mode == "RGB"
    assert not [p for p in tiny.parent.iterdir() if ".partial-" in p.name]


def test_images_are_not_blank_and_differ_between_classes(tiny):
    manifest = read_manifest(tiny)
    arrays = {c: np.asarray(Image.open(tiny / p), dtype=np.float32) for p, c in zip(manifest["path"], manifest["class"])}
    assert all(a.std() > 10 for a in arrays.values())
    a, b = list(arrays.values())[:2]
    assert np.abs(a - b).mean() > 5


def test_existing_folders_are_never_written_into(tmp_path):
    (tmp_path / "empty").mkdir()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "photo.jpg").write_bytes(b"keep")
    for folder in (tmp_path / "empty", mine):
        with pytest.raises(OutputError, match="already exists"):
            generate_dataset(folder, TINY, progress=False)
    assert [p.name for p in mine.iterdir()] == ["photo.jpg"] and not any((tmp_path / "empty").iterdir())
    with pytest.raises(OutputError, match="not a generated synthetic dataset"):
        ensure_dataset(mine, TINY, progress=False)


def test_an_interrupted_run_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []

    def failing(job):
        calls.append(job)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(job)

    real = generate_module._render_job
    monkeypatch.setattr(generate_module, "_render_job", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path / "cut", TINY, workers=1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_ensure_reuses_a_matching_folder_and_refuses_a_different_one(tiny):
    before = {p: p.stat().st_mtime_ns for p in tiny.rglob("*")}
    assert ensure_dataset(tiny, TINY, workers=1, progress=False) == tiny
    assert {p: p.stat().st_mtime_ns for p in tiny.rglob("*")} == before
    with pytest.raises(ValueError, match=r"seed: folder has 7, requested 8"):
        ensure_dataset(tiny, replace(TINY, seed=8), progress=False)
    with pytest.raises(ValueError, match=r"width: folder has 96, requested 128"):
        ensure_dataset(tiny, replace(TINY, width=128), progress=False)


def test_ensure_generates_when_absent(tmp_path):
    made = ensure_dataset(tmp_path / "new", replace(TINY, n_images=3), workers=1, progress=False)
    assert len(read_manifest(made)) == 3 and (made / MANIFEST_NAME).is_file()


@pytest.mark.parametrize("change, workers, message", [
    (dict(width=32), 1, "width must be between 64"),
    (dict(height=10_000), 1, "height must be between"),
    (dict(seed=-1), 1, "seed must be between"),
    (dict(n_images=2), 1, "at least n_classes"),
    (dict(n_classes=39), 1, "between 1 and 38"),
    ({}, 0, "workers must be a positive integer"),
    (dict(class_counts=[2, 2]), 1, "has 2 classes but n_classes=3"),
])
def test_bad_parameters_are_refused_before_anything_is_written(tmp_path, change, workers, message):
    with pytest.raises(ValueError, match=message):
        generate_dataset(tmp_path / "bad", replace(TINY, **change), workers=workers, progress=False)
    assert list(tmp_path.iterdir()) == []
