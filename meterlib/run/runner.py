"""Headless execution of the numbered notebooks with papermill."""

from __future__ import annotations

import ast
import contextlib
import functools
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import yaml

from meterlib.errors import DataError, RunError, SettingsError
from meterlib.run import atomic, paths
from meterlib.model.transforms import Augment
from meterlib.run import parameters as parameters_module
from meterlib.train.recipe import TrainConfig

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
# Parameters that name a file or folder, or a list of them (``dataset`` too, when it is written as a path).
PATH_PARAMETERS = ("data_dir", "reports_dir", "weights_path", "checkpoint", "photos")
LOCK_NAME = ".meterlib-run.lock"


@dataclass(frozen=True)
class PlannedNotebook:
    """One notebook, the parameters it will receive and the defaults of the rest."""

    path: Path
    parameters: dict[str, Any]
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def settings(self) -> dict[str, Any]:
        """Every parameter's value in this run: the injected ones over the notebook's defaults."""
        return {**self.defaults, **self.parameters}


def discover_notebooks(folder: Path | None = None, *, only: Iterable[str] = ()) -> list[Path]:
    """The numbered notebooks in order; ``only`` keeps those whose name starts with a prefix."""
    found = sorted((folder or paths.notebooks_dir()).glob(NOTEBOOK_GLOB))
    prefixes = tuple(only)
    if prefixes:
        found = [nb for nb in found if nb.name.startswith(prefixes)]
        if not found:
            raise SettingsError(f"no notebook matches {', '.join(prefixes)}")
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
        raise SettingsError(f"unknown profile {name!r}; choose one of {', '.join(available_profiles())}")
    return load_parameter_file(path)


def load_parameter_file(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML mapping of parameter names to values."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        # YAML's messages span several lines with a caret drawing; the CLI prints one line.
        raise SettingsError(f"cannot read parameter file {path}: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"parameter file {path} must hold a mapping of name: value")
    return data


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse ``name=value``; the value is read as a Python literal, else as YAML (true, 1e-3)."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise SettingsError(f"parameter {text!r} is not of the form name=value")
    try:
        return name.strip(), ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        pass
    try:
        return name.strip(), yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return name.strip(), raw


def plan(notebooks: list[Path], parameters: dict[str, Any]) -> list[PlannedNotebook]:
    """Give each notebook the parameters it declares, checked and with paths made absolute.

    Names that no notebook declares, and values of the wrong type or range, are refused.
    """
    declared = {nb: declared_parameters(nb) for nb in notebooks}
    for nb, params in declared.items():
        if not params:
            raise RunError(f"{nb.name} has no cell tagged 'parameters'")
    hints = {name: info["inferred_type_name"] for params in declared.values() for name, info in params.items()}
    unknown = sorted(set(parameters) - set(hints))
    if unknown:
        raise SettingsError(f"unknown parameter(s) {', '.join(unknown)}: no notebook declares them; "
                            f"known parameters: {', '.join(sorted(hints))}")
    checked = absolute_paths({name: parameters_module.check(name, value, hints[name], door=door())
                              for name, value in parameters.items()})
    return [PlannedNotebook(nb, {k: v for k, v in checked.items() if k in params},
                            {k: _literal(info["default"]) for k, info in params.items()})
            for nb, params in declared.items()]


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


@functools.cache
def door() -> dict[str, parameters_module.Rule]:
    """The rules every parameter is checked by at the door: the tables and the training settings' fields."""
    return parameters_module.door_rules(TrainConfig, Augment)


def absolute_paths(parameters: dict[str, Any]) -> dict[str, Any]:
    """Path parameters resolved against the directory the command runs from, not the notebooks'.

    ``dataset`` is a path when it looks like one (``data/x``, ``./x``, ``~/x``, ``/x``); a bare
    name stays a name, looked up under the data folder.
    """
    resolved = dict(parameters)
    for name, value in parameters.items():
        is_path = name in PATH_PARAMETERS or (name == "dataset" and _looks_like_path(value))
        if is_path:
            resolved[name] = [_absolute(item) for item in value] if isinstance(value, list) else _absolute(value)
    return resolved


def _absolute(value: Any) -> Any:
    return str(Path(value).expanduser().resolve()) if isinstance(value, str) and value else value


def _looks_like_path(value: Any) -> bool:
    return isinstance(value, str) and (os.sep in value or "/" in value or value.startswith((".", "~")))


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
    from traitlets.config import Config

    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{planned.name}.ipynb"
    failed = out_dir / f"{planned.name}.failed.ipynb"
    partial = out_dir / f".{planned.name}.partial.ipynb"
    try:
        # Over TCP every kernel warns that code and outputs cross localhost unencrypted: talk over Unix
        # sockets in a private folder instead (an absolute ip, or they land in the notebooks' folder).
        with tempfile.TemporaryDirectory(prefix="meterlib-kernel-") as sockets:
            ipc = Config({"KernelManager": {"transport": "ipc", "ip": f"{sockets}/kernel"}})
            papermill.execute_notebook(str(planned.path), str(partial), parameters=planned.parameters,
                                       cwd=str(planned.path.parent), progress_bar=progress_bar,
                                       kernel_name="python3", config=ipc)
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
    """Run the numbered notebooks in order (notebook defaults, a profile, overrides); stop at a failure.

    Everything is checked before the first notebook starts: parameter names, types and ranges,
    that the dataset exists (or is one to generate), and that no other run writes the same reports.
    """
    parameters = {**(load_profile(profile) if profile else {}), **(overrides or {})}
    parameters.update({name: folder for name, folder in (("data_dir", data_dir), ("reports_dir", reports_dir))
                       if folder})
    # Names are checked against every notebook, so a profile still works with --only.
    selected = set(discover_notebooks(only=only))
    planned = [item for item in plan(discover_notebooks(), parameters) if item.path in selected]
    if not planned:
        return []
    settings = planned[0].settings
    where = paths.resolve(dataset=settings.get("dataset", ""), data_dir=settings.get("data_dir", ""),
                          reports_dir=settings.get("reports_dir", ""))
    if "dataset" in settings:
        check_dataset(planned, where.dataset_dir)
    done, started = [], time.time()
    with exclusive(where.reports_dir):
        for index, item in enumerate(planned, start=1):
            echo(f"[{index}/{len(planned)}] {item.path.name} ...")
            start = time.perf_counter()
            done.append(execute(item, where.reports_dir / "notebooks", progress_bar=progress_bar))
            echo(f"[{index}/{len(planned)}] {item.path.name} done in {time.perf_counter() - start:.1f} s "
                 f"-> {done[-1].relative_to(where.reports_dir)}")
    for warning in data_warnings(where.metrics_json, since=started):
        echo(f"WARNING: {warning}")
    return done


def data_warnings(metrics_json: Path, *, since: float) -> list[str]:
    """The data warnings (e.g. leakage) of a metrics.json written after ``since`` (a time.time())."""
    if not metrics_json.is_file() or metrics_json.stat().st_mtime < since:
        return []
    return json.loads(metrics_json.read_text(encoding="utf-8")).get("data_warnings", [])


def check_dataset(planned: list[PlannedNotebook], dataset_dir: Path) -> None:
    """Refuse a dataset that does not exist, unless the run generates it (embedded or asked for)."""
    creator = next((item for item in planned if "generate" in item.settings), None)
    if creator is not None:
        paths.needs_generation(creator.settings["dataset"], dataset_dir, generate=creator.settings["generate"])
    elif not dataset_dir.is_dir():
        raise DataError(f"dataset not found: {dataset_dir}")


@contextlib.contextmanager
def exclusive(reports_dir: Path) -> Iterator[None]:
    """Hold the reports folder's lock for a run; a second run on the same folder is refused."""
    import fcntl

    try:
        reports_dir.mkdir(parents=True, exist_ok=True)
        handle = open(reports_dir / LOCK_NAME, "a+", encoding="utf-8")
    except OSError as exc:
        raise RunError(f"cannot write to the reports folder {reports_dir}: {exc.strerror}") from None
    with handle:
        try:
            # The kernel drops the lock when the process dies, so a killed run never blocks the next.
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(f"another meterlib run is writing to {reports_dir}; wait for it to finish "
                           "or choose another reports folder") from None
        yield


def snapshot(*, only: Iterable[str] = (), echo: Callable[[str], None] = print) -> list[Path]:
    """Run the smoke profile in a scratch folder and store its checked outputs in notebooks/."""
    import tempfile

    from meterlib.run import nbcheck

    # The reference must come from the environment the tests run in.
    os.environ["METERLIB_OFFLINE"] = "1"
    with tempfile.TemporaryDirectory(prefix="meterlib-snapshot-") as scratch:
        executed = run(profile="smoke", only=only, data_dir=f"{scratch}/data",
                       reports_dir=f"{scratch}/reports", echo=echo)
        return [nbcheck.refresh_checked_outputs(paths.notebooks_dir() / ran.name, ran)
                for ran in executed]
