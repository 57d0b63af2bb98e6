"""Where photos come from besides files and folders: lists of paths or URLs, and URLs fetched with limits.

A list is a CSV file (``.csv``; one column holds the photos), or FILE given as ``@FILE`` (a CSV when
it ends ``.csv``, else one path or URL a line) unless a file named ``@FILE`` exists. A URL that cannot be fetched,
because the offline switch is on, the link is dead, the server is slow or sends a web page,
becomes that photo's DataError, never a stopped batch.
"""

from __future__ import annotations

import csv
import difflib
import http.client
import io
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from meterlib import __version__
from meterlib.data import photos
from meterlib.errors import DataError, SettingsError, UnreadableFile
from meterlib.run import bounded_read, offline
from meterlib.serve import batch

# Fetching a URL: each attempt must finish (connect, headers, body) within TIMEOUT_S; a failure
# that may pass (no answer, a broken connection, HTTP 408/429/5xx) is tried RETRIES more times,
# RETRY_WAIT_S apart, doubling; FETCH_THREADS URLs are fetched at once.
TIMEOUT_S = 30.0
RETRIES = 2
RETRY_WAIT_S = 1.0
FETCH_THREADS = 8
MAX_BYTES = photos.MAX_PHOTO_BYTES  # a URL's body is held to the limit a photo file has
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# A CSV list's column when none is named: the first of these among its columns (any case); 'file'
# is a `meterlib predict` CSV's, 'image' the original system's audit CSV's.
DEFAULT_COLUMNS = ("file", "path", "url", "image")
LIST_PREFIX = "@"
# A list is read whole: a million URLs take about 100 MB. Read within limits, as photos are.
MAX_LIST_BYTES = 2**30
LIST_READ_TIMEOUT_S = 60.0
OFFLINE_PROBLEM = "not fetched: METERLIB_OFFLINE is set, so meterlib does not use the network"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_CHUNK = 1 << 16


class Url(str):
    """An input that is a URL, kept as written."""

    __slots__ = ()


Item = Path | Url


def is_url(text: str | os.PathLike) -> bool:
    """Whether an input names a URL (``scheme://...``) rather than a local path."""
    return isinstance(text, str) and _SCHEME.match(text) is not None


def gather(arguments: Sequence[str | os.PathLike], *, column: str | None = None) -> batch.Inputs:
    """The photos to predict: as ``batch.expand_inputs`` for files and folders, plus URLs and lists' entries.

    Named files and photos found in folders come first, sorted, as ``expand_inputs`` gives them;
    URLs and the entries of lists follow in the order given; an item given twice is kept once,
    at its first place. A list's relative paths are read from the list's folder. ``column`` names
    the column of the CSV lists (default: the first of DEFAULT_COLUMNS they have). A list that
    lists nothing, or only paths that do not exist, is a DataError naming it.
    """
    lists = {index: path for index, path in enumerate(map(list_file, arguments)) if path is not None}
    if column is not None and not any(_is_csv(path) for path in lists.values()):
        raise SettingsError(f"column {column!r} given, but no CSV list (a .csv file) is among the inputs")
    plain = [argument for index, argument in enumerate(arguments) if index not in lists and not is_url(argument)]
    found = batch.found_inputs(plain)
    ordered: list[Item] = []
    for index, argument in enumerate(arguments):
        if index in lists:
            ordered += read_list(lists[index], column=column)
        elif is_url(argument):
            ordered.append(Url(argument))
    items = list(dict.fromkeys([*found.files, *ordered]))
    batch.require_photos(items, arguments)
    return batch.Inputs(items, found.skipped)


def list_file(argument: str | os.PathLike) -> Path | None:
    """The list an input names (``@FILE``, unless a file of that very name exists; or a ``.csv`` file that is
    not a folder), else None."""
    if isinstance(argument, str) and argument.startswith(LIST_PREFIX) and not os.path.lexists(argument):
        return Path(argument[len(LIST_PREFIX):])
    if is_url(argument) or not _is_csv(argument) or Path(argument).is_dir():
        return None
    return Path(argument)


def local_inputs(arguments: Sequence[str | os.PathLike], inputs: batch.Inputs) -> list[Path]:
    """Every local file a command on ``arguments`` reads, lists included (so that no output replaces one)."""
    lists = [path for path in map(list_file, arguments) if path is not None]
    return lists + [item for item in inputs.files if isinstance(item, Path)]


def read_list(path: Path, *, column: str | None = None) -> list[Item]:
    """The entries of the list ``path``: URLs as Url, paths as Path from the list's folder; blanks left out."""
    try:
        text = bounded_read.read_file(path, limit=MAX_LIST_BYTES, timeout=LIST_READ_TIMEOUT_S).decode("utf-8-sig")
    except UnreadableFile as exc:
        problem = "list not found" if exc.problem == "file not found" else f"cannot read the list: {exc.problem}"
        raise DataError(problem, path=path) from None
    except UnicodeDecodeError:
        raise DataError("list is not UTF-8 text", path=path) from None
    entries = _csv_entries(path, text, column) if _is_csv(path) else text.splitlines()
    items = [Url(entry) if is_url(entry) else path.parent / entry for entry in map(str.strip, entries) if entry]
    if not items:
        raise DataError("lists no paths or URLs", path=path)
    if not any(isinstance(item, Url) or item.exists() for item in items):
        raise DataError(f"none of the {len(items)} paths it lists exists (relative ones are read from the "
                        f"list's folder, {path.parent})", path=path)
    return items


def _csv_entries(path: Path, text: str, column: str | None) -> list[str]:
    """The cells of a CSV list's photo column (``column``, else the first of DEFAULT_COLUMNS present)."""
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise DataError(f"not a readable CSV ({exc})", path=path) from None
    if not rows:
        raise DataError("empty CSV (no header row)", path=path)
    header = [name.strip().casefold() for name in rows[0]]
    wanted = [column] if column is not None else DEFAULT_COLUMNS
    place = next((header.index(name.strip().casefold()) for name in wanted if name.strip().casefold() in header),
                 None)
    if place is None:
        columns = ", ".join(map(repr, rows[0]))
        if column is None:
            raise DataError(f"no column named {', '.join(DEFAULT_COLUMNS)}; its columns are {columns}; "
                            "name the one holding the photos with --column", path=path)
        close = difflib.get_close_matches(column, rows[0], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(f"no column {column!r}{hint}; its columns are {columns}", path=path)
    return [row[place] for row in rows[1:] if place < len(row)]


def _is_csv(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".csv"


def read_each(items: Sequence[Item], *, fetch: Callable[[str], bytes] | None = None,
              threads: int = FETCH_THREADS) -> list[Path | bytes | DataError]:
    """What ``Predictor.predict_each`` takes for each item: a path as it is, a URL's bytes, or the DataError
    (naming the URL) saying why it could not be fetched.

    URLs are fetched ``threads`` at a time by ``fetch`` (default ``fetch_url``; e.g.
    ``functools.partial(fetch_url, timeout=5)`` for other limits); a fetch raises DataError to fail.
    """
    fetch = fetch or fetch_url

    def read(item: Item):
        if not isinstance(item, Url):
            return item
        try:
            return fetch(item)
        except DataError as exc:
            return exc.with_traceback(None)  # the traceback would keep the fetch's frames alive

    urls = sum(isinstance(item, Url) for item in items)
    if urls <= 1:
        return [read(item) for item in items]
    with ThreadPoolExecutor(min(threads, urls)) as pool:
        return list(pool.map(read, items))


def read_chunks(items: Sequence[Item], *, size: int, fetch: Callable[[str], bytes] | None = None
                ) -> Iterator[tuple[Sequence[Item], list]]:
    """``items`` ``size`` at a time, each chunk with its ``read_each``; the next chunk's URLs are fetched
    while the caller predicts this one, so only two chunks' photos are ever held."""
    chunks = [items[start:start + size] for start in range(0, len(items), size)]
    if not chunks:
        return
    with ThreadPoolExecutor(1) as ahead:
        pending = ahead.submit(read_each, chunks[0], fetch=fetch)
        for index, chunk in enumerate(chunks):
            done = pending.result()
            if index + 1 < len(chunks):
                pending = ahead.submit(read_each, chunks[index + 1], fetch=fetch)
            yield chunk, done


def fetch_url(url: str, *, timeout: float = TIMEOUT_S, max_bytes: int = MAX_BYTES, retries: int = RETRIES,
              retry_wait: float = RETRY_WAIT_S) -> bytes:
    """The body of the http(s) ``url``, or a DataError naming it that says why not (offline, dead, slow, ...)."""
    if offline.is_offline():
        raise DataError(OFFLINE_PROBLEM, path=url)
    try:
        parts = urllib.parse.urlsplit(url)
        has_host = bool(parts.hostname)
    except ValueError as exc:  # e.g. a broken IPv6 address
        raise DataError(f"not a valid URL ({exc})", path=url) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise DataError("only http:// and https:// URLs are fetched", path=url)
    if not has_host:
        raise DataError("not a valid URL (no host)", path=url)
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(retry_wait * 2 ** (attempt - 1))
        body = _download(url, timeout=timeout, max_bytes=max_bytes)
        if isinstance(body, bytes):
            return body
        problem = body
    tries = f" ({retries + 1} tries)" if retries else ""
    raise DataError(problem + tries, path=url)


def _download(url: str, *, timeout: float, max_bytes: int) -> bytes | str:
    """One attempt at ``url``'s body (bytes), or the problem (str) of a failure that may pass when tried again;
    DataError when trying again cannot help."""
    request = urllib.request.Request(url, headers={"User-Agent": f"meterlib/{__version__}", "Accept": "image/*"})
    deadline = time.monotonic() + timeout
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if kind.startswith("text/"):
                raise DataError(f"the server sent a web page or text ({kind}), not a photo", path=url)
            parts, size = [], 0
            while size <= max_bytes:
                part = response.read1(min(_CHUNK, max_bytes + 1 - size))  # what has come: see the deadline below
                if not part:
                    break
                parts.append(part)
                size += len(part)
                if time.monotonic() > deadline:  # a server that trickles: each read is within time, the whole is not
                    return f"the download did not finish within {timeout:g} s"
    except urllib.error.HTTPError as exc:
        exc.close()
        problem = f"HTTP {exc.code} {exc.reason}".rstrip()
        if exc.code not in RETRY_STATUS:
            raise DataError(problem, path=url) from None
        return problem
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return f"no answer within {timeout:g} s"
        return f"could not connect ({getattr(reason, 'strerror', None) or reason})"
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except http.client.InvalidURL as exc:  # e.g. a space in it, or a port that is no number
        raise DataError(f"not a valid URL ({exc})", path=url) from None
    except (OSError, http.client.HTTPException) as exc:  # the connection broke off mid-way
        return f"the connection broke off ({exc or type(exc).__name__})"
    if size > max_bytes:
        raise DataError(_too_large(max_bytes), path=url)
    return b"".join(parts)


def _too_large(limit: int) -> str:
    """In the words a photo file of that size gets."""
    return f"too large (over {limit / 2**20:g} MB)" if limit >= 2**20 else f"too large (over {limit} bytes)"
