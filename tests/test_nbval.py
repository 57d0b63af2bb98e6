"""nbval over every notebook, run on the smoke profile in a scratch folder."""

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from meterlib.run import nbcheck, runner

SANITIZE = Path(__file__).with_name("nbval_sanitize.cfg")


@pytest.fixture(scope="module")
def smoke_notebooks(tmp_path_factory) -> list[Path]:
    """The notebooks with the smoke profile injected, writing into a scratch folder."""
    root = tmp_path_factory.mktemp("nbval")
    parameters = {**runner.load_profile("smoke"),
                  "data_dir": str(root / "data"), "reports_dir": str(root / "reports")}
    planned = runner.plan(runner.discover_notebooks(), parameters)
    return [runner.prepare(item, root / item.path.name) for item in planned]


def _nbval(notebooks: list[Path]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
               "--nbval-sanitize-with", str(SANITIZE), "-p", "no:cacheprovider", "-q",
               *map(str, notebooks)]
    return subprocess.run(command, capture_output=True, text=True, cwd=notebooks[0].parent, timeout=600)


def _checked_cells(notebook: Path) -> list:
    return [c for c in nbformat.read(notebook, as_version=4).cells if nbcheck.is_checked(c)]


@pytest.mark.slow
def test_every_notebook_passes_nbval(smoke_notebooks):
    for notebook in smoke_notebooks:
        assert any(cell.outputs for cell in _checked_cells(notebook)), \
            f"{notebook.name} has no checked output; run `python -m meterlib snapshot`"
    result = _nbval(smoke_notebooks)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


@pytest.mark.slow
def test_changing_a_checked_number_makes_nbval_fail(smoke_notebooks, tmp_path):
    first = smoke_notebooks[0]
    nb = nbformat.read(first, as_version=4)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    number, cell = next((i, c) for i, c in enumerate(code_cells) if nbcheck.is_checked(c) and c.outputs)
    output = next(o for o in cell.outputs if o.output_type == "stream")
    output.text = re.sub(r"\d", lambda m: str((int(m.group()) + 1) % 10), output.text, count=1)
    tampered = tmp_path / first.name
    nbformat.write(nb, tampered)
    result = _nbval([tampered])
    # Exactly the tampered cell fails, on its output (nbval numbers the code cells from 0).
    assert re.search(r"\b1 failed, \d+ passed\b", result.stdout), result.stdout[-3000:]
    assert f"Cell {number}: Cell outputs differ" in result.stdout
    assert f"mismatch '{output.name}'" in result.stdout
