"""``meterlib discover`` end to end on a tiny model: the review files, a predict CSV as input, clear refusals."""

import csv
import shutil

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from meterlib.cli.main import main
from meterlib.discover import outputs
from meterlib.model import backbones, checkpoint, reference
from meterlib.serve import answers_csv

COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (220, 220, 30)]  # three known types, then a new one


@pytest.fixture(autouse=True)
def own_environment(monkeypatch):
    """main() sets OMP_WAIT_POLICY for the torch it loads; keep it from later tests' subprocesses."""
    monkeypatch.setenv("OMP_WAIT_POLICY", "")
    monkeypatch.delenv("OMP_WAIT_POLICY")


def _save(path, colour, rng):
    pixels = np.clip(np.array(colour) + rng.normal(0, 25, (40, 40, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A random 32-px model whose training photos are red, green and blue noise; 8 yellow photos (a new type),
    6 red ones (a known type) and a broken file to judge."""
    root = tmp_path_factory.mktemp("discover")
    rng = np.random.default_rng(0)
    (root / "train").mkdir()
    known = [_save(root / "train" / f"{kind}_{i}.png", COLOURS[kind], rng) for kind in range(3) for i in range(10)]
    torch.manual_seed(0)
    model = backbones.build_classifier("random", 3, pretrained=False)
    spec = checkpoint.ModelSpec("random", ["red", "green", "blue"], 32, mean=(0.5,) * 3, std=(0.25,) * 3)
    features = reference.build(model, known, np.repeat([0, 1, 2], 10), spec=spec)
    checkpoint.save(root / "model.pt", model=model, spec=spec, reference_features=features)
    (root / "photos").mkdir()
    new = [_save(root / "photos" / f"yellow{i}.png", COLOURS[3], rng) for i in range(8)]
    red = [_save(root / "photos" / f"red{i}.png", COLOURS[0], rng) for i in range(6)]
    (root / "photos" / "broken.jpg").write_bytes(b"")
    return {"root": root, "model": root / "model.pt", "new": new, "red": red}


def run(*args, capsys):
    code = main(["discover", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_folder_gives_a_new_cluster_a_known_one_and_the_review_files(world, tmp_path, capsys):
    out_dir = tmp_path / "out"
    code, out, err = run(world["root"] / "photos", "--model", world["model"], "--out", out_dir, capsys=capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "15 photos: 1 new type (8 photos), 1 known type (6 photos), 0 noise, 1 could not be read"
    assert lines[1].startswith("  cluster 0: 8 photos, nearest known types ")
    assert lines[2] == "  known: red (6 photos)"
    assert lines[3].startswith(f"could not be read: {world['root'] / 'photos' / 'broken.jpg'} (empty (0 bytes))")
    assert lines[-1] == f"  meterlib add-types {out_dir / 'new_types.csv'} --dataset NAME"
    assert sorted(p.name for p in out_dir.iterdir()) == ["contact_sheet_0.png", "members.csv", "new_types.csv",
                                                         "noise.csv"]
    members = _rows(out_dir / "members.csv")
    assert list(members[0]) == list(outputs.MEMBERS_COLUMNS)
    by_file = {row["file"]: row for row in members}
    assert sorted(by_file) == sorted(str(path) for path in world["new"] + world["red"])  # absolute paths
    for path in world["new"]:
        assert (by_file[str(path)]["cluster"], by_file[str(path)]["status"], by_file[str(path)]["known_type"]) \
            == ("0", "new", "")
    for path in world["red"]:
        row = by_file[str(path)]
        assert (row["cluster"], row["status"], row["known_type"], row["nearest_type"]) == ("1", "known", "red", "red")
        assert 0.9 < float(row["similarity"]) <= 1 and len(row["similarity"].split(".")[1]) <= 3
    new_types = _rows(out_dir / "new_types.csv")
    assert [list(row.values()) for row in new_types] == [
        ["0", "8", new_types[0]["nearest_type"], new_types[0]["nearest_similarity"], "contact_sheet_0.png", ""]]
    assert new_types[0]["nearest_type"] in ("red", "green", "blue")
    assert _rows(out_dir / "noise.csv") == []
    with Image.open(out_dir / "contact_sheet_0.png") as sheet:
        assert sheet.text["Software"] == outputs.SOFTWARE
        assert sheet.width == 8 * outputs.THUMB  # eight photos in one row


def test_a_predict_csv_gives_its_unseen_type_rows(world, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the CSV's relative names are found from its own folder
    table = world["root"] / "photos" / "answers.csv"
    rows = [{"file": path.name, "reason": "unseen_type"} for path in world["new"][:6]]
    rows += [{"file": path.name, "reason": reason} for path, reason in zip(world["red"], ["", "unsure"])]
    with open(table, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=answers_csv.csv_columns(3), restval="")
        writer.writeheader()
        writer.writerows(rows)
    try:
        code, out, err = run(table, "--model", world["model"], "--out", "found", capsys=capsys)
    finally:
        table.unlink()
    assert (code, err) == (0, "")
    assert out.startswith("6 photos: 1 new type (6 photos), 0 known types (0 photos), 0 noise, 0 could not")
    assert sorted(row["file"] for row in _rows(tmp_path / "found" / "members.csv")) == \
        sorted(str(path) for path in world["new"][:6])


def test_refusals_name_the_file_and_the_problem(world, tmp_path, capsys, random_checkpoint):
    photos = world["root"] / "photos"
    (tmp_path / "empty").mkdir()
    (tmp_path / "other.csv").write_text("path,class\na.jpg,red\n")
    cases = [((photos, "--model", tmp_path / "gone.pt"), f"{tmp_path / 'gone.pt'}: checkpoint not found"),
             ((photos, "--model", random_checkpoint),
              f"{random_checkpoint}: has no reference_features"),
             ((tmp_path / "empty", "--model", world["model"]), "no photos found in"),
             ((tmp_path / "other.csv", "--model", world["model"]),
              f"{tmp_path / 'other.csv'}: not a `meterlib predict` CSV")]
    for args, message in cases:
        code, out, err = run(*args, "--out", tmp_path / "out", capsys=capsys)
        assert (code, out) == (1, "") and err.startswith(f"meterlib discover: {message}"), err
    assert "notebook 02" in run(photos, "--model", random_checkpoint, "--out", tmp_path / "out", capsys=capsys)[2]
    assert not (tmp_path / "out").exists()


def test_files_meterlib_did_not_write_are_kept_unless_overwrite(world, tmp_path, capsys):
    photos, out_dir = world["root"] / "photos", tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "members.csv").write_text("my own notes\n")
    code, out, err = run(photos, "--model", world["model"], "--out", out_dir, capsys=capsys)
    assert code == 1 and "members.csv: exists and was not written by meterlib" in err
    assert sorted(p.name for p in out_dir.iterdir()) == ["members.csv"]  # nothing written
    assert run(photos, "--model", world["model"], "--out", out_dir, "--overwrite", capsys=capsys)[0] == 0
    assert _rows(out_dir / "members.csv")[0]["cluster"] in ("0", "1")


def test_a_rerun_replaces_its_own_files_but_not_names_a_person_filled_in(world, tmp_path, capsys):
    photos, out_dir = world["root"] / "photos", tmp_path / "out"
    assert run(photos, "--model", world["model"], "--out", out_dir, capsys=capsys)[0] == 0
    marker = PngImagePlugin.PngInfo()
    marker.add_text("Software", outputs.SOFTWARE)
    Image.new("RGB", (4, 4)).save(out_dir / "contact_sheet_5.png", pnginfo=marker)  # an earlier run's
    assert run(photos, "--model", world["model"], "--out", out_dir, capsys=capsys)[0] == 0
    assert not (out_dir / "contact_sheet_5.png").exists()
    Image.new("RGB", (4, 4)).save(out_dir / "contact_sheet_7.png")  # someone else's
    code, _, err = run(photos, "--model", world["model"], "--out", out_dir, capsys=capsys)
    assert code == 1 and "contact_sheet_7.png: exists and was not written by meterlib" in err
    (out_dir / "contact_sheet_7.png").unlink()
    named = (out_dir / "new_types.csv").read_text().replace(",\n", ",sunflower\n")
    (out_dir / "new_types.csv").write_text(named)
    code, _, err = run(photos, "--model", world["model"], "--out", out_dir, capsys=capsys)
    assert code == 1 and "new_types.csv: exists and was not written by meterlib" in err
    assert (out_dir / "new_types.csv").read_text() == named
    shutil.rmtree(out_dir)
