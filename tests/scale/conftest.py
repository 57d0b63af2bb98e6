"""A Dask LocalCluster of 2 worker processes x 1 thread on 127.0.0.1, started once for the scale tests."""

import numpy as np
import pytest
from PIL import Image

from meterlib.cli.main import main


@pytest.fixture(scope="session")
def dask_cluster():
    """The cluster and a client of it; the tests reach it as a user would, by its scheduler's address."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None)
    client = distributed.Client(cluster)
    yield cluster, client
    client.shutdown()


@pytest.fixture()
def client(dask_cluster):
    """The shared cluster's client, with both workers up (a test may have killed one)."""
    _, client = dask_cluster
    client.wait_for_workers(2, timeout=120)
    return client


@pytest.fixture(autouse=True)
def own_environment(monkeypatch):
    """main() sets OMP_WAIT_POLICY for the torch it loads; keep it from later tests' subprocesses."""
    monkeypatch.setenv("OMP_WAIT_POLICY", "")
    monkeypatch.delenv("OMP_WAIT_POLICY")


def _plant(folder, *, photos=8, size=(80, 60)):
    """Good photos (some in a subfolder), an empty file, a letter named .jpg and a cut JPEG under ``folder``."""
    rng = np.random.default_rng(0)
    (folder / "sub").mkdir(parents=True)
    for index in range(photos):
        where = folder / "sub" if index % 3 == 0 else folder
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(where / f"meter_{index:02d}.jpg")
    jpeg = (folder / "meter_01.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "letter.jpg").write_text("Dear customer, your meter ...")
    return folder


@pytest.fixture()
def plant():
    """``plant(folder, photos=8, size=(80, 60))``: a planted folder of photos and broken files."""
    return _plant


@pytest.fixture()
def command(capsys):
    """``command("predict", ARGS...)``: the command's report; it must succeed."""
    def run(*args) -> str:
        code = main(list(map(str, args)))
        out, err = capsys.readouterr()
        assert code == 0, err
        return out
    return run
