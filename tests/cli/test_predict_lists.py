"""``meterlib predict`` on lists of paths and URLs: one row per entry, in order, failures as error rows."""

import csv
from pathlib import Path

import local_http
import pytest

from meterlib.cli.main import main
from meterlib.serve import sources


@pytest.fixture(autouse=True)
def own_environment(monkeypatch):
    """main() sets OMP_WAIT_POLICY for the torch it loads; keep it from later tests' subprocesses."""
    monkeypatch.setenv("OMP_WAIT_POLICY", "")
    monkeypatch.delenv("OMP_WAIT_POLICY")


@pytest.fixture(scope="module")
def server():
    with local_http.serving() as running:
        yield running


@pytest.fixture()
def sheet(tmp_path, monkeypatch, server):
    """lists/sheet.csv: a URL of a photo, a local photo beside it, a dead link and a web page, in that order."""
    monkeypatch.chdir(tmp_path)
    Path("lists").mkdir()
    Path("lists/near.png").write_bytes(local_http.PNG)
    urls = [server.url("good.jpg"), server.url("gone.jpg"), server.url("page")]
    rows = [("m1", urls[0]), ("m2", "near.png"), ("m3", urls[1]), ("m4", urls[2])]
    Path("lists/sheet.csv").write_text("meter,photo\n" + "".join(f"{meter},{photo}\n" for meter, photo in rows))
    return [urls[0], "lists/near.png", urls[1], urls[2]]


def _rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_csv_list_gives_one_row_per_entry_in_its_order(sheet, server, random_checkpoint, capsys, monkeypatch):
    monkeypatch.delenv("METERLIB_OFFLINE", raising=False)
    code = main(["predict", "lists/sheet.csv", "--column", "photo", "--checkpoint", str(random_checkpoint),
                 "--csv", "answers.csv"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, ""), err
    assert out.startswith("wrote answers.csv: 4 files: 0 answered, 0 poor_photo, 0 unseen_type, 2 unsure, "
                          "2 could not be read")
    rows = _rows("answers.csv")
    assert [row["file"] for row in rows] == sheet
    assert [row["error"] for row in rows] == ["", "", "HTTP 404 Not Found",
                                              "the server sent a web page or text (text/html), not a photo"]


def test_offline_each_url_row_names_its_url_and_nothing_is_fetched(sheet, server, random_checkpoint, capsys):
    code = main(["predict", "lists/sheet.csv", "--column", "photo", "--checkpoint", str(random_checkpoint),
                 "--csv", "answers.csv"])
    assert code == 0, capsys.readouterr().err
    rows = _rows("answers.csv")
    assert [(row["file"], row["error"]) for row in rows if row["error"]] == [
        (url, sources.OFFLINE_PROBLEM) for url in (sheet[0], sheet[2], sheet[3])]
    assert rows[1]["file"] == "lists/near.png" and rows[1]["label"]
    assert [server.hits(url) for url in (sheet[0], sheet[2], sheet[3])] == [0, 0, 0]


def test_the_csv_may_not_replace_the_list_it_reads(sheet, random_checkpoint, capsys):
    before = Path("lists/sheet.csv").read_text()
    code = main(["predict", "lists/sheet.csv", "--column", "photo", "--checkpoint", str(random_checkpoint),
                 "--csv", "lists/sheet.csv", "--overwrite"])
    assert code == 1
    assert capsys.readouterr().err == ("meterlib predict: lists/sheet.csv: is one of this command's inputs; "
                                       "give another name\n")
    assert Path("lists/sheet.csv").read_text() == before


def test_a_mistyped_column_is_one_line_naming_the_list_and_its_columns(sheet, random_checkpoint, capsys):
    code = main(["predict", "lists/sheet.csv", "--column", "phot", "--checkpoint", str(random_checkpoint)])
    assert code == 1
    assert capsys.readouterr().err == ("meterlib predict: lists/sheet.csv: no column 'phot' (did you mean 'photo'?); "
                                       "its columns are 'meter', 'photo'\n")
