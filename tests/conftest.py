"""Test configuration: offline, quiet progress bars, shared fixtures."""

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import notebook_runs
import pytest

from meterlib.run import paths


def pytest_configure(config):
    # Set before any test (and any notebook kernel the tests start) can reach the network.
    os.environ["METERLIB_OFFLINE"] = "1"
    os.environ["TQDM_DISABLE"] = "1"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The reference folder beside the project; tests that need it skip when it is absent."""
    folder = paths.project_root().parent / "shared"
    if not folder.is_dir():
        pytest.skip("../shared is not available")
    return folder


@dataclass(frozen=True)
class SmokeNotebooks:
    """The smoke profile's notebooks, nbval's run over them, and where that run left its data and reports."""

    notebooks: list[Path]
    nbval: subprocess.CompletedProcess
    paths: paths.ProjectPaths


@pytest.fixture(scope="session")
def smoke_notebooks(tmp_path_factory) -> SmokeNotebooks:
    """Every notebook run once under nbval in a scratch folder: the regression check, and the pipeline
    (data, splits, model, reports) that other tests read."""
    root = tmp_path_factory.mktemp("smoke_run")
    notebooks = notebook_runs.prepared_notebooks(root)
    return SmokeNotebooks(notebooks, notebook_runs.run_nbval(notebooks),
                          paths.resolve(dataset="smoke", data_dir=root / "data", reports_dir=root / "reports"))


@pytest.fixture(scope="session")
def smoke_run(smoke_notebooks) -> paths.ProjectPaths:
    """What the smoke notebooks made: its data, splits, model and reports."""
    where = smoke_notebooks.paths
    if not (where.checkpoint.is_file() and where.metrics_json.is_file()):
        pytest.fail(f"the smoke notebooks left no calibrated model:\n{smoke_notebooks.nbval.stdout[-3000:]}")
    return where


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory) -> Path:
    """A small checkpoint that loads fast: random ResNet-18 weights, 3 classes, 32 px (arbitrary answers)."""
    import torch

    from meterlib.model import backbones, checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("random_model") / "ckpt.pt"
    spec = checkpoint.ModelSpec("random", ["zeta", "alpha", "mu"], 32, mean=(0.5,) * 3, std=(0.25,) * 3)
    checkpoint.save(path, model=backbones.build_classifier("random", 3, pretrained=False), spec=spec)
    return path
