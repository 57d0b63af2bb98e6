"""Reading a whole file with limits on its size and on the time it may take.

A name can point anywhere: a FIFO, a device, or a procfs file such as ``/proc/kmsg`` that calls
itself regular and blocks on read. Opening without blocking and checking the opened file (not
the name, which could change in between) refuses the first two; a read that runs past its time
is abandoned to a daemon thread, so that one file never hangs the caller.
"""

from __future__ import annotations

import os
import stat
import threading

from meterlib.errors import UnreadableFile

_CHUNK = 1 << 20


def read_file(path: str | os.PathLike, *, limit: int, timeout: float) -> bytes:
    """The bytes of the regular file ``path``: at most ``limit`` of them, read within ``timeout`` seconds."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UnreadableFile("file not found", path=path) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        reason = getattr(exc, "strerror", None) or exc
        raise UnreadableFile(f"cannot open the file ({reason})", path=path) from None
    info = os.fstat(fd)
    mode = info.st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO, socket or device"
        raise UnreadableFile(f"not a regular file ({kind})", path=path)
    result: dict = {}
    reader = threading.Thread(target=_read_all, args=(fd, limit, result),
                              kwargs={"expected": info.st_size}, daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():  # the thread closes the file whenever its read returns
        raise UnreadableFile(f"reading did not finish within {timeout:g} s (a file that blocks)", path=path)
    if "error" in result:
        error = result["error"]
        if isinstance(error, BlockingIOError):
            raise UnreadableFile("reading would block (not an ordinary file)", path=path)
        raise UnreadableFile(f"cannot read the file ({error.strerror or type(error).__name__})", path=path)
    if result["size"] > limit:
        shown = f"{limit / 2**20:g} MB" if limit >= 2**20 else f"{limit} bytes"
        raise UnreadableFile(f"too large (over {shown})", path=path)
    return result["data"]


def _read_all(fd: int, limit: int, result: dict, *, expected: int) -> None:
    """Read ``fd`` to its end or past ``limit`` into ``result``; always closes ``fd``.

    The first read asks for the ``expected`` size at once (one copy instead of many); files that
    report no size, as procfs ones do, are read in chunks.
    """
    parts, size, ask = [], 0, max(expected + 1, _CHUNK)
    try:
        while size <= limit:
            part = os.read(fd, min(ask, limit + 1 - size))
            ask = _CHUNK
            if not part:
                break
            parts.append(part)
            size += len(part)
        result.update(data=b"".join(parts), size=size)
    except OSError as exc:
        result["error"] = exc
    finally:
        os.close(fd)
