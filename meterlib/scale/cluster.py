"""A job's partitions on Dask: a LocalCluster on this machine or an existing cluster, the model loaded once per
worker by a worker plugin, every unfinished partition run as one task.

A worker that dies mid-task loses nothing: the scheduler runs its tasks again elsewhere, and a partition's
files are written atomically and the same each time (``partitions``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from meterlib.errors import RunError, UnavailableError
from meterlib.run import machine
from meterlib.scale.partitions import RESUME_FLAG, Job, Partition

try:
    import distributed
except ImportError:
    raise UnavailableError("running on a Dask cluster needs the scale extra: pip install 'meterlib[scale]'") from None

CONNECT_TIMEOUT = "30s"  # to reach an existing scheduler


@dataclass(frozen=True)
class Ran:
    """What a run did: the partitions it ran, and the workers the cluster had (0: none was needed)."""

    partitions: int
    workers: int


class ModelPlugin(distributed.WorkerPlugin):
    """Loads the model on each worker when it is registered or when the worker joins, once, and runs it one
    partition at a time on the worker's threads (torch's and ONNX Runtime's, ``load(threads=...)``)."""

    def __init__(self, load: Callable[..., Any]):
        self.load = load
        self.model = None
        self.lock = None

    async def setup(self, worker) -> None:
        self.lock = threading.Lock()
        # Loaded off the event loop, which keeps answering the scheduler's heartbeats meanwhile.
        self.model = await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.load(threads=worker.state.nthreads))

    def teardown(self, worker) -> None:
        self.model = None


def run(job: Job, *, load: Callable[..., Any], work: Callable[[Any, Partition], None], workers: int | None = None,
        scheduler: str | None = None, progress: bool = False) -> Ran:
    """Run ``work(model, partition)`` for each of the job's unfinished partitions on the cluster of ``connect``.

    ``load(threads=N)`` gives the model, once per worker. Nothing starts when every partition is finished.
    """
    todo = job.unfinished()
    if not todo:
        return Ran(0, 0)
    with connect(workers=workers, scheduler=scheduler) as client:
        name = f"meterlib-model-{uuid.uuid4().hex}"  # jobs sharing a cluster keep their models apart
        client.register_plugin(ModelPlugin(load), name=name)
        try:
            _wait(client.map(_run_partition, todo, plugin=name, work=work, pure=False), job=job, progress=progress)
        finally:
            client.unregister_worker_plugin(name)
        return Ran(len(todo), len(client.scheduler_info(n_workers=-1)["workers"]))


@contextlib.contextmanager
def connect(*, workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A Dask client of the cluster at the ``scheduler`` address, else of a new LocalCluster of ``workers``
    processes that share this process's CPUs (``machine.usable_cpus``) evenly."""
    if scheduler:
        try:
            client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as exc:
            raise RunError(f"cannot reach the Dask scheduler at {scheduler} ({exc})") from None
        with client:
            yield client
        return
    threads = max(1, machine.usable_cpus() // workers)
    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        # Scheduler and workers stopped together: closing the cluster around its client instead leaves workers
        # that are slow to exit (torch loaded) killed, and heartbeats failing, with tracebacks on the terminal.
        client.shutdown()


def _run_partition(partition: Partition, *, plugin: str, work: Callable[[Any, Partition], None]) -> int:
    """On a worker: ``work`` with the model this worker's plugin loaded; the partition's index."""
    loaded = distributed.get_worker().plugins[plugin]
    with loaded.lock:  # the model uses all the worker's threads; partitions wait their turn
        work(loaded.model, partition)
    return partition.index


def _wait(futures: Sequence, *, job: Job, progress: bool) -> None:
    """Every task's end, with a progress bar of partitions; a partition that kept killing its workers is an error."""
    from tqdm.auto import tqdm

    with tqdm(total=len(futures), desc="partitions", unit="partition", disable=not progress) as bar:
        for future in distributed.as_completed(futures):
            try:
                future.result()
            except distributed.KilledWorker as exc:
                raise RunError(f"{job.folder}: a partition killed every worker that ran it ({exc}); the finished "
                               f"partitions are kept, rerun with {RESUME_FLAG} to continue") from None
            bar.update()
