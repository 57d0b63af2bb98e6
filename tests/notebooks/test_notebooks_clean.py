"""Committed notebooks stay clean: one parameters cell, no machine paths, only checked outputs."""

import re

import nbformat
import pytest

from meterlib.run import nbcheck, runner

NOTEBOOKS = runner.discover_notebooks()
PARAMETER_LINE = re.compile(r"^[a-z_][a-z0-9_]*: [\w\[\], |]+ = .+  # \S.*$")
MACHINE_PATH = re.compile(r"(/(work|root|home|tmp|Users|mnt|var/folders)/[\w.-]|[A-Za-z]:\\\\)")
FORBIDDEN = {
    "sys.path manipulation (install the package instead)": re.compile(r"sys\.path\.(append|insert)"),
    "star import": re.compile(r"^\s*from \S+ import \*", re.M),
    "global warning filter": re.compile(r"warnings\.(filterwarnings|simplefilter)"),
}


def _problems(nb) -> list[str]:
    code = [c for c in nb.cells if c.cell_type == "code"]
    problems = []
    tagged = [i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", [])]
    if tagged != [1]:
        problems.append(f"exactly one 'parameters' cell, the second code cell, expected; found at {tagged}")
    else:
        for line in code[1].source.splitlines():
            if line.strip() and not line.lstrip().startswith("#") and not PARAMETER_LINE.match(line):
                problems.append(f"parameter line lacks 'name: type = literal  # comment': {line!r}")
    for index, cell in enumerate(code):
        if cell.outputs and not nbcheck.is_checked(cell):
            problems.append(f"code cell {index} stores outputs that nbval does not check")
        for output in cell.outputs:
            if any(kind.startswith("image/") for kind in output.get("data", {})):
                problems.append(f"code cell {index} stores an image")
        for name, pattern in FORBIDDEN.items():
            if pattern.search(cell.source):
                problems.append(f"code cell {index}: {name}")
    return problems


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.name for nb in NOTEBOOKS])
def test_committed_notebook_is_clean(notebook):
    assert _problems(nbformat.read(notebook, as_version=4)) == []
    assert not MACHINE_PATH.search(notebook.read_text(encoding="utf-8")), "machine path in notebook"


def test_there_are_numbered_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].name.startswith("01_")


def test_checker_catches_dirty_notebooks():
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    dirty = new_notebook(cells=[
        new_code_cell("import sys\nsys.path.append('..')"),
        new_code_cell("epochs = 3", metadata={"tags": ["parameters"]}),
        new_code_cell("print(1)", outputs=[new_output("stream", name="stdout", text="1\n")]),
    ])
    problems = " | ".join(_problems(dirty))
    assert "lacks 'name: type = literal  # comment'" in problems
    assert "stores outputs that nbval does not check" in problems
    assert "sys.path manipulation" in problems
    dirty.cells[1].metadata = {}
    assert "exactly one 'parameters' cell" in " | ".join(_problems(dirty))
