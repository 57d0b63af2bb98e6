"""Names for discovered groups without a person: from known labels (a demo's held-out types), and a copy of the
review files with those names, some photos of each named group kept back to test the new types on."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from meterlib.data.adding import MEMBERS_NAME
from meterlib.discover.clustering import Clusters
from meterlib.discover.outputs import NEW_TYPES_NAME
from meterlib.errors import SettingsError
from meterlib.run import atomic


def majority_labels(clusters: Clusters, labels) -> dict[int, str]:
    """Each new group's most common label among its photos (``labels``, one per clustered photo)."""
    labels = np.asarray(labels)
    return {kind.cluster: pd.Series(labels[kind.members]).mode()[0] for kind in clusters.new_types}


def named_copy(discovery: str | os.PathLike, target: str | os.PathLike, naming: Mapping[int, str], *,
               test_share: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Write into ``target`` the new_types.csv of ``discovery`` with ``naming`` filled in, and its members.csv
    less ``test_share`` of each named group's photos (drawn with ``seed``); those photos' rows, with a ``class``.

    ``target`` is then what ``add_types`` reads; the named groups must be ones ``discovery`` found.
    """
    if not 0 <= test_share < 1:
        raise SettingsError(f"test_share must be at least 0 and below 1, got {test_share!r}")
    discovery, target = Path(discovery), Path(target)
    new_types = pd.read_csv(discovery / NEW_TYPES_NAME, dtype=str, keep_default_na=False)
    members = pd.read_csv(discovery / MEMBERS_NAME, dtype=str, keep_default_na=False)
    unknown = sorted(set(map(str, naming)) - set(new_types["cluster"]))
    if unknown:
        raise SettingsError(f"names given for cluster(s) {', '.join(unknown)}, which {discovery / NEW_TYPES_NAME} "
                            f"does not hold (its clusters: {', '.join(new_types['cluster']) or 'none'})")
    rng = np.random.default_rng(seed)
    kept_back = []
    for cluster in sorted(naming):
        rows = members.index[members["cluster"] == str(cluster)]
        kept_back += list(rng.permutation(rows)[:int(round(test_share * len(rows)))])
    new_types["name"] = new_types["cluster"].map(lambda cluster: naming.get(int(cluster), ""))
    atomic.write_csv(target / NEW_TYPES_NAME, new_types)
    atomic.write_csv(target / MEMBERS_NAME, members.drop(index=kept_back))
    return members.loc[kept_back].assign(**{"class": [naming[int(c)] for c in members.loc[kept_back, "cluster"]]})
