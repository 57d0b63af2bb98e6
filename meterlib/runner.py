"""Headless execution of the numbered notebooks with papermill."""

from __future__ import annotations

import ast
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from meterlib import atomic, paths

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
PROFILES_DIR = paths.PACKAGE_DIR / "profiles"


class RunError(RuntimeError):
    """A run that cannot start or that stopped on a failing notebook."""


@dataclass(frozen=True)
class PlannedNotebook:
    """One notebook and the parameters it will receive."""

    path: Path
    parameters: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.stem


def discover_notebooks(folder: Path | None = None, *, only: Iterable[str] = ()) -> list[Path]:
    """The numbered notebooks in order; ``only`` keeps those whose name starts with a prefix."""
    found = sorted((folder or paths.notebooks_dir()).glob(NOTEBOOK_GLOB))
    prefixes = tuple(only)
    if prefixes:
        found = [nb for nb in found if nb.name.startswith(prefixes)]
        if not found:
            raise RunError(f"no notebook matches {', '.join(prefixes)}")
    return found


def declared_parameters(notebook: Path) -> dict[str, dict]:
    """Parameters declared in a notebook's cell tagged 'parameters'."""
    import papermill

    return papermill.inspect_notebook(str(notebook))


def available_profiles() -> list[str]:
    """Names of the bundled parameter profiles."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_profile(name: str) -> dict[str, Any]:
    """Parameters of a bundled profile (demo, smoke, ...)."""
    path = PROFILES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise RunError(f"unknown profile {name!r}; choose one of {', '.join(available_profiles())}")
    return load_parameter_file(path)


def load_parameter_file(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML mapping of parameter names to values."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RunError(f"cannot read parameter file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise RunError(f"parameter file {path} must hold a mapping of name: value")
    return data


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse ``name=value``; the value is read as a Python literal, else as YAML (true, 1e-3)."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise RunError(f"parameter {text!r} is not of the form name=value")
    try:
        return name.strip(), ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        pass
    try:
        return name.strip(), yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return name.strip(), raw


def plan(notebooks: list[Path], parameters: dict[str, Any]) -> list[PlannedNotebook]:
    """Give each notebook the parameters it declares; reject names that no notebook declares."""
    declared = {nb: declared_parameters(nb) for nb in notebooks}
    for nb, params in declared.items():
        if not params:
            raise RunError(f"{nb.name} has no cell tagged 'parameters'")
    known = set().union(*declared.values()) if declared else set()
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise RunError(f"unknown parameter(s) {', '.join(unknown)}: no notebook declares them; "
                       f"known parameters: {', '.join(sorted(known))}")
    return [PlannedNotebook(nb, {k: v for k, v in parameters.items() if k in declared[nb]})
            for nb in notebooks]


def prepare(planned: PlannedNotebook, output: Path) -> Path:
    """Write the notebook with its parameters injected, without executing it."""
    import papermill

    papermill.execute_notebook(str(planned.path), str(output), parameters=planned.parameters,
                               prepare_only=True, progress_bar=False)
    return output


def export_html(notebook: Path, html: Path) -> Path:
    """Render an executed notebook as a standalone HTML page, atomically."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    return atomic.write_text(html, body)


def execute(planned: PlannedNotebook, out_dir: Path, *, progress_bar: bool = False) -> Path:
    """Execute one notebook into ``out_dir``; the previous good result survives a failure."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{planned.name}.ipynb"
    failed = out_dir / f"{planned.name}.failed.ipynb"
    partial = out_dir / f".{planned.name}.partial.ipynb"
    try:
        papermill.execute_notebook(str(planned.path), str(partial), parameters=planned.parameters,
                                   cwd=str(planned.path.parent), progress_bar=progress_bar,
                                   kernel_name="python3")
    except PapermillExecutionError as exc:
        os.replace(partial, failed)
        raise RunError(f"{planned.path.name} failed in cell {exc.cell_index} "
                       f"(execution count {exc.exec_count}): {exc.ename}: {exc.evalue}\n"
                       f"executed notebook kept at {failed}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, final)
    failed.unlink(missing_ok=True)
    export_html(final, final.with_suffix(".html"))
    return final


def run(*, profile: str | None = None, overrides: dict[str, Any] | None = None,
        only: Iterable[str] = (), data_dir: str = "", reports_dir: str = "",
        echo: Callable[[str], None] = print, progress_bar: bool = False) -> list[Path]:
    """Run the numbered notebooks in order (notebook defaults, a profile, overrides); stop at a failure."""
    parameters = {**(load_profile(profile) if profile else {}), **(overrides or {})}
    for name, folder in (("data_dir", data_dir), ("reports_dir", reports_dir)):
        if folder:
            parameters[name] = str(Path(folder).resolve())
    # Names are checked against every notebook, so a profile still works with --only.
    selected = set(discover_notebooks(only=only))
    planned = [item for item in plan(discover_notebooks(), parameters) if item.path in selected]
    out_dir = paths.resolve(reports_dir=parameters.get("reports_dir", "")).reports_dir / "notebooks"
    done = []
    for index, item in enumerate(planned, start=1):
        echo(f"[{index}/{len(planned)}] {item.path.name} ...")
        start = time.perf_counter()
        done.append(execute(item, out_dir, progress_bar=progress_bar))
        echo(f"[{index}/{len(planned)}] {item.path.name} done in {time.perf_counter() - start:.1f} s "
             f"-> {done[-1].relative_to(out_dir.parent)}")
    return done


def snapshot(*, only: Iterable[str] = (), echo: Callable[[str], None] = print) -> list[Path]:
    """Run the smoke profile in a scratch folder and store its checked outputs in notebooks/."""
    import tempfile

    from meterlib import nbcheck

    # The reference must come from the environment the tests run in.
    os.environ["METERLIB_OFFLINE"] = "1"
    with tempfile.TemporaryDirectory(prefix="meterlib-snapshot-") as scratch:
        executed = run(profile="smoke", only=only, data_dir=f"{scratch}/data",
                       reports_dir=f"{scratch}/reports", echo=echo)
        return [nbcheck.refresh_checked_outputs(paths.notebooks_dir() / ran.name, ran)
                for ran in executed]
