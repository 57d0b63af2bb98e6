"""``python -m meterlib predict``: one row per file (error rows included), and one-line errors that exit 1."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from meterlib.cli.main import main
from meterlib.serve import Predictor

GOOD = ["photos/a.jpg", "photos/b.png", "photos/sub/c.jpg", "photos/tiny.png"]
BAD = {"photos/empty.jpg": "empty (0 bytes)",
       "photos/letter.jpg": "not an image file (format not recognised)",
       "photos/cut.jpg": "unreadable or truncated image"}


@pytest.fixture(autouse=True)
def own_environment(monkeypatch):
    """main() sets OMP_WAIT_POLICY for the torch it loads; keep it from later tests' subprocesses."""
    monkeypatch.setenv("OMP_WAIT_POLICY", "")
    monkeypatch.delenv("OMP_WAIT_POLICY")


@pytest.fixture()
def planted(tmp_path, monkeypatch):
    """A folder of good photos, a 1x1 PNG, broken files, a subfolder and files that are not photos."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos" / "sub").mkdir(parents=True)
    (tmp_path / "photos" / ".thumbs").mkdir()
    rng = np.random.default_rng(0)
    for name in GOOD[:3] + ["photos/.thumbs/x.jpg"]:
        Image.fromarray(rng.integers(0, 256, (80, 60, 3), dtype=np.uint8)).save(name)
    Image.new("RGB", (1, 1), (10, 200, 10)).save("photos/tiny.png")
    jpeg = (tmp_path / "photos/a.jpg").read_bytes()
    (tmp_path / "photos/cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "photos/empty.jpg").write_bytes(b"")
    (tmp_path / "photos/letter.jpg").write_text("Dear customer, your meter ...")
    (tmp_path / "photos/notes.txt").write_text("not a photo, and not named on the command line")
    return tmp_path


def run(*args, capsys):
    code = main(["predict", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_csv_has_one_row_per_file_with_error_rows(planted, random_checkpoint, capsys):
    code, out, err = run("photos", "--checkpoint", random_checkpoint, "--csv", "out/answers.csv", "--top-k", "2",
                         capsys=capsys)
    assert (code, err) == (0, "")
    assert out == ("wrote out/answers.csv: 7 files: 4 answered (4 UNKNOWN), 3 could not be read; 2 files skipped "
                   "in folders: 1 .txt (not photo formats meterlib reads), 1 hidden (names starting with '.')\n")
    with open(planted / "out/answers.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["file"] for row in rows] == sorted(GOOD + list(BAD))
    assert list(rows[0]) == ["file", "label", "unknown", "confidence", "top1_class", "top1_probability",
                             "top2_class", "top2_probability", "prediction_set", "error"]
    by_file = {row["file"]: row for row in rows}
    for name, problem in BAD.items():
        assert by_file[name]["error"].startswith(problem) and by_file[name]["label"] == ""
    expected = Predictor.from_checkpoint(random_checkpoint, device="cpu").predict_many(GOOD, top_k=2)
    for name, answer in zip(GOOD, expected):
        row = by_file[name]
        assert (row["label"], row["unknown"], row["error"]) == (answer.label, str(answer.unknown), "")
        assert [row["top1_class"], row["top2_class"]] == answer.top_classes
        assert float(row["top1_probability"]) == pytest.approx(answer.top_probabilities[0], abs=1e-5)
        assert float(row["confidence"]) == pytest.approx(answer.confidence, abs=1e-5)
        assert row["prediction_set"].split("|") == answer.prediction_set
    assert sorted(p.name for p in (planted / "out").iterdir()) == ["answers.csv"]  # no temporary file left


def test_table_lists_every_file_once_with_its_answer_or_error(planted, random_checkpoint, capsys):
    code, out, err = run("photos/a.jpg", "photos", "photos/notes.txt", "photos/gone.jpg",
                         "--checkpoint", random_checkpoint, capsys=capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["file", "answer", "confidence", "top", "3", "prediction", "set", "error"]
    assert lines[-1] == ("9 files: 4 answered (4 UNKNOWN), 5 could not be read; 2 files skipped in folders: "
                         "1 .txt (not photo formats meterlib reads), 1 hidden (names starting with '.')")
    table = {line.split()[0]: line for line in lines[1:-1]}
    assert sorted(table) == sorted(GOOD + list(BAD) + ["photos/notes.txt", "photos/gone.jpg"])
    assert table["photos/gone.jpg"].endswith("file not found")
    assert table["photos/notes.txt"].endswith("not an image file (format not recognised)")
    assert "UNKNOWN" in table["photos/tiny.png"] and "%" in table["photos/tiny.png"]


def test_explicit_settings_reach_the_predictor(planted, random_checkpoint, capsys, monkeypatch):
    batch_sizes = []
    predict_each = Predictor.predict_each

    def spy(self, sources, **options):
        batch_sizes.append(options["batch_size"])
        return predict_each(self, sources, **options)

    monkeypatch.setattr(Predictor, "predict_each", spy)
    code, out, _ = run("photos/a.jpg", "--checkpoint", random_checkpoint, "--top-k", "5", "--batch-size", "1",
                       capsys=capsys)
    assert code == 0 and "top 3" in out.splitlines()[0]  # 5 asked, the model has 3 classes
    assert out.splitlines()[1].count("%") == 5  # the confidence and its threshold, then every class
    assert run("photos/a.jpg", "--checkpoint", random_checkpoint, capsys=capsys)[0] == 0
    assert batch_sizes == [1, 16]


def test_predict_keeps_progress_bars_and_lets_idle_threads_sleep(planted, random_checkpoint, capsys, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    code, _, _ = run("photos/a.jpg", "--checkpoint", random_checkpoint, capsys=capsys)
    assert code == 0 and "TQDM_DISABLE" not in os.environ and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_a_missing_checkpoint_says_how_to_get_one(planted, capsys):
    code, out, err = run("photos", "--checkpoint", planted / "none.pt", capsys=capsys)
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and err.startswith(f"meterlib predict: {planted / 'none.pt'}: checkpoint not found")
    assert "bash run.sh demo" in err


def test_the_default_checkpoint_is_the_projects_released_model(planted, capsys, monkeypatch):
    monkeypatch.setenv("METERLIB_REPORTS_DIR", str(planted / "reports"))
    code, _, err = run("photos", capsys=capsys)
    assert code == 1 and f"{planted / 'reports' / 'model' / 'meterlib_checkpoint.pt'}: checkpoint not found" in err


def test_a_broken_checkpoint_is_one_line_naming_it(planted, capsys):
    (planted / "model.pt").write_text("epochs: 6\n")
    code, out, err = run("photos", "--checkpoint", "model.pt", capsys=capsys)
    assert (code, out) == (1, "")
    assert err == "meterlib predict: model.pt: not a meterlib checkpoint (not a PyTorch file)\n"


def test_no_photos_is_one_line_naming_the_folder(planted, random_checkpoint, capsys):
    (planted / "empty").mkdir()
    code, out, err = run("empty", "--checkpoint", random_checkpoint, "--csv", "x.csv", capsys=capsys)
    assert (code, out, err) == (1, "", "meterlib predict: no photos found in empty\n")
    assert not (planted / "x.csv").exists()


@pytest.mark.parametrize("option", ["--top-k", "--batch-size"])
def test_counts_must_be_positive(option, capsys):
    with pytest.raises(SystemExit) as raised:
        main(["predict", "x.jpg", option, "0"])
    assert raised.value.code == 2 and "must be a positive integer, got '0'" in capsys.readouterr().err


def test_python_dash_m_runs_the_command(planted, random_checkpoint):
    done = subprocess.run([sys.executable, "-m", "meterlib", "predict", "photos/a.jpg", "photos/empty.jpg",
                           "--checkpoint", str(random_checkpoint)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "2 files: 1 answered (1 UNKNOWN), 1 could not be read"


def test_a_mistyped_only_path_is_an_error_not_an_empty_success(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "myphotoz"), "--checkpoint", str(tmp_path / "unused.pt")]) == 1
    assert "myphotoz" in capsys.readouterr().err


def test_an_unknown_shows_the_threshold_it_fell_below_with_digits_enough_to_tell_them_apart():
    from meterlib.cli.predict import format_table
    from meterlib.serve.predictor import Outcome, Prediction

    def outcome(confidence, unknown):
        return Outcome("a.jpg", Prediction("UNKNOWN" if unknown else "X", unknown, confidence, ["X"],
                                           [confidence], ["X"]), None)

    rows = format_table([outcome(0.8996, True), outcome(0.3, True), outcome(0.95, False)], top_k=1,
                        threshold=0.9).splitlines()
    assert "89.96% < 90.00%" in rows[1] and "30.0% < 90.0%" in rows[2]
    assert "95.0%" in rows[3] and "<" not in rows[3]
