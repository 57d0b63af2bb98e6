"""``python -m meterlib predict``: one row per file (error rows included), and one-line errors that exit 1."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from meterlib.cli import predict
from meterlib.cli.main import main
from meterlib.confidence.fitted import Calibration
from meterlib.confidence.photo_limits import PhotoLimits
from meterlib.confidence.unseen import UnseenRule
from meterlib.model import backbones, checkpoint, reference
from meterlib.serve import Predictor
from meterlib.serve.predictor import POOR_PHOTO, REASONS, UNSEEN_TYPE, UNSURE, Outcome, Prediction

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


def _note(model) -> str:
    """Why the model cannot flag unseen types (the random checkpoint has no reference features)."""
    note = Predictor.from_checkpoint(model).unseen_type_note
    assert note.startswith("unseen_type is unavailable")
    return note


def run(*args, capsys):
    code = main(["predict", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_csv_has_one_row_per_file_with_error_rows(planted, random_checkpoint, capsys):
    code, out, err = run("photos", "--checkpoint", random_checkpoint, "--csv", "out/answers.csv", "--top-k", "2",
                         capsys=capsys)
    assert (code, err) == (0, "")
    assert out == ("wrote out/answers.csv: 7 files: 0 answered, 0 poor_photo, 0 unseen_type, 4 unsure, 3 could not "
                   "be read; 2 files skipped in folders: 1 .txt (not photo formats meterlib reads), 1 hidden (names "
                   f"starting with '.')\n{_note(random_checkpoint)}\n")
    with open(planted / "out/answers.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["file"] for row in rows] == sorted(GOOD + list(BAD))
    assert list(rows[0]) == ["file", "label", "unknown", "confidence", "top1_class", "top1_probability",
                             "top2_class", "top2_probability", "prediction_set", "reason", "detail", "unseen_p",
                             "error"]
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
        assert (row["reason"], row["detail"], row["unseen_p"]) == (UNSURE, answer.detail, "")  # no reference features
    assert sorted(p.name for p in (planted / "out").iterdir()) == ["answers.csv"]  # no temporary file left


def test_table_lists_every_file_once_with_its_answer_or_error(planted, random_checkpoint, capsys):
    code, out, err = run("photos/a.jpg", "photos", "photos/notes.txt", "photos/gone.jpg",
                         "--checkpoint", random_checkpoint, capsys=capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["file", "answer", "confidence", "top", "3", "prediction", "set", "why", "error"]
    assert lines[-2] == ("9 files: 0 answered, 0 poor_photo, 0 unseen_type, 4 unsure, 5 could not be read; 2 files "
                         "skipped in folders: 1 .txt (not photo formats meterlib reads), 1 hidden (names starting "
                         "with '.')")
    assert lines[-1] == _note(random_checkpoint)  # said once, not per row
    table = {line.split()[0]: line for line in lines[1:-2]}
    assert sorted(table) == sorted(GOOD + list(BAD) + ["photos/notes.txt", "photos/gone.jpg"])
    assert table["photos/gone.jpg"].endswith("file not found")
    assert table["photos/notes.txt"].endswith("not an image file (format not recognised)")
    assert "UNKNOWN (unsure)" in table["photos/tiny.png"] and "torn between" in table["photos/tiny.png"]


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
    # The confidence and its threshold, every class, then the why: two classes and the threshold.
    assert out.splitlines()[1].count("%") == 8
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
    assert done.stdout.splitlines()[-2:] == ["2 files: 0 answered, 0 poor_photo, 0 unseen_type, 1 unsure, "
                                             "1 could not be read", _note(random_checkpoint)]


def test_a_mistyped_only_path_is_an_error_not_an_empty_success(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "myphotoz"), "--checkpoint", str(tmp_path / "unused.pt")]) == 1
    assert "myphotoz" in capsys.readouterr().err


def _outcome(confidence, reason=None, detail=""):
    return Outcome("a.jpg", Prediction("UNKNOWN" if reason else "X", reason is not None, confidence, ["X"],
                                       [confidence], ["X"], reason=reason, detail=detail), None)


def test_a_confidence_below_the_threshold_is_shown_beside_it_with_digits_enough_to_tell_them_apart():
    rows = predict.format_table([_outcome(0.8996, UNSURE), _outcome(0.3, UNSURE), _outcome(0.95)], top_k=1,
                                threshold=0.9).splitlines()
    assert "89.96% < 90.00%" in rows[1] and "30.0% < 90.0%" in rows[2]
    assert "95.0%" in rows[3] and "<" not in rows[3]


def test_an_unknown_for_another_reason_is_not_said_to_fall_below_the_threshold():
    rows = predict.format_table([_outcome(0.97, UNSEEN_TYPE, "unlike every known type: p = 0.010, below 0.05"),
                                 _outcome(0.3, POOR_PHOTO, "too dark (brightness 0.01 < 0.1)")],
                                top_k=1, threshold=0.9).splitlines()
    assert rows[1].split()[1:4] == ["UNKNOWN", "(unseen_type)", "97.0%"] and "<" not in rows[1]
    assert rows[1].endswith("unlike every known type: p = 0.010, below 0.05")
    assert rows[2].split()[1:6] == ["UNKNOWN", "(poor_photo)", "30.0%", "<", "90.0%"]  # true: also below


def test_the_why_column_escapes_the_names_in_a_detail():
    [_, row] = predict.format_table([_outcome(0.3, UNSURE, "torn between m\x1b[2J (30.0%) and n (20.0%)")], top_k=1,
                                    threshold=0.9).splitlines()
    assert "\x1b" not in row and "torn between m\\x1b[2J (30.0%)" in row


def test_the_summary_counts_the_answers_by_reason():
    outcomes = [_outcome(0.95), _outcome(0.95), _outcome(0.97, UNSEEN_TYPE), _outcome(0.3, UNSURE),
                _outcome(0.2, UNSURE), _outcome(0.2, UNSURE), _outcome(0.9, POOR_PHOTO),
                Outcome("b.jpg", None, "empty (0 bytes)")]
    assert predict.summary(outcomes) == ("8 files: 2 answered, 1 poor_photo, 1 unseen_type, 3 unsure, "
                                         "1 could not be read")
    assert predict.summary(outcomes[:1]) == ("1 file: 1 answered, 0 poor_photo, 0 unseen_type, 0 unsure, "
                                             "0 could not be read")


@pytest.fixture(scope="module")
def reasoned(tmp_path_factory) -> dict:
    """A checkpoint whose answers hold every reason, its photos and the reason (None: a type) of each.

    Reference features of the known photos; an unseen-type rule that flags a photo less similar than
    0.99 to its nearest known photo (every other photo is); a threshold between two known photos'
    confidences; a smallest photo side of 30 pixels.
    """
    root = tmp_path_factory.mktemp("reasoned")
    rng = np.random.default_rng(3)
    known, new = [root / f"known{i}.png" for i in range(6)], [root / f"new{i}.png" for i in range(2)]
    for path in known + new:
        Image.fromarray(rng.integers(0, 256, (48, 56, 3), dtype=np.uint8)).save(path)
    Image.fromarray(rng.integers(0, 256, (20, 40, 3), dtype=np.uint8)).save(root / "small.png")
    torch.manual_seed(0)
    model = backbones.build_classifier("random", 3, pretrained=False)
    spec = checkpoint.ModelSpec("random", ["zeta", "alpha", "mu"], 32, mean=(0.5,) * 3, std=(0.25,) * 3)
    features = reference.build(model, known, [0, 1, 2, 0, 1, 2], spec=spec)
    base = checkpoint.save(root / "base.pt", model=model, spec=spec, reference_features=features)
    evidence = predict.load_predictor(base).evidence(known + new)
    assert min(evidence.similarity[:6]) > 0.995 and max(evidence.similarity[6:]) < 0.985  # what the rule needs
    confidences = np.sort(Calibration().probabilities(evidence.logits[:6]).max(axis=1))
    gap = int(np.argmax(np.diff(confidences)))
    assert confidences[gap + 1] - confidences[gap] > 1e-3
    threshold = float(confidences[gap:gap + 2].mean())
    calibration = Calibration(unknown_threshold=threshold, photo_limits=PhotoLimits(0, 0, 0, short_side=30),
                              unseen_type=UnseenRule(energy=[-1e9] * 9, similarity=[0.99] * 9, fused=[0.5] * 9,
                                                     alpha=0.2))
    path = checkpoint.save(root / "ckpt.pt", model=model, spec=spec, reference_features=features,
                           **calibration.to_fields())
    expected = {"small.png": POOR_PHOTO, "new0.png": UNSEEN_TYPE, "new1.png": UNSEEN_TYPE}
    probabilities = calibration.probabilities(evidence.logits[:6]).max(axis=1)
    expected.update({f"known{i}.png": None if p >= threshold else UNSURE for i, p in enumerate(probabilities)})
    return {"root": root, "checkpoint": path, "expected": expected, "threshold": threshold}


def test_the_table_and_summary_give_each_photos_reason(reasoned, capsys, monkeypatch):
    monkeypatch.chdir(reasoned["root"])
    code, out, err = run(*sorted(reasoned["expected"]), "--checkpoint", "ckpt.pt", capsys=capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    table = {line.split()[0]: line.split(maxsplit=3) for line in lines[1:-1]}
    outcomes = {outcome.source: outcome.prediction for outcome in
                predict.load_predictor("ckpt.pt").predict_each(sorted(reasoned["expected"]))}
    for name, reason in reasoned["expected"].items():
        answer = outcomes[name]
        assert answer.reason == reason
        if reason is None:
            assert table[name][1] in ("zeta", "alpha", "mu") and table[name][1] == answer.label
        else:
            assert table[name][1:3] == ["UNKNOWN", f"({reason})"] and answer.detail
            assert table[name][3].rstrip().endswith(answer.detail)
        # Beside the threshold exactly when below it: an unseen type (or a poor photo) may be above it.
        below = answer.confidence < reasoned["threshold"]
        assert (f"{answer.confidence:.1%} < " in " ".join(table[name])) is below
    counts = {reason: list(reasoned["expected"].values()).count(reason) for reason in (None, *REASONS)}
    assert counts[None] and counts[UNSURE]  # the threshold splits the known photos
    assert lines[-1] == (f"9 files: {counts[None]} answered, 1 poor_photo, 2 unseen_type, {counts[UNSURE]} unsure, "
                         "0 could not be read")  # and no note: this model flags unseen types


def test_the_csv_gives_each_photos_reason_detail_and_unseen_p(reasoned, capsys, monkeypatch):
    monkeypatch.chdir(reasoned["root"])
    code, out, err = run(*sorted(reasoned["expected"]), "--checkpoint", "ckpt.pt", "--csv", "answers.csv",
                         capsys=capsys)
    assert (code, err) == (0, "") and out.startswith("wrote answers.csv: 9 files: ") and out.count("\n") == 1
    with open("answers.csv", newline="") as handle:
        rows = {row["file"]: row for row in csv.DictReader(handle)}
    outcomes = predict.load_predictor("ckpt.pt").predict_each(sorted(reasoned["expected"]))
    for outcome in outcomes:
        row, answer = rows[outcome.source], outcome.prediction
        assert row["reason"] == (reasoned["expected"][outcome.source] or "")
        assert row["detail"] == answer.detail and (row["detail"] == "") == (answer.reason is None)
        assert float(row["unseen_p"]) == pytest.approx(answer.unseen_p, abs=1e-6)
    assert float(rows["new0.png"]["unseen_p"]) <= 0.2 < float(rows["known0.png"]["unseen_p"])


def test_a_released_model_without_unseen_type_says_so_once(planted, capsys):
    spec = checkpoint.ModelSpec("random", ["zeta", "alpha", "mu"], 32, mean=(0.5,) * 3, std=(0.25,) * 3)
    released = checkpoint.save(planted / "released.pt", spec=spec,
                               model=backbones.build_classifier("random", 3, pretrained=False),
                               **Calibration(unknown_threshold=0.2, conformal_quantile=0.9).to_fields())
    with pytest.warns(UserWarning, match="unseen_type is unavailable"):  # what loading it says ...
        note = Predictor.from_checkpoint(released).unseen_type_note
    code, out, err = run("photos/a.jpg", "photos/b.png", "--checkpoint", released, capsys=capsys)
    assert (code, err) == (0, "")  # ... predict holds back: its summary says it once
    assert out.count("unseen_type is unavailable") == 1 and out.splitlines()[-1] == note
