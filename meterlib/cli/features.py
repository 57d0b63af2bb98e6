"""``python -m meterlib features PHOTOS... --out DIR``: the model's L2-normalised features (float16) of many
photos, a partition at a time, in this process or on a Dask cluster (``--workers N``, ``--scheduler ADDRESS``).

What discovery of new types and the unseen-type score read: ``scale.features.read(DIR)`` gives them back.
"""

from __future__ import annotations

import argparse
import functools
import sys

from tqdm.auto import tqdm

from meterlib.cli import predict
from meterlib.cli.discover import feature_model
from meterlib.data.splits import counted
from meterlib.scale import features, partitions
from meterlib.serve import sources


def features_command(args: argparse.Namespace) -> str:
    """Write the features of the photos of ``args.paths`` into ``args.out``, skipping the partitions a resumed
    job finished; the report."""
    model = feature_model(args.model)
    inputs = sources.gather(args.paths, column=args.column)
    predictor = predict.load_predictor(model)  # here too: a broken model file is said before any work starts
    batch_size = args.batch_size or predict.BATCH_SIZE
    job = partitions.plan(args.out, inputs.files, result=features.PART, resume=args.resume,
                          settings={"model": partitions.file_identity(model)}, size=args.partition_size,
                          batch=batch_size)
    work = functools.partial(features.write_partition, batch_size=batch_size)
    if args.workers is not None or args.scheduler is not None:
        from meterlib.scale import cluster

        ran = cluster.run(job, load=functools.partial(predict.load_predictor, model), work=work,
                          workers=args.workers, scheduler=args.scheduler, progress=sys.stderr.isatty())
        done = job.report(ran=ran.partitions, where=f"on {ran.workers} Dask workers")
    else:
        todo = job.unfinished()
        for partition in tqdm(todo, desc="partitions", unit="partition", disable=not sys.stderr.isatty()):
            work(predictor, partition)
        done = job.report(ran=len(todo), where="in this process")
    files, unreadable = features.listing([partition.result for partition in job.partitions])
    lines = [f"wrote the features of {counted(len(files), 'photo')} in {args.out} "
             f"({len(unreadable)} could not be read)", done]
    return "\n".join(filter(None, [*lines, inputs.skipped_summary()]))
