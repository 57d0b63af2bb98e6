"""Fault injection at the commands' outputs: `predict --csv` and `export --out` never destroy a file.

Every case works in a scratch folder whose tree is hashed before and after; a refused output is
refused before any photo is read or any model is loaded.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from meterlib.cli import main as cli
from meterlib.errors import OutputError
from meterlib.export import export, onnx_files
from meterlib.run import atomic, output_path
from meterlib.serve.predictor import Predictor

HEADER = "file,label,unknown,confidence"


@pytest.fixture(autouse=True)
def own_environment(monkeypatch):
    """main() sets OMP_WAIT_POLICY for the torch it loads; keep it from later tests' subprocesses."""
    monkeypatch.setenv("OMP_WAIT_POLICY", "")
    monkeypatch.delenv("OMP_WAIT_POLICY")


@pytest.fixture()
def scratch(tmp_path, monkeypatch, random_checkpoint) -> Path:
    """A working directory with one photo, a copy of a small model and an unrelated text file."""
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)).save("one.png")
    shutil.copy(random_checkpoint, "model.pt")
    Path("important.txt").write_text("the only copy of something\n")
    return tmp_path


@pytest.fixture()
def no_work(monkeypatch):
    """Fail the test if the command gets as far as loading a model or exporting one."""
    def reached(*_, **__):
        raise AssertionError("the command did work before refusing its output")

    monkeypatch.setattr(Predictor, "load", reached)
    monkeypatch.setattr(Predictor, "from_checkpoint", reached)
    monkeypatch.setattr(onnx_files, "write_float32", reached)


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([*map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


# (id, command line, the name the message must hold, the problem it must state)
REFUSED = [
    ("csv-over-unrelated-file", ["predict", "one.png", "--model", "model.pt", "--csv", "important.txt"],
     "important.txt", r"exists and was not written by meterlib; .*--overwrite"),
    ("csv-over-the-photo", ["predict", "one.png", "--model", "model.pt", "--csv", "one.png"],
     "one.png", "is one of this command's inputs"),
    ("csv-over-the-photo-forced", ["predict", "one.png", "--model", "model.pt", "--csv", "one.png", "--overwrite"],
     "one.png", "is one of this command's inputs"),
    ("csv-over-the-model", ["predict", "one.png", "--model", "model.pt", "--csv", "model.pt", "--overwrite"],
     "model.pt", "is one of this command's inputs"),
    ("csv-a-folder", ["predict", "one.png", "--model", "model.pt", "--csv", "sub"],
     "sub", "is a folder; give the name of a file"),
    ("csv-below-a-file", ["predict", "one.png", "--model", "model.pt", "--csv", "important.txt/out.csv"],
     "important.txt/out.csv", r"cannot be written \(important.txt is a file, not a folder\)|Not a directory"),
    ("export-over-its-checkpoint", ["export", "--checkpoint", "model.pt", "--out", "model.pt", "--overwrite"],
     "model.pt", "is one of this command's inputs"),
    ("export-over-unrelated-file", ["export", "--checkpoint", "model.pt", "--out", "important.txt"],
     "important.txt", "exists and was not written by meterlib"),
    ("export-below-a-file", ["export", "--checkpoint", "model.pt", "--out", "important.txt/m.onnx"],
     "important.txt/m.onnx", "cannot be written"),
]


@pytest.mark.parametrize("argv, names, problem", [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED])
def test_an_output_that_would_destroy_a_file_is_refused_before_any_work(scratch, no_work, capsys, robust,
                                                                         argv, names, problem):
    robust.entry = f"meterlib {argv[0]} (CLI)"
    (scratch / "sub").mkdir()
    with robust.untouched(scratch):
        code, out, err = _cli(capsys, *argv)
    assert (code, out) == (1, ""), err
    assert len(err.splitlines()) == 1 and ".tmp" not in err, err
    robust.error(err, names=names, problem=problem)


def test_overwrite_replaces_an_unrelated_file_and_a_csv_of_ours_is_replaced_unasked(scratch, capsys, robust):
    robust.entry = "meterlib predict --csv"
    code, out, _ = _cli(capsys, "predict", "one.png", "--model", "model.pt", "--csv", "important.txt", "--overwrite")
    assert code == 0 and out.startswith("wrote important.txt: 1 file: 0 answered, 0 poor_photo, 0 unseen_type, 1 unsure")
    assert (scratch / "important.txt").read_text().startswith(HEADER)
    # Now it is meterlib's own CSV: a second run replaces it without being told.
    assert _cli(capsys, "predict", "one.png", "--model", "model.pt", "--csv", "important.txt")[0] == 0
    robust.ok("replaced with --overwrite; then replaced as meterlib's own CSV")


def test_csv_dash_goes_to_standard_output_with_the_summary_beside_it(scratch, capsys, robust):
    robust.entry = "meterlib predict --csv -"
    with robust.untouched(scratch):
        code, out, err = _cli(capsys, "predict", "one.png", "--model", "model.pt", "--csv", "-")
    assert code == 0 and not (scratch / "-").exists()
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [row["file"] for row in rows] == ["one.png"] and rows[0]["label"]
    note = Predictor.load(scratch / "model.pt").unseen_type_note  # a model without reference features
    assert err == "1 file: 0 answered, 0 poor_photo, 0 unseen_type, 1 unsure, 0 could not be read\n" + note + "\n"
    robust.ok("CSV on stdout, summary on stderr, no file named '-'")


def test_csv_through_a_link_replaces_its_target_and_keeps_the_link(scratch, capsys, robust):
    robust.entry = "meterlib predict --csv LINK"
    (scratch / "runs").mkdir()
    (scratch / "runs" / "answers.csv").write_text(HEADER + ",old\n")
    os.symlink("runs/answers.csv", scratch / "latest.csv")
    code, _, err = _cli(capsys, "predict", "one.png", "--model", "model.pt", "--csv", "latest.csv")
    assert (code, err) == (0, "")
    assert os.readlink(scratch / "latest.csv") == "runs/answers.csv"
    assert "one.png" in (scratch / "runs" / "answers.csv").read_text()
    robust.ok("the link kept, the CSV it points to replaced")


def test_a_name_that_is_not_utf8_is_written_escaped_and_costs_no_row(scratch, capsys, robust):
    robust.entry = "meterlib predict --csv"
    folder = scratch / "photos"
    folder.mkdir()
    shutil.copy(scratch / "one.png", folder / "good.png")
    shutil.copy(scratch / "one.png", os.path.join(os.fsencode(folder), b"bad\xff\xfe.png"))
    with robust.untouched(folder):
        code, out, err = _cli(capsys, "predict", "photos", "--model", "model.pt", "--csv", "out.csv")
    assert (code, err) == (0, ""), err
    rows = list(csv.DictReader(open(scratch / "out.csv", encoding="utf-8", newline="")))
    assert [row["file"] for row in rows] == ["photos/bad\\xff\\xfe.png", "photos/good.png"]
    assert all(row["label"] and not row["error"] for row in rows)
    robust.ok("both rows written, the name as photos/bad\\xff\\xfe.png")


FORGED = "a_meter.png\x1b[1A\x1b[2K\ra_meter.png BREVOLT2 99.9 %.png"


def test_escapes_in_a_name_cannot_forge_the_table(scratch, capsys, robust):
    robust.entry = "meterlib predict (table)"
    shutil.copy(scratch / "one.png", scratch / FORGED)
    code, out, err = _cli(capsys, "predict", FORGED, "one.png", "--model", "model.pt")
    assert (code, err) == (0, "")
    assert "\x1b" not in out and "\r" not in out
    assert "a_meter.png\\x1b[1A\\x1b[2K\\x0da_meter.png BREVOLT2 99.9 %.png" in out
    assert len(out.splitlines()) == 1 + 2 + 2  # header, two rows, summary, the note on unseen_type
    robust.ok("escape codes shown as \\x1b, one row per file")


def test_escapes_in_a_missing_name_cannot_forge_the_error_line(scratch, capsys, robust):
    robust.entry = "meterlib predict (error)"
    code, _, err = _cli(capsys, "predict", "gone\x1b[2K\r.png", "--model", "model.pt")
    assert code == 1 and "\x1b" not in err and "gone\\x1b[2K\\x0d.png" in err
    robust.ok("error line escaped")


@pytest.mark.parametrize("start", ["=", "+", "-", "@"])
def test_a_cell_a_spreadsheet_would_run_is_neutralised(scratch, capsys, robust, start):
    robust.entry = "meterlib predict --csv"
    name = f"{start}HYPERLINK(x).png"
    shutil.copy(scratch / "one.png", scratch / name)
    assert _cli(capsys, "predict", "--model", "model.pt", "--csv", "out.csv", "--", name)[0] == 0
    rows = list(csv.DictReader(open(scratch / "out.csv", newline="")))
    assert rows[0]["file"] == "'" + name
    robust.ok(f"written as '{start}...")


def test_a_failing_write_names_the_file_asked_for_not_the_temporary_one(tmp_path, monkeypatch, robust):
    robust.entry = "atomic.write_text"
    def full(*_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError) as raised:
        atomic.write_text(tmp_path / "answers.csv", "x")
    assert raised.value.errno == errno.ENOSPC and ".tmp" not in str(raised.value)
    robust.error(str(raised.value), names=tmp_path / "answers.csv", problem=r"cannot write .* \(No space left")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_without_write_permission_is_refused_first(tmp_path, monkeypatch, robust):
    robust.entry = "output_path.check"
    (tmp_path / "locked").mkdir()
    real_access = os.access
    # Root may write anywhere; fake the refusal the kernel gives every other user.
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path).name != "locked" and real_access(path, mode))
    with pytest.raises(OutputError) as raised:
        output_path.check(tmp_path / "locked" / "new" / "a.csv", ours=lambda _: True)
    robust.error(str(raised.value), names=tmp_path / "locked", problem="no permission to write in")


def test_export_says_each_step_when_asked(monkeypatch, tmp_path, random_checkpoint, capsys):
    class Stop(Exception):
        pass

    def stop(*_, **__):
        raise Stop

    monkeypatch.setattr(export.check, "split_photos", stop)
    with pytest.raises(Stop):
        export.export_model(random_checkpoint, splits_csv=tmp_path / "splits.csv",
                            out=tmp_path / "m.onnx", progress=True)
    assert capsys.readouterr().err == ""  # no step before the first real one
    photos = export.check.SplitPhotos("test", [], np.array([]))
    monkeypatch.setattr(export.check, "split_photos", lambda *_, **__: photos)
    monkeypatch.setattr(export.onnx_files, "write_float32", stop)
    with pytest.raises(Stop):
        export.export_model(random_checkpoint, splits_csv=tmp_path / "splits.csv",
                            out=tmp_path / "m.onnx", progress=True)
    steps = capsys.readouterr().err.splitlines()
    assert [line.split("] ")[1] for line in steps] == ["reading 0 test photos for the check ...",
                                                      "exporting the float32 network ..."]
    assert all(line.startswith("export [") for line in steps)
