"""nbval guards notebook 03's confidence: a broken temperature fit, set calibration, UNKNOWN rule or
unseen-type fusion fails it.

Each case runs 03 (smoke profile, on the smoke pipeline's data and a copy of its reports) with one
rule broken in the kernel, and expects nbval to fail on the checked cell that reports that rule.
"""

import re
import shutil
from pathlib import Path

import nbformat
import pytest
from notebook_runs import run_nbval

from meterlib.run import nbcheck, runner

# name: (code that breaks a rule in the kernel, the start of the checked line that must change)
BREAKS = {
    "temperature": ("import dataclasses\n_fit = calibration.fit_temperature\n"
                    "calibration.fit_temperature = lambda *a, **k: (lambda f: dataclasses.replace(\n"
                    "    f, temperature=1.25 * f.temperature))(_fit(*a, **k))",
                    "calibration photos: "),
    "sets": ("from meterlib.confidence import mondrian\n_calibrate = mondrian.calibrate_mondrian\n"
             "mondrian.calibrate_mondrian = lambda *a, alpha, **k: _calibrate(*a, alpha=2 * alpha, **k)",
             "target coverage "),
    "unknown": ("selective.is_unknown = lambda confidence, threshold: np.asarray(confidence) < threshold / 2",
                "UNKNOWN threshold: "),
    # The fused p-value without its feature half: the energy's p-value alone.
    "fusion": ("from meterlib.confidence import unseen\n"
               "unseen.UnseenRule.p_value = lambda self, logits, similarity, *, temperature: unseen.p_values(\n"
               "    self.energy, selective.energy_score(logits, temperature=temperature))",
               ": AUROC {auroc"),
}
UNSEEN_FIT = "unseen_type: fitted on "  # the checked line that reports the unseen-type rule's fit
# Each break shows where it happens: the checked lines it must leave alone.
UNTOUCHED = {"temperature": (), "sets": ("calibration photos: ", "UNKNOWN threshold: ", ": AUROC {auroc"),
             "unknown": ("calibration photos: ", "target coverage ", ": AUROC {auroc"),
             "fusion": ("calibration photos: ", "target coverage ", UNSEEN_FIT)}


def _broken_notebook(case: str, smoke_run, folder: Path) -> tuple[Path, dict[str, int]]:
    """03 prepared for ``folder`` with the rule of ``case`` broken; the code-cell index of each checked line."""
    reports = folder / "reports"
    shutil.copytree(smoke_run.reports_dir, reports, ignore=shutil.ignore_patterns("notebooks", "figures"))
    parameters = {**runner.load_profile("smoke"), "data_dir": str(smoke_run.dataset_dir.parent),
                  "reports_dir": str(reports)}
    # Planned with every notebook: the profile also holds 01's and 02's parameters.
    planned = next(item for item in runner.plan(runner.discover_notebooks(), parameters)
                   if item.path.name.startswith("03"))
    prepared = runner.prepare(planned, folder / f"03_broken_{case}.ipynb")
    nb = nbformat.read(prepared, as_version=4)
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    nb.cells.insert(first_code + 1, nbformat.v4.new_code_cell(BREAKS[case][0]))
    code = [c for c in nb.cells if c.cell_type == "code"]
    where = {marker: next(i for i, c in enumerate(code) if nbcheck.is_checked(c) and marker in c.source)
             for marker in {marker for _, marker in BREAKS.values()} | {UNSEEN_FIT}}
    nbformat.write(nb, prepared)
    return prepared, where


def _failed_cells(notebook: Path) -> tuple[set[int], str]:
    """The code cells (numbered from 0, as nbval does) that nbval fails in ``notebook``, and its report."""
    result = run_nbval([notebook], "-rf")
    return {int(cell) for cell in re.findall(r"^FAILED \S+::Cell (\d+)", result.stdout, re.M)}, result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("case", BREAKS)
def test_nbval_fails_where_a_confidence_rule_breaks(case, smoke_run, tmp_path):
    notebook, where = _broken_notebook(case, smoke_run, tmp_path)
    assert any(c.outputs for c in nbformat.read(notebook, as_version=4).cells if nbcheck.is_checked(c)), \
        f"{notebook.name} has no checked output to compare against"
    failed, report = _failed_cells(notebook)
    marker = BREAKS[case][1]
    assert where[marker] in failed, f"nbval did not flag {marker!r}\n{report[-3000:]}"
    assert not failed & {where[line] for line in UNTOUCHED[case]}, report[-3000:]
