"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    An OSError names ``path`` (the file the user asked for), never the temporary file.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise _naming(exc, target) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates owner-only files; give the result the usual permissions instead
        os.chmod(tmp_path, target.stat().st_mode & 0o777 if target.exists() else 0o644)
        os.replace(tmp_path, target)
    except OSError as exc:
        raise _naming(exc, target) from None
    finally:
        tmp_path.unlink(missing_ok=True)


def _naming(exc: OSError, target: Path) -> OSError:
    """The same kind of OSError, about ``target``: "cannot write <target> (<reason>)"."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return type(exc)(exc.errno, f"cannot write {target} ({reason})") if exc.errno else \
        OSError(f"cannot write {target} ({reason})")


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 text."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def strict_json_value(data: Any) -> Any:
    """``data`` with numpy values as Python ones and NaN/±inf as None, so strict JSON can hold it."""
    if isinstance(data, np.ndarray):
        data = data.tolist()
    elif isinstance(data, np.generic):
        data = data.item()
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {_strict_key(key): strict_json_value(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [strict_json_value(value) for value in data]
    return data


def _strict_key(key: Any) -> str:
    # The text json would make of a number or None key, now, so that sort_keys can order mixed keys.
    key = key.item() if isinstance(key, np.generic) else key
    return key if isinstance(key, str) else json.dumps(key)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Atomically write pretty-printed strict JSON (RFC 8259): NaN and ±inf are written as null.

    Other values json cannot write (a Path, a timestamp) are written as their str().
    """
    text = json.dumps(strict_json_value(data), indent=2, sort_keys=True, default=str, allow_nan=False)
    return write_text(path, text + "\n")


def write_csv(path: str | os.PathLike, frame) -> Path:
    """Atomically write a pandas DataFrame as CSV without its index."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 110) -> Path:
    """Atomically save a matplotlib figure (format from the file suffix)."""
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=target.suffix.lstrip(".") or "png")
    return target
