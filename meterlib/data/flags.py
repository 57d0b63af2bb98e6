"""The 'flags' column of the audit and of splits.csv: the names of what was found in a file, ';'-joined."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

SEPARATOR = ";"
# A file with one of these flags cannot be used at all; it is named in the manifest and skipped.
UNUSABLE_FLAGS = ("zero_byte", "not_image", "truncated", "unreadable", "no_class", "no_split",
                  "special_file", "broken_link", "link_loop", "bad_name")


def join_flags(flags: Iterable[str]) -> str:
    """One 'flags' value from flag names, kept in the order given ('' for none)."""
    return SEPARATOR.join(flags)


def parse_flags(text: str | float | None) -> set[str]:
    """The flag names in one 'flags' value (none for '', None or NaN)."""
    return set(text.split(SEPARATOR)) - {""} if isinstance(text, str) else set()


def has_flag(files: pd.DataFrame, *flags: str) -> pd.Series:
    """True for the rows whose 'flags' include any of ``flags``."""
    wanted = set(flags)
    return files["flags"].map(lambda text: not wanted.isdisjoint(parse_flags(text))).astype(bool)


def is_unusable(files: pd.DataFrame) -> pd.Series:
    """True for the rows that cannot be used at all (a flag in UNUSABLE_FLAGS)."""
    return has_flag(files, *UNUSABLE_FLAGS)
