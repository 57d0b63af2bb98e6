"""Mutation testing of the modules that hold meterlib's rules, with mutmut 3 (not in CI: minutes per module).

mutmut plants one small bug at a time (``<`` for ``<=``, a dropped argument, another constant) and
runs the unit tests that cover the mutated function; a mutant that every test passes is a rule no
test states. Each module runs in a temporary copy of the project, so no ``mutants/`` folder or
cache lands in the repository, and only against its fast unit tests (never the notebook runs).

    .venv/bin/pip install mutmut==3.8.1
    .venv/bin/python tools/mutation.py                         # every module, then the table
    .venv/bin/python tools/mutation.py conformal selective     # some modules
    .venv/bin/python tools/mutation.py --survivors checkpoint  # also the diff of each surviving mutant

Exits 1 when a module kills fewer than ``--fail-under`` percent of its mutants.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Target:
    """Files to mutate, the tests that state their rules, and (optionally) which functions to mutate."""

    files: tuple[str, ...]
    tests: tuple[str, ...]
    mutants: tuple[str, ...] = ()  # mutmut name patterns; () is every mutant of ``files``


TARGETS = {
    "split": Target(("meterlib/data/splits.py",),
                    ("tests/data/test_audit.py", "tests/data/test_splits.py",
                     "tests/robustness/test_split_properties.py", "tests/robustness/test_data_cases.py")),
    # Of the phase loop only the loss: the loop itself is checked by training runs (seconds per mutant).
    "recipe": Target(("meterlib/train/recipe.py", "meterlib/train/phases.py"), ("tests/train/test_training.py",),
                     mutants=("meterlib.train.recipe.*", "meterlib.train.phases.x_loss_function__mutmut_*")),
    "calibration": Target(("meterlib/confidence/calibration.py", "meterlib/confidence/fitted.py"),
                          ("tests/confidence/test_calibration.py", "tests/confidence/test_fitted.py",
                           "tests/evaluate/test_report.py")),
    "conformal": Target(("meterlib/confidence/conformal.py", "meterlib/confidence/mondrian.py"),
                        ("tests/confidence/test_conformal.py",)),
    "selective": Target(("meterlib/confidence/selective.py",),
                        ("tests/confidence/test_selective.py", "tests/serve/test_predictor_rules.py")),
    "checkpoint": Target(("meterlib/model/checkpoint.py", "meterlib/model/field_formats.py"),
                         ("tests/model/test_checkpoint.py", "tests/model/test_field_formats.py")),
    "predictor": Target(("meterlib/serve/predictor.py",),
                        ("tests/serve/test_predictor.py", "tests/serve/test_predictor_rules.py")),
}
# mutmut counts a mutant that makes the tests time out as killed.
KILLED = ("killed", "timeout")


def module_name(path: str) -> str:
    """The dotted module of a source file, the prefix of its mutants' names."""
    return path.removesuffix(".py").replace("/", ".")


def prepare_copy(target: Target, folder: Path) -> None:
    """The package, the tests and a pyproject.toml that tells mutmut what to mutate and which tests to run."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "meterlib", folder / "meterlib", ignore=skip)
    shutil.copytree(ROOT / "tests", folder / "tests", ignore=skip)
    settings = {
        "source_paths": ["meterlib"],
        "only_mutate": list(target.files),
        "pytest_add_cli_args_test_selection": list(target.tests),
        # --timeout: a mutant that loops forever fails its test instead of stalling the run. Tests of
        # where a warning points (stacklevel) would see mutmut's trampoline as the caller: left out.
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-m", "not slow", "-q", "--timeout", "60",
                                "-k", "not callers_line"],
        # A process forked after torch started its thread pools can hang: fork from a clean server.
        "process_isolation": "forkserver",
        # mutmut limits a mutant's CPU time to 15 times its tests' duration plus this; the duration
        # leaves out fixtures (a model built and saved: seconds), which the constant covers.
        "timeout_constant": 60,
    }
    # JSON lists and strings are valid TOML values.
    section = "\n[tool.mutmut]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items())
    (folder / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + section)


def mutmut(args: list[str], folder: Path, *, timeout: float | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "METERLIB_OFFLINE": "1", "TQDM_DISABLE": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=folder, env=env, timeout=timeout,
                          capture_output=True, text=True)


def statuses(target: Target, folder: Path) -> dict[str, str]:
    """Each of the target's mutants and its outcome (killed, survived, no tests, timeout, ...)."""
    listed = mutmut(["results", "--all", "true"], folder).stdout
    patterns = target.mutants or tuple(module_name(f) + ".*" for f in target.files)
    found = {}
    for line in listed.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name and any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
            found[name] = status
    return found


def run_target(name: str, target: Target, *, jobs: int, timeout: float, survivors: bool) -> tuple[Counter, float]:
    """Mutate one module in a scratch copy; the count of each outcome and the seconds it took."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"meterlib-mutation-{name}-") as scratch:
        folder = Path(scratch)
        prepare_copy(target, folder)
        run = mutmut(["run", "--max-children", str(jobs), *target.mutants], folder, timeout=timeout)
        outcome = statuses(target, folder)
        if not outcome or "not checked" in outcome.values():
            raise SystemExit(f"{name}: mutmut did not check every mutant\n{run.stdout[-3000:]}{run.stderr[-3000:]}")
        if survivors:
            for mutant, status in sorted(outcome.items()):
                if status not in KILLED:
                    print(mutmut(["show", mutant], folder).stdout.rstrip(), flush=True)
    return Counter(outcome.values()), time.perf_counter() - started


def score(counts: Counter) -> float:
    total = sum(counts.values())
    return 100.0 * sum(counts[s] for s in KILLED) / total if total else float("nan")


def table(rows: dict[str, tuple[Counter, float]]) -> str:
    """One line per module; ``killed`` includes the timeouts, also shown on their own."""
    header = (f"{'module':<12} {'mutants':>7} {'killed':>7} {'timeout':>7} {'survived':>8} {'no tests':>8} "
              f"{'other':>5} {'score':>7} {'time':>9}")
    lines = [header, "-" * len(header)]
    for name, (counts, seconds) in rows.items():
        killed = sum(counts[s] for s in KILLED)
        other = sum(counts.values()) - killed - counts["survived"] - counts["no tests"]
        lines.append(f"{name:<12} {sum(counts.values()):>7} {killed:>7} {counts['timeout']:>7} "
                     f"{counts['survived']:>8} {counts['no tests']:>8} {other:>5} {score(counts):>6.1f}% "
                     f"{seconds / 60:>5.1f} min")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="*", metavar="module",
                        help=f"modules to mutate (default: all): {', '.join(TARGETS)}")
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested at once (default 1)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per module")
    parser.add_argument("--survivors", action="store_true", help="print the diff of each mutant not killed")
    parser.add_argument("--fail-under", type=float, default=85.0, help="lowest acceptable score (%%)")
    parser.add_argument("--mutants", nargs="+", metavar="PATTERN",
                        help="only the mutants whose names match, e.g. 'meterlib.model.field_formats.*'")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.modules) - set(TARGETS))
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    if importlib.util.find_spec("mutmut") is None:
        raise SystemExit(f"mutmut is not installed for {sys.executable}: pip install mutmut==3.8.1")
    rows = {}
    for name in args.modules or TARGETS:
        target = replace(TARGETS[name], mutants=tuple(args.mutants)) if args.mutants else TARGETS[name]
        rows[name] = run_target(name, target, jobs=args.jobs, timeout=args.timeout, survivors=args.survivors)
        print(f"{name}: {score(rows[name][0]):.1f}% killed", flush=True)
    print(table(rows))
    return int(any(score(counts) < args.fail_under for counts, _ in rows.values()))


if __name__ == "__main__":
    sys.exit(main())
