"""``meterlib predict --workers N | --scheduler ADDRESS``: the serial command's rows, the model loaded once per
worker, threads as the worker has them, nothing lost to a killed worker, and ``--resume`` runs only what is left."""

import functools
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from meterlib.cli import predict
from meterlib.cli.main import main
from meterlib.errors import OutputError, SettingsError
from meterlib.scale import cluster, partitions

pytest.importorskip("distributed")

OFFLINE_URL = "http://127.0.0.1:9/meter.jpg"  # never fetched: the tests run with METERLIB_OFFLINE=1


@pytest.fixture()
def job(tmp_path, plant, random_checkpoint, command):
    """A planted folder and an offline URL, the serial command's CSV of them, and the options of a distributed
    run (12 photos: 3 partitions of 4, the 3 asked for rounded up to 2 batches of 2)."""
    photos = plant(tmp_path / "photos")
    inputs = [photos, OFFLINE_URL, "--checkpoint", random_checkpoint, "--batch-size", "2"]
    command("predict", *inputs, "--csv", tmp_path / "serial.csv")
    return {"inputs": inputs, "serial": (tmp_path / "serial.csv").read_bytes(), "out": tmp_path / "scaled.csv"}


def _scheduler(client) -> list[str]:
    return ["--scheduler", client.scheduler.address, "--partition-size", "3"]


def test_rows_equal_the_serial_commands_on_an_existing_cluster(job, client, command):
    report = command("predict", *job["inputs"], "--csv", job["out"], *_scheduler(client))
    assert job["out"].read_bytes() == job["serial"]  # same rows, order, error rows (the URL's among them)
    assert b"METERLIB_OFFLINE" in job["serial"]
    assert report.splitlines()[-1] == f"3 partitions in {job['out']}.parts: 3 run on 2 Dask workers, 0 finished before"


def test_a_local_cluster_of_workers_gives_the_same_rows(job, command):
    command("predict", *job["inputs"], "--csv", job["out"], "--workers", "2", "--partition-size", "4")
    assert job["out"].read_bytes() == job["serial"]


def _count_checkpoint_loads():
    """On a worker: count every checkpoint read from now on."""
    from meterlib.model import checkpoint

    original = getattr(checkpoint.load, "original", checkpoint.load)

    def counting(*args, **kwargs):
        counting.calls += 1
        return original(*args, **kwargs)

    counting.calls, counting.original = 0, original
    checkpoint.load = counting


def _checkpoint_loads() -> int:
    from meterlib.model import checkpoint

    return checkpoint.load.calls


def test_the_model_is_loaded_once_per_worker_never_per_task(job, client, command):
    client.run(_count_checkpoint_loads)
    command("predict", *job["inputs"], "--csv", job["out"], *_scheduler(client))
    assert list(client.run(_checkpoint_loads).values()) == [1, 1]  # 3 partitions, 2 workers


def _set_torch_threads(count: int) -> None:
    import torch

    torch.set_num_threads(count)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def test_torch_runs_on_the_workers_thread_count(job, client, command):
    client.run(_set_torch_threads, 2)  # not what a 1-thread worker should use
    command("predict", *job["inputs"], "--csv", job["out"], *_scheduler(client))
    assert list(client.run(_torch_threads).values()) == [1, 1]


def _loaded(name, dask_worker):
    return dask_worker.plugins[name].model


def _fake_load(*, threads):
    return f"model on {threads} threads"


def test_workers_that_join_later_load_the_model_too(dask_cluster, client):
    local, _ = dask_cluster
    client.register_plugin(cluster.ModelPlugin(_fake_load), name="late-joiners")
    try:
        local.scale(3)
        client.wait_for_workers(3, timeout=120)
        assert list(client.run(functools.partial(_loaded, "late-joiners")).values()) == ["model on 1 threads"] * 3
    finally:
        client.unregister_worker_plugin("late-joiners")
        local.scale(2)
        while len(client.scheduler_info(n_workers=-1)["workers"]) > 2:
            time.sleep(0.1)


def test_a_worker_killed_mid_run_loses_nothing(tmp_path, plant, random_checkpoint, client, command):
    photos = plant(tmp_path / "photos", photos=30, size=(1200, 1600))  # slow enough to be caught mid-run
    inputs = [photos, "--checkpoint", random_checkpoint, "--batch-size", "2"]
    command("predict", *inputs, "--csv", tmp_path / "serial.csv")
    out, pids = tmp_path / "scaled.csv", client.run(os.getpid)
    killed = {}

    def kill_one_mid_run():
        parts = tmp_path / "scaled.csv.parts"
        while time.monotonic() < deadline and "finished" not in killed:
            busy = [address for address, keys in client.processing().items() if keys]
            finished = len(list(parts.glob("part-*.csv"))) if parts.is_dir() else 0
            if finished and busy:
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.update(finished=finished, pid=pids[busy[0]])
            time.sleep(0.005)

    deadline = time.monotonic() + 120
    watcher = threading.Thread(target=kill_one_mid_run)
    watcher.start()
    try:
        command("predict", *inputs, "--csv", out, "--scheduler", client.scheduler.address, "--partition-size", "2")
    finally:
        killed.setdefault("finished", None)
        watcher.join()
    assert killed.get("pid") and killed["finished"] < 17, killed  # killed while partitions were left to do
    assert killed["pid"] not in client.run(os.getpid).values()
    assert out.read_bytes() == (tmp_path / "serial.csv").read_bytes()  # every row, none twice


def test_a_resumed_run_predicts_only_the_missing_partitions(job, client, command):
    command("predict", *job["inputs"], "--csv", job["out"], *_scheduler(client))
    parts = sorted(job["out"].with_name("scaled.csv.parts").glob("part-*.csv"))
    kept = {part: part.stat().st_mtime_ns for part in parts if part.name != "part-00002.csv"}
    (parts[2]).unlink()
    job["out"].unlink()  # as a job stopped before its merge leaves it
    report = command("predict", *job["inputs"], "--csv", job["out"], *_scheduler(client), "--resume")
    assert report.splitlines()[-1].endswith(": 1 run on 2 Dask workers, 2 finished before")
    assert {part: part.stat().st_mtime_ns for part in kept} == kept and parts[2].is_file()
    assert job["out"].read_bytes() == job["serial"]
    again = command("predict", *job["inputs"], "--csv", job["out"], *_scheduler(client))  # no --resume: all again
    assert again.splitlines()[-1].endswith(": 3 run on 2 Dask workers, 0 finished before")


def test_resume_refuses_another_jobs_folder(job, client, command, capsys):
    command("predict", *job["inputs"], "--csv", job["out"], *_scheduler(client))
    code = main(["predict", *map(str, job["inputs"]), "--top-k", "2", "--csv", str(job["out"]), *_scheduler(client),
                 "--resume"])
    assert code == 1
    assert capsys.readouterr().err == (f"meterlib predict: {job['out']}.parts: holds a job with other settings; "
                                       "--resume continues only the same job (run without --resume to start this "
                                       "one over)\n")


def test_a_folder_meterlib_did_not_start_is_never_cleared(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="not a meterlib job"):
        partitions.plan(folder, [tmp_path / "a.jpg"], result="part-{:05d}.csv", settings={}, resume=False)
    assert (folder / "notes.txt").read_text() == "keep me"


def test_resume_needs_a_cluster_run(job, command):
    with pytest.raises(SettingsError, match="--resume continues a run on --workers or --scheduler"):
        predict.predict_files(job["inputs"][:2], model=job["inputs"][3], csv_path=job["out"], resume=True)


def test_the_serial_command_does_not_import_dask(job):
    code = ("import sys\nfrom meterlib.cli.main import main\n"
            f"assert main(['predict', *{list(map(str, job['inputs']))!r}, '--csv', {str(job['out'])!r}]) == 0\n"
            "print(sorted(name for name in sys.modules if name.split('.')[0] in ('dask', 'distributed')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"
    assert job["out"].read_bytes() == job["serial"]
