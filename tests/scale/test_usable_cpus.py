"""Threads set on purpose: the CPUs a process may use (affinity, cgroup quota), and the serial command's threads."""

import os

import pytest
import torch

from meterlib.cli import predict
from meterlib.run import machine
from meterlib.serve import onnx_runtime


@pytest.mark.parametrize("files, quota", [
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),
], ids=["v2 limit", "v2 no limit", "v1 limit", "v1 no limit", "no cgroups"])
def test_the_cgroup_quota_is_read(files, quota, tmp_path):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert machine.cpu_quota(tmp_path) == quota


@pytest.mark.parametrize("quota, expected", [(None, 64), (1.5, 2), (0.2, 1), (100.0, 64)])
def test_usable_cpus_are_the_affinity_within_the_quota(quota, expected, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))  # a 64-core host
    monkeypatch.setattr(machine, "cpu_quota", lambda: quota)
    assert machine.usable_cpus() == expected


def test_the_serial_command_runs_torch_and_onnx_runtime_on_the_usable_cpus(tmp_path, random_checkpoint,
                                                                        monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(machine, "usable_cpus", lambda: 3)
    asked = []

    def load(path, *, threads=None):
        asked.append(threads)
        raise RuntimeError("stop here")

    monkeypatch.setattr(onnx_runtime, "load", load)
    (tmp_path / "model.onnx").write_bytes(b"")
    try:
        with pytest.raises(RuntimeError, match="stop here"):
            predict.load_predictor(tmp_path / "model.onnx")
        assert (torch.get_num_threads(), asked) == (3, [3])
        predict.load_predictor(random_checkpoint)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
