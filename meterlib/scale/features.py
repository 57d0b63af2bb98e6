"""One partition's features, as discovery (notebook 05) and the unseen-type score read them, and a finished
job's features read back.

Per partition: ``features-00003.npy``, the L2-normalised features (float16, one row per photo read), then
``features-00003.csv``, the result, with a ``file`` and ``error`` column for every photo in order: the rows
whose error is empty are the rows of the array, in order.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from meterlib.discover import inputs
from meterlib.run import atomic
from meterlib.scale import partitions
from meterlib.scale.partitions import Partition
from meterlib.serve import sources
from meterlib.serve.predictor import Predictor

PART = "features-{:05d}.csv"
COLUMNS = ("file", "error")


def write_partition(predictor: Predictor, partition: Partition, *, batch_size: int) -> None:
    """Write the features of the partition's photos and their names (the unreadable ones with their problem)."""
    names = partition.names
    parts, start = [], 0
    for chunk, photos in sources.read_chunks(partition.items, size=batch_size):
        parts.append(inputs.features_each(predictor, photos, names=names[start:start + len(chunk)],
                                          batch_size=batch_size))
        start += len(chunk)
    problems = {name: problem for part in parts for name, problem in part.unreadable}
    with atomic.atomic_path(partition.file(".npy")) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.concatenate([part.values for part in parts]).astype(np.float16))
    with atomic.atomic_path(partition.result) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows((name, problems.get(name, "")) for name in names)


def read(folder: str | os.PathLike) -> inputs.Features:
    """The features a finished ``meterlib features`` job wrote in ``folder``: every partition's, in order."""
    results = partitions.results(folder)
    files, unreadable = listing(results)
    return inputs.Features(files, np.concatenate([np.load(result.with_suffix(".npy")) for result in results]),
                           unreadable)


def listing(results: list[Path]) -> tuple[list[str], list[tuple[str, str]]]:
    """The photos of the partitions' ``results``: those read, in the features' order, and those not, with why."""
    files, unreadable = [], []
    for result in results:
        with open(result, encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))[1:]
        files += [name for name, error in rows if not error]
        unreadable += [(name, error) for name, error in rows if error]
    return files, unreadable
