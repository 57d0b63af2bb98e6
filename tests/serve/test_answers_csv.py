"""The answers CSV: its columns, one row per photo with the reason an UNKNOWN names no type, safe cells."""

import csv
import io

import pytest

from meterlib.serve import answers_csv
from meterlib.serve.predictor import POOR_PHOTO, UNKNOWN, UNSEEN_TYPE, UNSURE, Outcome, Prediction


def _answer(label="alpha", *, reason=None, detail="", unseen_p=None, confidence=0.8):
    return Prediction(label=UNKNOWN if reason else label, unknown=reason is not None, confidence=confidence,
                      top_classes=["alpha", "beta"], top_probabilities=[confidence, 1 - confidence],
                      prediction_set=["alpha", "beta"], reason=reason, detail=detail, unseen_p=unseen_p)


OUTCOMES = [
    Outcome("named.jpg", _answer(unseen_p=0.5), None),
    Outcome("dark.jpg", _answer(reason=POOR_PHOTO, detail="too dark (brightness 0.01 < 0.1)",
                                unseen_p=0.25), None),
    Outcome("new.jpg", _answer(reason=UNSEEN_TYPE, confidence=0.97, unseen_p=0.0123456789,
                               detail="unlike every known type: p = 0.012, below 0.05 (nearest training photo: "
                                      "beta, similarity 0.41)"), None),
    Outcome("torn.jpg", _answer(reason=UNSURE, confidence=0.55,
                                detail="torn between alpha (55.0%) and beta (45.0%); answers need 90.0%"), None),
    Outcome("empty.jpg", None, "empty (0 bytes)"),
]


def _read(outcomes, top_k=2) -> list[dict]:
    return list(csv.DictReader(io.StringIO(answers_csv.csv_text(outcomes, top_k=top_k), newline="")))


def test_the_reason_columns_follow_the_set_and_earlier_answer_files_are_still_recognised():
    assert answers_csv.csv_columns(1) == ["file", "label", "unknown", "confidence", "top1_class", "top1_probability",
                                          "prediction_set", "reason", "detail", "unseen_p", "error"]
    assert answers_csv.CSV_HEADER_START == b"file,label,unknown,confidence,"
    assert answers_csv.csv_text(OUTCOMES, top_k=2).encode().startswith(answers_csv.CSV_HEADER_START)


def test_each_unknown_row_carries_its_reason_detail_and_unseen_p():
    rows = {row["file"]: row for row in _read(OUTCOMES)}
    for outcome in OUTCOMES[1:4]:
        row, answer = rows[outcome.source], outcome.prediction
        assert (row["label"], row["unknown"], row["error"]) == (UNKNOWN, "True", "")
        assert (row["reason"], row["detail"]) == (answer.reason, answer.detail)
    assert rows["dark.jpg"]["unseen_p"] == "0.25"
    assert rows["new.jpg"]["unseen_p"] == "0.012346" and rows["new.jpg"]["confidence"] == "0.97"
    assert rows["torn.jpg"]["unseen_p"] == ""  # the model gave no unseen-type score


def test_an_answered_row_has_no_reason_but_its_unseen_p_and_an_error_row_only_its_error():
    rows = {row["file"]: row for row in _read(OUTCOMES)}
    named = rows["named.jpg"]
    assert (named["label"], named["unknown"], named["reason"], named["detail"]) == ("alpha", "False", "", "")
    assert named["unseen_p"] == "0.5"
    failed = rows["empty.jpg"]
    assert failed["error"] == "empty (0 bytes)"
    assert all(value == "" for column, value in failed.items() if column not in ("file", "error"))


@pytest.mark.parametrize("detail, cell", [("-torn between =A and B", "'-torn between =A and B"),
                                          ("nearest training photo: m\x1b[2Jx", "nearest training photo: m\\x1b[2Jx")])
def test_the_detail_cell_is_safe_in_a_spreadsheet(detail, cell):
    [row] = _read([Outcome("a.jpg", _answer(reason=UNSURE, detail=detail), None)])
    assert row["detail"] == cell
