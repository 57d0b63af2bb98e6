"""``python -m meterlib predict``: photos and folders in, a table or a CSV of answers out, one row per file."""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from meterlib.model.checkpoint import CheckpointError
from meterlib.run import atomic
from meterlib.serve import batch
from meterlib.serve.predictor import Outcome, Predictor

SET_SEPARATOR = "|"  # joins a prediction set's classes in one cell (as in notebook 03's results)
PROGRESS_FROM = 9  # photos from which a progress bar is shown (on a terminal)
# Smaller than the API's 32: on 2 CPU cores a batch of 16 stays in the cache, ~20% less CPU per photo.
BATCH_SIZE = 16


def predict_files(arguments: Sequence[str | os.PathLike], *, model: str | os.PathLike,
                  csv_path: str | os.PathLike | None = None, top_k: int = 3,
                  batch_size: int = BATCH_SIZE) -> str:
    """Predict every photo named or found in ``arguments``; the table (or, with ``csv_path``, a summary)."""
    files = batch.expand_inputs(arguments)
    predictor = load_predictor(model)
    outcomes = predictor.predict_each(files, top_k=top_k, batch_size=batch_size,
                                      progress=len(files) >= PROGRESS_FROM and sys.stderr.isatty())
    columns = min(top_k, len(predictor.class_names))
    if csv_path is None:
        return format_table(outcomes, top_k=columns) + "\n" + summary(outcomes)
    write_csv(csv_path, outcomes, top_k=columns)
    return f"wrote {csv_path}: {summary(outcomes)}"


def load_predictor(path: str | os.PathLike) -> Predictor:
    """The Predictor of a checkpoint (batch norms folded) or an ONNX export; a missing file says how to get one."""
    if not os.path.lexists(path):
        if Path(path).suffix.lower() == ".onnx":
            raise CheckpointError(f"{path}: ONNX model not found; `python -m meterlib export` writes one")
        raise CheckpointError(f"{path}: checkpoint not found; `bash run.sh demo` trains one on the demo data, "
                              "or give another file with --model")
    return Predictor.load(path).with_folded_batch_norms()


def csv_columns(top_k: int) -> list[str]:
    """The CSV's columns: file, label, unknown, confidence, top1..topK class and probability, set, error."""
    ranked = [f"top{rank}_{what}" for rank in range(1, top_k + 1) for what in ("class", "probability")]
    return ["file", "label", "unknown", "confidence", *ranked, "prediction_set", "error"]


def csv_rows(outcomes: Sequence[Outcome], *, top_k: int) -> list[dict]:
    """One dict of ``csv_columns`` per photo; the answer's cells stay empty in an error row."""
    rows = []
    for outcome in outcomes:
        row = dict.fromkeys(csv_columns(top_k), "")
        row.update(file=outcome.source, error=outcome.error or "")
        answer = outcome.prediction
        if answer is not None:
            row.update(label=answer.label, unknown=answer.unknown, confidence=round(answer.confidence, 6),
                       prediction_set=SET_SEPARATOR.join(answer.prediction_set))
            for rank, (name, probability) in enumerate(zip(answer.top_classes, answer.top_probabilities), 1):
                row[f"top{rank}_class"], row[f"top{rank}_probability"] = name, round(probability, 6)
        rows.append(row)
    return rows


def write_csv(path: str | os.PathLike, outcomes: Sequence[Outcome], *, top_k: int) -> Path:
    """Atomically write ``csv_rows`` of the outcomes (a reader never sees half a file)."""
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=csv_columns(top_k))
            writer.writeheader()
            writer.writerows(csv_rows(outcomes, top_k=top_k))
    return Path(path)


def format_table(outcomes: Sequence[Outcome], *, top_k: int) -> str:
    """The outcomes as aligned text: file, answer (or UNKNOWN), confidence, top-k, prediction set, error."""
    lines = [["file", "answer", "confidence", f"top {top_k}", "prediction set", "error"]]
    for outcome in outcomes:
        answer = outcome.prediction
        if answer is None:
            lines.append([outcome.source, "-", "-", "-", "-", outcome.error or ""])
            continue
        top = ", ".join(f"{name} {probability:.1%}"
                        for name, probability in zip(answer.top_classes, answer.top_probabilities))
        lines.append([outcome.source, answer.label, f"{answer.confidence:.1%}", top,
                      SET_SEPARATOR.join(answer.prediction_set), ""])
    widths = [max(len(line[column]) for line in lines) for column in range(len(lines[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
                     for line in lines)


def summary(outcomes: Sequence[Outcome]) -> str:
    """One line: how many photos were answered, how many of those UNKNOWN, how many could not be read."""
    answered = [outcome.prediction for outcome in outcomes if outcome.ok]
    unknown = sum(answer.unknown for answer in answered)
    failed = len(outcomes) - len(answered)
    return (f"{len(outcomes)} file{'s' * (len(outcomes) != 1)}: {len(answered)} answered "
            f"({unknown} UNKNOWN), {failed} could not be read")
