"""nbval over every notebook, run on the smoke profile in a scratch folder."""

import re

import nbformat
import pytest
from notebook_runs import prepared_notebooks, run_nbval

from meterlib.run import nbcheck


def _checked_cells(notebook) -> list:
    return [c for c in nbformat.read(notebook, as_version=4).cells if nbcheck.is_checked(c)]


@pytest.mark.slow
def test_every_notebook_passes_nbval(smoke_notebooks):
    for notebook in smoke_notebooks.notebooks:
        assert any(cell.outputs for cell in _checked_cells(notebook)), \
            f"{notebook.name} has no checked output; run `python -m meterlib snapshot`"
    result = smoke_notebooks.nbval
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


@pytest.mark.slow
def test_changing_a_checked_number_makes_nbval_fail(tmp_path):
    first = prepared_notebooks(tmp_path)[0]  # 01, generating its own smoke data under tmp_path
    nb = nbformat.read(first, as_version=4)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    number, cell = next((i, c) for i, c in enumerate(code_cells) if nbcheck.is_checked(c) and c.outputs)
    output = next(o for o in cell.outputs if o.output_type == "stream")
    output.text = re.sub(r"\d", lambda m: str((int(m.group()) + 1) % 10), output.text, count=1)
    nbformat.write(nb, first)
    result = run_nbval([first])
    # Exactly the tampered cell fails, on its output (nbval numbers the code cells from 0).
    assert re.search(r"\b1 failed, \d+ passed\b", result.stdout), result.stdout[-3000:]
    assert f"Cell {number}: Cell outputs differ" in result.stdout
    assert f"mismatch '{output.name}'" in result.stdout
