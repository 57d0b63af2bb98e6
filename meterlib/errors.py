"""meterlib's errors: one ``except MeterlibError`` catches every refusal, a subclass says what kind it is.

Each kind also keeps the built-in type that code would have caught before (ValueError,
RuntimeError, OSError), so a caller that catches those still works. The message names the file or
setting and the problem; entry points (the runner, the command line, the public API) check their
inputs and raise these, inner functions trust what they are given.
"""

from __future__ import annotations

import functools
import os


class MeterlibError(Exception):
    """Something meterlib refuses to do; the message names the file or parameter and the problem."""


class SettingsError(MeterlibError, ValueError):
    """A setting, parameter or option that is unknown (a typo), of the wrong kind or out of its range."""


class DataError(MeterlibError, ValueError):
    """Photos, a dataset folder or a split file that cannot be used as they are.

    ``path`` names the file (or the photo in memory) when given, ``problem`` says what is wrong
    with it; the message is ``"<path>: <problem>"``, or the problem alone.
    """

    def __init__(self, problem: str, *, path: str | os.PathLike | None = None) -> None:
        super().__init__(problem if path is None else f"{path}: {problem}")
        self.path = None if path is None else os.fspath(path)
        self.problem = problem

    def __reduce__(self):
        # Rebuilt through __init__, so that it crosses into a worker process and back whole, also where
        # tblib (which Dask installs) pickles exceptions and would call ValueError.__new__ on it.
        return functools.partial(type(self), path=self.path), (self.problem,)


class UnreadableFile(DataError, OSError):
    """A file that could not be read within meterlib's limits (size, time) or is not a regular file."""


class ModelFileError(MeterlibError, ValueError):
    """A checkpoint or exported model that cannot be used: missing, unreadable, inconsistent or broken."""


class ExportError(MeterlibError, RuntimeError):
    """An export that failed its check against the checkpoint, or could not be made."""


class OutputError(MeterlibError, ValueError):
    """An output that would replace a file meterlib did not write, or one of the command's own inputs."""


class UnavailableError(MeterlibError, RuntimeError):
    """Something a run needs that is not here: an optional package, or weights that cannot be downloaded."""


class RunError(MeterlibError, RuntimeError):
    """A notebook run that failed or could not start; the message names the notebook and the cell."""
