"""Notebook 01 on real meter-digit photos with planted problems: every problem named, split sound."""

import hashlib
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

from meterlib.data import flags, photos, splits
from meterlib.run import paths, runner


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _plant_problems(raw: Path) -> dict[str, str]:
    """Add broken and awkward files; return {relative path: the flag that must name it}."""
    data = sorted((raw / "3").glob("*.jpg"))[0].read_bytes()
    planted = {}

    def picture(cls: str) -> Image.Image:
        # Derived files come from their own class: a copy filed elsewhere is a label conflict.
        return Image.open(sorted((raw / cls).glob("*.jpg"))[0]).convert("RGB").resize((48, 80))

    def plant(rel: str, flag: str) -> Path:
        path = raw / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        planted[f"raw/{rel}"] = flag
        return path

    plant("3/corrupt half.jpg", "truncated").write_bytes(data[: len(data) // 2])
    plant("5/zero bytes.jpg", "zero_byte").write_bytes(b"")
    plant("5/readme.txt", "not_image").write_text("field notes")
    picture("7").convert("CMYK").save(plant("7/cmyk ß.jpg", "cmyk"))
    deep = np.asarray(picture("7").convert("L"), dtype=np.uint16) * 257
    Image.fromarray(deep).save(plant("7/sixteen bit.png", "16bit"))
    exif = Image.Exif()
    exif[photos.EXIF_ORIENTATION] = 8
    picture("8").transpose(Image.Transpose.ROTATE_270).save(plant("8/phone/rotated.jpg", "exif_rotated"),
                                                       exif=exif, quality=95)
    plant("3/zz repeated upload.jpg", "duplicate").write_bytes(data)
    plant("9/zz filed twice.jpg", "label_conflict").write_bytes(data)
    return planted


@pytest.mark.slow
def test_notebook01_names_planted_problems_on_real_photos(shared_dir, tmp_path):
    source = paths.project_root().parent / "shared" / "datasets" / "jomjol_digit11"
    if not source.is_dir():
        pytest.skip("jomjol_digit11 dataset is not available")
    dataset = tmp_path / "digits"
    shutil.copytree(source, dataset / "raw", ignore=shutil.ignore_patterns("*.csv", "*.txt"))
    planted = _plant_problems(dataset / "raw")
    before = _digest(dataset / "raw")

    notebook = paths.notebooks_dir() / "01_explore_split.ipynb"
    params = dict(dataset=str(dataset), reports_dir=str(tmp_path / "reports"),
                  workers=2)
    [item] = runner.plan([notebook], params)
    executed = runner.execute(item, tmp_path / "reports" / "notebooks")

    manifest = splits.read_manifest(dataset / "splits.csv").set_index("path")
    for rel, flag in planted.items():
        assert flag in flags.parse_flags(manifest.loc[rel, "flags"]), (rel, manifest.loc[rel, "flags"])
    for rel in ("raw/3/corrupt half.jpg", "raw/5/zero bytes.jpg", "raw/5/readme.txt",
                "raw/3/zz repeated upload.jpg", "raw/9/zz filed twice.jpg"):
        assert manifest.loc[rel, "split"] == "excluded", rel
    assert manifest.loc["raw/8/phone/rotated.jpg", ["width", "height"]].tolist() == [48, 80]
    assert manifest.loc["raw/7/cmyk ß.jpg", "split"] != "excluded"
    assert splits.check_split(manifest.reset_index()) == []
    assert set(manifest["class"]) >= {"NaN", "0", "9"}  # a class named 'NaN' stays a name

    text = "".join(out.get("text", "") + str(out.get("data", {}))
                   for cell in nbformat.read(executed, as_version=4).cells
                   for out in cell.get("outputs", []))
    for flag in set(planted.values()):
        assert flag in text, f"notebook output does not mention {flag}"
    assert (tmp_path / "reports" / "figures" / "01_contact_sheet.png").is_file()
    assert _digest(dataset / "raw") == before

    links = [p for p in (dataset / "processed").rglob("*") if p.is_symlink()]
    assert len(links) == int((manifest["split"] != "excluded").sum())
