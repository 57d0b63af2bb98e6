"""The photos discovery judges: named files, folders searched for photos, or the ``unseen_type`` rows of a
predict CSV; and their features, with the photos that cannot be read listed apart."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meterlib.errors import DataError
from meterlib.model import gallery
from meterlib.serve import answers_csv, batch
from meterlib.serve.predictor import UNSEEN_TYPE, Predictor


@dataclass(frozen=True)
class Photos:
    """The photo files to judge (absolute, without repeats, in the order given) and what was skipped in folders."""

    files: list[Path]
    skipped: str  # ``batch.Inputs.skipped_summary``: '' when nothing was


@dataclass(frozen=True)
class Features:
    """The L2-normalised features of the photos that could be read, and the problem of each that could not."""

    files: list[Path]  # or the names the photos were given (``features_each``)
    values: np.ndarray  # (len(files), d)
    unreadable: list[tuple[Path, str]]


def is_predict_csv(path: str | os.PathLike) -> bool:
    """Whether ``path`` is meant as a `meterlib predict` CSV: a file named .csv (its header is checked on reading)."""
    return Path(path).suffix.lower() == ".csv" and Path(path).is_file()


def gather(arguments: Sequence[str | os.PathLike]) -> Photos:
    """The photos of ``arguments``: predict CSVs' ``unseen_type`` rows, named files, photos found in folders."""
    tables = [Path(argument) for argument in arguments if is_predict_csv(argument)]
    others = [argument for argument in arguments if not is_predict_csv(argument)]
    found = [path for table in tables for path in unseen_type_photos(table)]
    inputs = batch.expand_inputs(others) if others else None
    found += inputs.files if inputs else []
    if not found:  # only CSVs, none with an unseen_type row
        raise DataError(f"no photos found: no row of {', '.join(map(str, tables))} has reason {UNSEEN_TYPE}")
    unique = dict.fromkeys(Path(os.path.abspath(path)) for path in found)
    return Photos(list(unique), inputs.skipped_summary() if inputs else "")


def unseen_type_photos(table: Path) -> list[Path]:
    """The files of a predict CSV's rows whose reason is ``unseen_type``.

    ``predict`` writes each file as it was named on its command line; a relative one is looked
    for from the working folder, else from the CSV's folder (where predict is often run).
    """
    try:
        with open(table, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
            columns = rows[0].keys() if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot be read as a CSV ({exc})", path=table) from None
    if tuple(columns)[:len(answers_csv.FIRST_COLUMNS)] != answers_csv.FIRST_COLUMNS or "reason" not in columns:
        raise DataError(f"not a `meterlib predict` CSV: its columns do not start with "
                        f"{','.join(answers_csv.FIRST_COLUMNS)} and hold a reason column", path=table)
    files = [Path(row["file"]) for row in rows if row["reason"] == UNSEEN_TYPE]
    return [file if file.is_absolute() or file.exists() else table.parent / file for file in files]


def features(predictor: Predictor, files: Sequence[Path], *, batch_size: int, progress: bool = False) -> Features:
    """The features ``predictor``'s model gives the photos, ``batch_size`` decoded at a time; unreadable ones apart."""
    found = features_each(predictor, files, names=files, batch_size=batch_size, progress=progress)
    if not found.files:
        file, problem = found.unreadable[0]
        raise DataError(f"none of the {len(files)} photos could be read (the first: {problem})", path=file)
    return found


def features_each(predictor: Predictor, photos: Sequence, *, names: Sequence, batch_size: int,
                  progress: bool = False) -> Features:
    """Like ``features`` for any photo sources (a DataError stands for one that could not be fetched), each
    called by its name in ``names``; none read is no error."""
    from tqdm.auto import tqdm

    readable, values, unreadable = [], [], []
    with tqdm(total=len(photos), desc="features", unit="photo", disable=not progress) as bar:
        for start in range(0, len(photos), batch_size):
            part, labels = list(photos[start:start + batch_size]), list(names[start:start + batch_size])
            decoded = batch.decode_each(part, [str(name) for name in labels], image_size=predictor.image_size)
            unreadable += [(name, item.problem) for name, item in zip(labels, decoded) if isinstance(item, DataError)]
            good = [(name, item) for name, item in zip(labels, decoded) if not isinstance(item, DataError)]
            if good:
                readable += [name for name, _ in good]
                values.append(gallery.unit_features(predictor.model, [item for _, item in good], predictor,
                                                    device=predictor.device))
            bar.update(len(part))
    dimensions = predictor.model.head.in_features
    return Features(readable, np.concatenate(values) if values else np.empty((0, dimensions), np.float32), unreadable)
