"""paths, atomic writes, the offline switch, seeding."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from meterlib.errors import UnavailableError
from meterlib.run import atomic, offline, paths, seeding


def test_resolve_uses_data_and_reports_folders(tmp_path):
    p = paths.resolve(dataset="demo", data_dir=tmp_path / "d", reports_dir=tmp_path / "r")
    assert p.raw_dir == tmp_path / "d" / "demo" / "raw"
    assert p.splits_csv == tmp_path / "d" / "demo" / "splits.csv"
    assert p.figure("03_reliability.png") == tmp_path / "r" / "figures" / "03_reliability.png"


def test_resolve_accepts_a_dataset_path(tmp_path):
    p = paths.resolve(dataset=str(tmp_path / "mine"), data_dir=tmp_path / "elsewhere")
    assert p.dataset_dir == tmp_path / "mine"


def test_resolve_defaults_to_project_folders(monkeypatch):
    monkeypatch.delenv("METERLIB_DATA_DIR", raising=False)
    monkeypatch.delenv("METERLIB_REPORTS_DIR", raising=False)
    p = paths.resolve()
    assert p.dataset_dir == paths.project_root() / "data" / "demo"
    assert p.reports_dir == paths.project_root() / "reports"


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path):
    target = atomic.write_text(tmp_path / "a.txt", "good")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "good"
    assert [f.name for f in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_write_gives_readable_permissions(tmp_path):
    assert atomic.write_text(tmp_path / "a.txt", "x").stat().st_mode & 0o777 == 0o644


def test_atomic_csv_and_json_round_trip(tmp_path):
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    pd.testing.assert_frame_equal(pd.read_csv(atomic.write_csv(tmp_path / "f.csv", frame)), frame)
    assert atomic.write_json(tmp_path / "m.json", {"acc": 0.5}).read_text().strip() == '{\n  "acc": 0.5\n}'


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("0", False), ("", False)])
def test_offline_switch(monkeypatch, value, expected):
    monkeypatch.setenv("METERLIB_OFFLINE", value)
    assert offline.is_offline() is expected


def test_require_network_refuses_when_offline(monkeypatch):
    monkeypatch.setenv("METERLIB_OFFLINE", "1")
    with pytest.raises(UnavailableError, match="weights download"):
        offline.require_network("weights download")


def test_seed_everything_repeats_draws():
    import torch

    seeding.seed_everything(3)
    first = (np.random.rand(), torch.rand(1).item())
    seeding.seed_everything(3)
    assert (np.random.rand(), torch.rand(1).item()) == first


def test_importing_meterlib_has_no_side_effects(tmp_path):
    code = ("import os, meterlib, meterlib.run.paths, meterlib.run.runner, matplotlib as m; "
            "print(sorted(os.listdir('.')), m.rcParams['figure.dpi'] == m.rcParamsDefault['figure.dpi'])")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         check=True, env={**os.environ, "MPLBACKEND": "Agg"})
    assert out.stdout.strip() == "[] True"
