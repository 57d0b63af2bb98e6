"""Keep committed notebooks clean: only outputs that nbval checks are stored."""

from __future__ import annotations

from pathlib import Path

import nbformat

from meterlib.errors import RunError

CHECK_MARKER = "# NBVAL_CHECK_OUTPUT"


def is_checked(cell) -> bool:
    """True for a code cell whose output nbval compares (marked ``# NBVAL_CHECK_OUTPUT``)."""
    return cell.cell_type == "code" and CHECK_MARKER in cell.source


def refresh_checked_outputs(source: Path, executed: Path) -> Path:
    """Copy the outputs of checked cells from an executed copy into ``source``; clear the rest."""
    nb = nbformat.read(source, as_version=4)
    ran = {cell.get("id"): cell for cell in nbformat.read(executed, as_version=4).cells}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.execution_count = None
        cell.outputs = []
        if is_checked(cell):
            if cell.get("id") not in ran:
                raise RunError(f"{source.name}: checked cell {cell.get('id')} missing from {executed}")
            # nbval refuses reference outputs of a cell without an execution count
            cell.execution_count = ran[cell["id"]].execution_count
            cell.outputs = ran[cell["id"]].outputs
    nbformat.write(nb, source)
    return source
