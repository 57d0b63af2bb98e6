"""A run killed after 02 trained but before 03 calibrated keeps the previous results as a set."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from meterlib.model import checkpoint
from meterlib.run import paths

pytestmark = pytest.mark.slow


def _run(*args: str, scratch) -> subprocess.Popen:
    command = [sys.executable, "-m", "meterlib", "run", "--profile", "smoke",
               "--data-dir", str(scratch / "data"), "--reports-dir", str(scratch / "reports"), *args]
    # A session of its own, so the kill reaches the notebook kernel too.
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _finish(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output


def _kill_when(process: subprocess.Popen, appears, *, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not appears.is_file():
        assert process.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, f"{appears.name} never appeared"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_killed_during_03_leaves_the_previous_model_and_metrics(tmp_path, robust, smoke_run):
    robust.entry = "runner (kill -9 during 03)"
    where = paths.resolve(dataset="smoke", data_dir=tmp_path / "data", reports_dir=tmp_path / "reports")
    # The previous results: a copy of the session's finished smoke run (01-03).
    shutil.copytree(smoke_run.dataset_dir, where.dataset_dir)
    shutil.copytree(smoke_run.reports_dir, where.reports_dir)
    result_set = [where.checkpoint, where.metrics_json, where.results_csv]
    before = [path.read_bytes() for path in result_set]

    _kill_when(_run("--only", "02", "03", scratch=tmp_path), where.trained_checkpoint)
    assert [path.read_bytes() for path in result_set] == before
    assert where.trained_checkpoint.is_file()

    # The next run of 03 calibrates the waiting model and releases it with its metrics.
    _finish(_run("--only", "03", scratch=tmp_path))
    assert not where.trained_checkpoint.exists()
    released = checkpoint.load(where.checkpoint)
    metrics = json.loads(where.metrics_json.read_text())
    assert metrics["checkpoint_created"] == released["created"]
    assert released["temperature"] == metrics["calibration"]["temperature"]
    robust.ok("previous checkpoint, metrics and results intact; next 03 released the new model")
