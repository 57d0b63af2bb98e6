"""The error contract: every refusal meterlib makes is one of the kinds in meterlib.errors."""

import ast
import builtins
import pickle
from pathlib import Path

import pytest

from meterlib import errors
from meterlib.run import paths

PACKAGE = paths.PACKAGE_DIR
KINDS = {name for name, value in vars(errors).items()
         if isinstance(value, type) and issubclass(value, errors.MeterlibError)}
# Built-in errors a module may not make: a refusal is a kind, and MeterlibError alone says no kind.
# Warnings are no errors: a module may define and issue its own (confidence.calibration does).
FORBIDDEN = {name for name, value in vars(builtins).items()
             if isinstance(value, type) and issubclass(value, BaseException) and not issubclass(value, Warning)
             } | {"MeterlibError"}
# The built-in errors that stay, by file and name, each with the reason it is no refusal of a user's input.
ALLOWED = {
    ("run/atomic.py", "OSError"): "a failed write is the disk's own OSError, rebuilt to name the file asked for",
    ("synth/glyphs.py", "ValueError"): "logo kinds come from the constant catalog: a kind without a drawing "
                                       "is a bug in meterlib",
}


def built_in_errors(source: str) -> list[tuple[int, str]]:
    """(line, name) of each forbidden error made in ``source``: called (raised or kept) or raised bare."""
    found = []
    for node in ast.walk(ast.parse(source)):
        made = node.func if isinstance(node, ast.Call) else node.exc if isinstance(node, ast.Raise) else None
        if isinstance(made, ast.Name) and made.id in FORBIDDEN:
            found.append((node.lineno, made.id))
    return sorted(set(found))


def error_classes(source: str) -> list[tuple[int, str]]:
    """(line, name) of each class in ``source`` based on an error: a built-in one, a kind, or *Error/*Exception."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            bases = {base.id if isinstance(base, ast.Name) else base.attr for base in node.bases
                     if isinstance(base, (ast.Name, ast.Attribute))}
            if any(base in FORBIDDEN or base in KINDS or base.endswith(("Error", "Exception")) for base in bases):
                found.append((node.lineno, node.name))
    return found


def violations(package: Path) -> list[str]:
    """What breaks the contract in the package at ``package``, one line each, and allow-list entries no longer used."""
    found, used = [], set()
    for path in sorted(package.rglob("*.py")):
        name = path.relative_to(package).as_posix()
        source = path.read_text(encoding="utf-8")
        for line, error in built_in_errors(source):
            if (name, error) in ALLOWED:
                used.add((name, error))
            else:
                found.append(f"{name}:{line}: {error}: raise a kind from meterlib.errors")
        if name != "errors.py":
            found += [f"{name}:{line}: class {cls}: errors live in meterlib/errors.py"
                      for line, cls in error_classes(source)]
    return found + [f"{name}: {error} allowed but no longer made" for name, error in sorted(set(ALLOWED) - used)]


def test_every_refusal_is_a_kind_from_meterlib_errors():
    assert violations(PACKAGE) == []


def test_the_scan_finds_what_it_forbids(tmp_path):
    # Guards the guard: a new `raise ValueError("x")` or error class anywhere in meterlib fails the test above.
    assert built_in_errors('raise ValueError("x")') == [(1, "ValueError")]
    assert built_in_errors("raise KeyError") == [(1, "KeyError")]
    assert built_in_errors('wrong = FileNotFoundError("x")\nraise wrong') == [(1, "FileNotFoundError")]
    assert built_in_errors('raise MeterlibError("x")') == [(1, "MeterlibError")]
    assert built_in_errors('raise SettingsError("x")\nraise exc\nraise\nwarnings.warn("x", UserWarning)') == []
    assert error_classes("class Oops(ValueError): pass\nclass Mine(errors.DataError, LookupError): pass") == [
        (1, "Oops"), (2, "Mine")]
    assert error_classes("class CalibrationWarning(UserWarning): pass\nclass Spec: pass") == []
    (tmp_path / "synth").mkdir()
    (tmp_path / "synth" / "glyphs.py").write_text('raise ValueError("allowed")\n')
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "atomic.py").write_text("")
    (tmp_path / "new.py").write_text('def f():\n    raise ValueError("x")\n\n\nclass NewError(RuntimeError):\n    pass\n')
    assert violations(tmp_path) == ["new.py:2: ValueError: raise a kind from meterlib.errors",
                                    "new.py:5: class NewError: errors live in meterlib/errors.py",
                                    "run/atomic.py: OSError allowed but no longer made"]


@pytest.mark.parametrize("kind", sorted(KINDS - {"MeterlibError"}))
def test_each_kind_is_also_the_built_in_type_callers_caught_before(kind):
    error = getattr(errors, kind)
    assert issubclass(error, errors.MeterlibError) and issubclass(error, (ValueError, RuntimeError, OSError))


def test_a_data_error_names_its_file_and_keeps_the_problem_apart():
    error = errors.UnreadableFile("too large (over 50 MB)", path=Path("/photos/big.jpg"))
    assert str(error) == "/photos/big.jpg: too large (over 50 MB)"
    assert isinstance(error, errors.DataError) and isinstance(error, OSError)
    again = pickle.loads(pickle.dumps(error))  # as it crosses into a worker process and back
    assert (again.path, again.problem, str(again)) == ("/photos/big.jpg", "too large (over 50 MB)", str(error))
    pickling_support = pytest.importorskip("tblib.pickling_support")  # Dask installs it: the error stays whole

    reduced = pickling_support.pickle_exception(error)
    again = reduced[0](*reduced[1])
    assert type(again) is errors.UnreadableFile and (again.path, again.problem) == (error.path, error.problem)
    assert (str(errors.DataError("no photos")), errors.DataError("no photos").path) == ("no photos", None)
