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
