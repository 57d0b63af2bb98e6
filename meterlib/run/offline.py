"""The METERLIB_OFFLINE switch: when set, meterlib never touches the network."""

from __future__ import annotations

import os

from meterlib.errors import UnavailableError

_TRUE = {"1", "true", "yes", "on"}


def is_offline() -> bool:
    """True when METERLIB_OFFLINE is set to 1/true/yes/on."""
    return os.environ.get("METERLIB_OFFLINE", "").strip().lower() in _TRUE


def require_network(what: str) -> None:
    """Raise UnavailableError naming ``what`` if the offline switch is on."""
    if is_offline():
        raise UnavailableError(f"{what} needs the network, but METERLIB_OFFLINE is set; "
                           "use a local file or the bundled weights instead")
