"""One partition's rows of the ``meterlib predict`` CSV: the serial command's rows for its photos."""

from __future__ import annotations

from meterlib.scale.partitions import Partition
from meterlib.serve import answers_csv, sources
from meterlib.serve.predictor import Predictor

PART = "part-{:05d}.csv"  # a partition's result, in the job folder beside the CSV


def write_partition(predictor: Predictor, partition: Partition, *, top_k: int, batch_size: int) -> None:
    """Predict the partition's photos ``batch_size`` at a time (URLs fetched ahead) and write their CSV atomically."""
    outcomes, start = [], 0
    for chunk, photos in sources.read_chunks(partition.items, size=batch_size):
        outcomes += predictor.predict_each(photos, names=partition.names[start:start + len(chunk)], top_k=top_k,
                                           batch_size=batch_size)
        start += len(chunk)
    answers_csv.write_csv(partition.result, outcomes, top_k=top_k)
