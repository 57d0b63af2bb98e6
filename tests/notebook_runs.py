"""The notebooks prepared with the smoke profile, and nbval run over them in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from meterlib.run import runner

SANITIZE = Path(__file__).with_name("nbval_sanitize.cfg")


def prepared_notebooks(root: Path) -> list[Path]:
    """Every notebook with the smoke profile injected, reading and writing under ``root``."""
    parameters = {**runner.load_profile("smoke"), "data_dir": str(root / "data"), "reports_dir": str(root / "reports")}
    return [runner.prepare(item, root / item.path.name) for item in runner.plan(runner.discover_notebooks(), parameters)]


def run_nbval(notebooks: list[Path], *options: str) -> subprocess.CompletedProcess:
    """nbval over ``notebooks`` in their folder, in this environment; ``options`` go to pytest."""
    command = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "--nbval-sanitize-with",
               str(SANITIZE), "-p", "no:cacheprovider", "-q", *options, *map(str, notebooks)]
    return subprocess.run(command, capture_output=True, text=True, cwd=notebooks[0].parent, timeout=1200)
