"""Fault-injection suite: shared helpers, and the outcome table printed at the end of the run.

Every case builds a broken or hostile input in a temporary folder, runs one entry point on it
and states the exact outcome. ``robust`` records that outcome for the summary table.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import configuration

_OUTCOMES: list[tuple[str, str, str, str]] = []
# Temporary folders in messages, shortened in the table.
_TMP = re.compile(r"/tmp/pytest-of-[^/]+/pytest-\d+/[^/\s']+")


@pytest.fixture(autouse=True, scope="session")
def _hypothesis_home(tmp_path_factory):
    """Hypothesis keeps examples and constants in .hypothesis/ of the working directory (the project): not there."""
    configuration.set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))


def tree_digest(root: Path) -> dict[str, str]:
    """Everything under ``root`` as {relative path: content hash, link target or file kind}.

    Uses lstat only, so links are not followed and FIFOs are never opened.
    """
    result = {}
    for folder, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(folder, name)
            rel = os.fsencode(path.relative_to(root)).decode("utf-8", "backslashreplace")
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                result[rel] = "link -> " + os.readlink(path)
            elif stat.S_ISREG(mode):
                result[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISDIR(mode):
                result[rel] = "dir"
            else:
                result[rel] = f"special {stat.S_IFMT(mode):o}"
    return result


@dataclass
class Recorder:
    """What one case records: the entry point it hit and the outcome in a few words."""

    case: str
    entry: str = ""
    outcome: str = ""

    def error(self, message: str, *, names: str | os.PathLike | None, problem: str) -> None:
        """Assert a clean error: it names the file or parameter and matches ``problem``."""
        message = str(message)
        assert "Traceback" not in message, message
        if names is not None:
            assert str(names) in message, f"{names!s} not named in: {message}"
        assert re.search(problem, message, flags=re.IGNORECASE), f"{problem!r} not in: {message}"
        first_line = _TMP.sub("<tmp>", message.splitlines()[0])
        self.outcome = "error: " + first_line[:110]

    @contextlib.contextmanager
    def untouched(self, *roots: Path):
        """Assert that the trees under ``roots`` are byte-identical after the block."""
        before = [tree_digest(Path(root)) for root in roots]
        yield
        assert [tree_digest(Path(root)) for root in roots] == before, "input tree changed"

    def ok(self, what: str) -> None:
        """Record a case that is handled without an error (flagged, converted, skipped ...)."""
        self.outcome = what


@pytest.fixture(scope="session")
def predictor(random_checkpoint):
    """The Predictor of the small random checkpoint (tests/conftest.py): arbitrary but fixed answers."""
    from meterlib.serve.predictor import Predictor

    return Predictor.from_checkpoint(random_checkpoint, device="cpu")


@pytest.fixture()
def folder(tmp_path) -> Path:
    """An empty folder for a case's inputs, whose tree the case checks is left untouched."""
    (tmp_path / "inputs").mkdir()
    return tmp_path / "inputs"


@pytest.fixture()
def robust(request) -> Recorder:
    """Record the case's entry point and outcome for the suite's summary table."""
    recorder = Recorder(case=request.node.name)
    yield recorder
    report = getattr(request.node, "rep_call", None)
    passed = report is not None and report.passed
    _OUTCOMES.append((recorder.case, recorder.entry, recorder.outcome or "-",
                      "pass" if passed else "FAIL"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report


def outcome_table() -> str:
    """The recorded cases as a markdown table."""
    lines = ["| case | entry point | outcome | result |", "|---|---|---|---|"]
    lines += [f"| {case} | {entry} | {outcome.replace('|', '/')} | {result} |"
              for case, entry, outcome, result in _OUTCOMES]
    passed = sum(result == "pass" for *_, result in _OUTCOMES)
    lines.append(f"\n{len(_OUTCOMES)} cases, {passed} pass")
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter):
    if _OUTCOMES:
        terminalreporter.write_sep("=", "robustness cases")
        terminalreporter.write_line(outcome_table())
