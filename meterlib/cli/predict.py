"""``python -m meterlib predict``: photos, folders, URLs and lists of them in, a table or a CSV of answers out,
one row per photo."""

from __future__ import annotations

import csv
import functools
import os
import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from meterlib.confidence import selective
from meterlib.data.listing import shown_name
from meterlib.errors import ModelFileError, SettingsError
from meterlib.run import machine, output_path
from meterlib.scale import partitions
from meterlib.serve import answers_csv, batch, sources
from meterlib.serve.predictor import REASONS, UNKNOWN, Outcome, Predictor

PROGRESS_FROM = 9  # photos from which a progress bar is shown (on a terminal)
# Smaller than the API's 32: on 2 CPU cores a batch of 16 stays in the cache, ~20% less CPU per photo.
BATCH_SIZE = 16
STDOUT = "-"  # as the CSV path: write the CSV to standard output
PARTS_SUFFIX = ".parts"  # with --workers/--scheduler: the job folder beside the CSV, e.g. answers.csv.parts/
UNREAD = "unread"  # the kind (see ``_summary_of``) of a photo that could not be read


def predict_files(arguments: Sequence[str | os.PathLike], *, model: str | os.PathLike,
                  csv_path: str | os.PathLike | None = None, top_k: int = 3,
                  batch_size: int = BATCH_SIZE, overwrite: bool = False, column: str | None = None,
                  workers: int | None = None, scheduler: str | None = None, resume: bool = False,
                  partition_size: int = partitions.PARTITION_SIZE) -> str:
    """Predict every photo named, listed or found in ``arguments``; the table (or, with ``csv_path``, a summary).

    Files, folders, URLs and lists of paths or URLs (``column``: a CSV list's column) are taken as
    ``sources.gather`` says; URLs are fetched a batch at a time, the next batch while this one is predicted.

    The CSV's place is checked before any photo is read (see ``output_path.check``); with
    ``csv_path="-"`` the CSV goes to standard output and the summary is returned. The summary's
    second line, where the model cannot flag unseen types, says why (``Predictor.unseen_type_note``).

    With ``workers`` (a LocalCluster of that many processes) or ``scheduler`` (an existing cluster's
    address) the photos are predicted on Dask instead (``_predict_on_cluster``): the same rows, in order.
    """
    on_cluster = workers is not None or scheduler is not None
    if on_cluster and (csv_path is None or os.fspath(csv_path) == STDOUT):
        raise SettingsError("--workers and --scheduler write a --csv file (their partitions go in a folder beside it)")
    if resume and not on_cluster:
        raise SettingsError(f"{partitions.RESUME_FLAG} continues a run on --workers or --scheduler")
    inputs = sources.gather(arguments, column=column)
    target = None
    if csv_path is not None and os.fspath(csv_path) != STDOUT:
        target = output_path.check(csv_path, inputs=[model, *sources.local_inputs(arguments, inputs)],
                                   overwrite=overwrite, ours=output_path.starts_with(answers_csv.CSV_HEADER_START))
    predictor = load_predictor(model)
    columns = min(top_k, len(predictor.class_names))
    if on_cluster:
        kinds, ran = _predict_on_cluster(inputs.files, model=model, csv_path=csv_path, target=target, top_k=columns,
                                         batch_size=batch_size, workers=workers, scheduler=scheduler,
                                         resume=resume, partition_size=partition_size)
        return f"wrote {shown_name(csv_path)}: {_report(_summary_of(kinds), inputs, predictor)}\n{ran}"
    outcomes = []
    with tqdm(total=len(inputs.files), desc="predict", unit="photo",
              disable=len(inputs.files) < PROGRESS_FROM or not sys.stderr.isatty()) as bar:
        for chunk, photos in sources.read_chunks(inputs.files, size=batch_size):
            outcomes += predictor.predict_each(photos, names=[str(item) for item in chunk], top_k=top_k,
                                               batch_size=batch_size)
            bar.update(len(chunk))
    report = _report(summary(outcomes), inputs, predictor)
    if csv_path is None:
        return format_table(outcomes, top_k=columns, threshold=predictor.calibration.unknown_threshold) + "\n" + report
    if target is None:
        sys.stdout.write(answers_csv.csv_text(outcomes, top_k=columns))
        return report
    answers_csv.write_csv(target, outcomes, top_k=columns)
    return f"wrote {shown_name(csv_path)}: {report}"


def _report(counted: str, inputs: batch.Inputs, predictor: Predictor) -> str:
    """The ``summary`` line with what was skipped in folders, then why unseen types cannot be flagged (if so)."""
    return "\n".join(filter(None, ["; ".join(filter(None, [counted, inputs.skipped_summary()])),
                                   predictor.unseen_type_note]))


def _predict_on_cluster(items: Sequence, *, model: str | os.PathLike, csv_path: str | os.PathLike, target: Path,
                        top_k: int, batch_size: int, workers: int | None, scheduler: str | None, resume: bool,
                        partition_size: int) -> tuple[Counter, str]:
    """Predict ``items`` on Dask, a partition of ``partition_size`` photos a task, into the job folder beside the
    CSV (``PARTS_SUFFIX``), then merge the partitions into ``target``; the photos' kinds (see ``_summary_of``)
    and what ran where. ``resume`` keeps the partitions an earlier run of the same job finished."""
    from meterlib.scale import answers, cluster

    job = partitions.plan(f"{os.fspath(csv_path)}{PARTS_SUFFIX}", items, result=answers.PART, resume=resume,
                          settings={"model": partitions.file_identity(model), "top_k": top_k}, size=partition_size,
                          batch=batch_size)
    ran = cluster.run(job, load=functools.partial(load_predictor, model), workers=workers, scheduler=scheduler,
                      work=functools.partial(answers.write_partition, top_k=top_k, batch_size=batch_size),
                      progress=sys.stderr.isatty())
    partitions.merge_text([partition.result for partition in job.partitions], target)
    with open(target, encoding="utf-8", newline="") as handle:
        kinds = Counter(UNREAD if row["error"] else row["reason"] or None for row in csv.DictReader(handle))
    return kinds, job.report(ran=ran.partitions, where=f"on {ran.workers} Dask workers")


def load_predictor(path: str | os.PathLike, *, threads: int | None = None) -> Predictor:
    """The Predictor of a checkpoint (batch norms folded) or an ONNX export; a missing file says how to get one.

    Torch and ONNX Runtime run on ``threads`` threads (default: ``machine.usable_cpus``): their own
    defaults count the host's cores, 64 inside a 2-CPU container on a 64-core host. Its warning that
    ``unseen_type`` is unavailable is held back: the summary says it once.
    """
    import torch

    if not os.path.lexists(path):
        if Path(path).suffix.lower() == ".onnx":
            raise ModelFileError(f"{path}: ONNX model not found; `python -m meterlib export` writes one")
        raise ModelFileError(f"{path}: checkpoint not found; `bash run.sh demo` trains one on the demo data, "
                             "or give another file with --model")
    threads = threads or machine.usable_cpus()
    torch.set_num_threads(threads)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictor = Predictor.load(path, threads=threads)
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
    return _summary_of(Counter(outcome.prediction.reason if outcome.ok else UNREAD for outcome in outcomes))


def _summary_of(kinds: Counter) -> str:
    """``summary`` from how many photos are of each kind: None (answered with a type), a reason, or UNREAD."""
    total = kinds.total()
    counts = [f"{kinds[None]} answered", *(f"{kinds[reason]} {reason}" for reason in REASONS)]
    return f"{total} file{'s' * (total != 1)}: {', '.join(counts)}, {kinds[UNREAD]} could not be read"
