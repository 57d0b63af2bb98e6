"""The answers CSV of ``meterlib predict``: its columns, its cells (safe to open in a spreadsheet), its header."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

from meterlib.data.listing import shown_name
from meterlib.run import atomic
from meterlib.serve.predictor import Outcome

SET_SEPARATOR = "|"  # joins a prediction set's classes in one cell (as in notebook 03's results)
FIRST_COLUMNS = ("file", "label", "unknown", "confidence")  # then the top-k, the set, the reason and the error
# How every CSV of this command begins, whatever its top-k: how an earlier answers file is recognised.
CSV_HEADER_START = (",".join(FIRST_COLUMNS) + ",").encode()
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection); tabs and
# carriage returns, the other two starts that do, are escaped with every control character.
_FORMULA_STARTS = ("=", "+", "-", "@")


def csv_columns(top_k: int) -> list[str]:
    """The CSV's columns: file, label, unknown, confidence, top1..topK class and probability, set,
    reason, detail, unseen_p, error."""
    ranked = [f"top{rank}_{what}" for rank in range(1, top_k + 1) for what in ("class", "probability")]
    return [*FIRST_COLUMNS, *ranked, "prediction_set", "reason", "detail", "unseen_p", "error"]


def csv_rows(outcomes: Sequence[Outcome], *, top_k: int) -> list[dict]:
    """One dict of ``csv_columns`` per photo; the answer's cells stay empty in an error row.

    ``reason`` and ``detail`` are empty for a photo answered with a type; ``unseen_p`` is empty where
    the model has no unseen-type score.
    """
    rows = []
    for outcome in outcomes:
        row = dict.fromkeys(csv_columns(top_k), "")
        row.update(file=outcome.source, error=outcome.error or "")
        answer = outcome.prediction
        if answer is not None:
            row.update(label=answer.label, unknown=answer.unknown, confidence=round(answer.confidence, 6),
                       prediction_set=SET_SEPARATOR.join(answer.prediction_set), reason=answer.reason or "",
                       detail=answer.detail, unseen_p="" if answer.unseen_p is None else round(answer.unseen_p, 6))
            for rank, (name, probability) in enumerate(zip(answer.top_classes, answer.top_probabilities), 1):
                row[f"top{rank}_class"], row[f"top{rank}_probability"] = name, round(probability, 6)
        rows.append({column: _cell(value) for column, value in row.items()})
    return rows


def _cell(value):
    """A value as a CSV cell: text with its control characters escaped, and quoted with a leading
    apostrophe where a spreadsheet would run it as a formula."""
    if not isinstance(value, str):
        return value
    value = shown_name(value)
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def csv_text(outcomes: Sequence[Outcome], *, top_k: int) -> str:
    """The CSV of the outcomes: a header of ``csv_columns``, then ``csv_rows``."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=csv_columns(top_k))
    writer.writeheader()
    writer.writerows(csv_rows(outcomes, top_k=top_k))
    return text.getvalue()


def write_csv(path: str | os.PathLike, outcomes: Sequence[Outcome], *, top_k: int) -> Path:
    """Atomically write ``csv_text`` of the outcomes (a reader never sees half a file)."""
    atomic.write_text(path, csv_text(outcomes, top_k=top_k))
    return Path(path)
