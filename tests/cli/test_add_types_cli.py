"""``python -m meterlib add-types``: named clusters filed under the dataset's raw/, the report and the next step, one-line errors."""

import os
import re
from pathlib import Path

import pytest
import random_photos

from meterlib.cli.main import main


@pytest.fixture()
def setup(tmp_path, monkeypatch) -> dict:
    """data/shop/raw/OLD1 and OLD2 (8 photos each) and a discover folder naming 3 user photos 'NEWA'."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("METERLIB_REPORTS_DIR", str(tmp_path / "reports"))
    for seed, cls in enumerate(["OLD1", "OLD2"]):
        (tmp_path / "data" / "shop" / "raw" / cls).mkdir(parents=True)
        random_photos.save(tmp_path / "data" / "shop" / "raw" / cls, 8, width=72, height=72, seed=seed,
                           name=f"{cls}_{{}}.png")
    (tmp_path / "user").mkdir()
    sources = random_photos.save(tmp_path / "user", 3, width=72, height=72, seed=9, name="u{}.png")
    (tmp_path / "found").mkdir()
    (tmp_path / "found" / "members.csv").write_text(
        "cluster,file,status,known_type,nearest_type,similarity\n"
        + "".join(f"0,{p},new,,OLD1,0.3\n" for p in sources) + f"-1,{tmp_path / 'elsewhere.png'},noise,,OLD2,0.1\n")
    new_types = tmp_path / "found" / "new_types.csv"
    new_types.write_text("cluster,photos,nearest_type,nearest_similarity,contact_sheet,name\n"
                         "0,3,OLD1,0.3,contact_sheet_0.png,NEWA\n")
    return {"new_types": new_types, "sources": sources, "data": tmp_path / "data"}


def test_add_types_links_the_photos_and_prints_the_next_step(setup, capsys):
    assert main(["add-types", str(setup["new_types"]), "--dataset", "shop", "--data-dir", "data"]) == 0
    out = capsys.readouterr().out
    folder = setup["data"] / "shop" / "raw" / "NEWA"
    assert sorted(os.readlink(p) for p in folder.iterdir()) == sorted(map(str, setup["sources"]))
    assert "NEWA (new type): 3 photos added, 0 already there" in out
    assert "Every other class keeps its split" in out
    assert out.splitlines()[-1] == ("  meterlib run --warm-start reports/model/meterlib_checkpoint.pt "
                                    "-p dataset=shop --data-dir data")


def test_copy_option_copies(setup, capsys):
    assert main(["add-types", str(setup["new_types"]), "--dataset", "shop", "--data-dir", "data", "--copy"]) == 0
    copies = sorted((setup["data"] / "shop" / "raw" / "NEWA").iterdir())
    assert [p.is_symlink() for p in copies] == [False] * 3
    assert [p.read_bytes() for p in copies] == [p.read_bytes() for p in sorted(setup["sources"])]
    assert "copies of your photos" in capsys.readouterr().out


@pytest.mark.parametrize("name, dataset, message", [
    ("NEW/A", "shop", r"new_types.csv: line 2 \(cluster 0\): the name 'NEW/A' contains a path separator"),
    ("NEWA", "shp", "dataset not found")])
def test_refusal_is_one_line_and_writes_nothing(setup, capsys, name, dataset, message):
    new_types: Path = setup["new_types"]
    new_types.write_text(new_types.read_text().replace(",NEWA\n", f",{name}\n"))
    before = sorted(p.relative_to(setup["data"]) for p in setup["data"].rglob("*"))
    assert main(["add-types", str(new_types), "--dataset", dataset, "--data-dir", "data"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("meterlib add-types: ") and len(err.strip().splitlines()) == 1
    assert re.search(message, err)
    assert sorted(p.relative_to(setup["data"]) for p in setup["data"].rglob("*")) == before
