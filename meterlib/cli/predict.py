"""``python -m meterlib predict``: photos and folders in, a table or a CSV of answers out, one row per file."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from meterlib.confidence import selective
from meterlib.data.listing import shown_name
from meterlib.errors import ModelFileError
from meterlib.run import output_path
from meterlib.serve import answers_csv, batch
from meterlib.serve.predictor import REASONS, UNKNOWN, Outcome, Predictor

PROGRESS_FROM = 9  # photos from which a progress bar is shown (on a terminal)
# Smaller than the API's 32: on 2 CPU cores a batch of 16 stays in the cache, ~20% less CPU per photo.
BATCH_SIZE = 16
STDOUT = "-"  # as the CSV path: write the CSV to standard output


def predict_files(arguments: Sequence[str | os.PathLike], *, model: str | os.PathLike,
                  csv_path: str | os.PathLike | None = None, top_k: int = 3,
                  batch_size: int = BATCH_SIZE, overwrite: bool = False) -> str:
    """Predict every photo named or found in ``arguments``; the table (or, with ``csv_path``, a summary).

    The CSV's place is checked before any photo is read (see ``output_path.check``); with
    ``csv_path="-"`` the CSV goes to standard output and the summary is returned. The summary's
    second line, where the model cannot flag unseen types, says why (``Predictor.unseen_type_note``).
    """
    inputs = batch.expand_inputs(arguments)
    target = None
    if csv_path is not None and os.fspath(csv_path) != STDOUT:
        target = output_path.check(csv_path, inputs=[model, *inputs.files], overwrite=overwrite,
                                   ours=output_path.starts_with(answers_csv.CSV_HEADER_START))
    predictor = load_predictor(model)
    outcomes = predictor.predict_each(inputs.files, top_k=top_k, batch_size=batch_size,
                                      progress=len(inputs.files) >= PROGRESS_FROM and sys.stderr.isatty())
    columns = min(top_k, len(predictor.class_names))
    counted = "; ".join(filter(None, [summary(outcomes), inputs.skipped_summary()]))
    report = "\n".join(filter(None, [counted, predictor.unseen_type_note]))
    if csv_path is None:
        return format_table(outcomes, top_k=columns, threshold=predictor.calibration.unknown_threshold) + "\n" + report
    if target is None:
        sys.stdout.write(answers_csv.csv_text(outcomes, top_k=columns))
        return report
    answers_csv.write_csv(target, outcomes, top_k=columns)
    return f"wrote {shown_name(csv_path)}: {report}"


def load_predictor(path: str | os.PathLike) -> Predictor:
    """The Predictor of a checkpoint (batch norms folded) or an ONNX export; a missing file says how to get one.

    Its warning that ``unseen_type`` is unavailable is held back: the summary says it once.
    """
    if not os.path.lexists(path):
        if Path(path).suffix.lower() == ".onnx":
            raise ModelFileError(f"{path}: ONNX model not found; `python -m meterlib export` writes one")
        raise ModelFileError(f"{path}: checkpoint not found; `bash run.sh demo` trains one on the demo data, "
                             "or give another file with --model")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictor = Predictor.load(path)
    for warning in caught:
        if str(warning.message) != predictor.unseen_type_note:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return predictor.with_folded_batch_norms()


def format_table(outcomes: Sequence[Outcome], *, top_k: int, threshold: float) -> str:
    """The outcomes as aligned text: file, answer (or UNKNOWN and its reason), confidence, top-k, prediction
    set, why (the reason in words), error.

    A confidence below the UNKNOWN ``threshold`` is shown beside it.
    """
    lines = [["file", "answer", "confidence", f"top {top_k}", "prediction set", "why", "error"]]
    for outcome in outcomes:
        answer = outcome.prediction
        if answer is None:
            lines.append([outcome.source, "-", "-", "-", "-", "", outcome.error or ""])
            continue
        top = ", ".join(f"{name} {probability:.1%}"
                        for name, probability in zip(answer.top_classes, answer.top_probabilities))
        label = f"{UNKNOWN} ({answer.reason})" if answer.reason else answer.label
        lines.append([outcome.source, label, _confidence_cell(answer.confidence, threshold), top,
                      answers_csv.SET_SEPARATOR.join(answer.prediction_set), answer.detail, ""])
    lines = [[shown_name(cell) for cell in line] for line in lines]  # names and messages can hold escapes
    widths = [max(len(line[column]) for line in lines) for column in range(len(lines[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
                     for line in lines)


def _confidence_cell(confidence: float, threshold: float) -> str:
    """The confidence, beside the threshold when it is below it (an unseen type or a poor photo may be above)."""
    if not selective.is_unknown(confidence, threshold):
        return f"{confidence:.1%}"
    pair = selective.told_apart(confidence, threshold, digits=1, percent=True)
    return f"{pair[0]} < {pair[1]}" if pair else f"just below {threshold:.1%}"


def summary(outcomes: Sequence[Outcome]) -> str:
    """One line: how many photos were answered with a type, how many UNKNOWN for each reason, how many unread."""
    answers = [outcome.prediction for outcome in outcomes if outcome.ok]
    reasons = [answer.reason for answer in answers]
    counts = [f"{reasons.count(None)} answered", *(f"{reasons.count(reason)} {reason}" for reason in REASONS)]
    return (f"{len(outcomes)} file{'s' * (len(outcomes) != 1)}: {', '.join(counts)}, "
            f"{len(outcomes) - len(answers)} could not be read")
