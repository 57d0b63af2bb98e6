"""Test configuration: offline, quiet progress bars, shared fixtures."""

import os
from pathlib import Path

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


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> paths.ProjectPaths:
    """The smoke pipeline run once into a scratch folder: its data, splits, model and reports."""
    from meterlib.run import runner

    root = tmp_path_factory.mktemp("smoke_run")
    runner.run(profile="smoke", only=["01", "02", "03"], data_dir=str(root / "data"),
               reports_dir=str(root / "reports"), echo=lambda _: None)
    return paths.resolve(dataset="smoke", data_dir=root / "data", reports_dir=root / "reports")


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
