"""Naming discovered groups without a person: majority labels, and a named copy with photos kept back to test on."""

import numpy as np
import pandas as pd
import pytest

from meterlib.data.adding import MEMBERS_NAME, NOISE
from meterlib.discover import clustering, naming, outputs
from meterlib.errors import SettingsError


def _clusters(groups):
    new_types = [clustering.NewType(number, np.asarray(members), []) for number, members in enumerate(groups)]
    n = sum(map(len, groups)) + 1
    return clustering.Clusters(cluster=np.full(n, NOISE), status=np.full(n, clustering.NOISY),
                               known_type=np.full(n, -1), nearest_type=np.zeros(n, int), similarity=np.zeros(n),
                               new_types=new_types, settings=clustering.DEFAULT_SETTINGS)


def test_each_group_takes_its_most_common_label():
    labels = ["A", "A", "B", "B", "B", "C", "x"]
    assert naming.majority_labels(_clusters([[0, 1, 2], [3, 4, 5]]), labels) == {0: "A", 1: "B"}


def _discovery(folder, sizes):
    folder.mkdir()
    rows = [{"cluster": c, "file": f"/photos/{c}_{i}.jpg"} for c, size in enumerate(sizes) for i in range(size)]
    rows.append({"cluster": NOISE, "file": "/photos/noise.jpg"})
    pd.DataFrame(rows).to_csv(folder / MEMBERS_NAME, index=False)
    pd.DataFrame({"cluster": range(len(sizes)), "photos": sizes, "name": ""}).to_csv(
        folder / outputs.NEW_TYPES_NAME, index=False)
    return folder


def test_a_named_copy_fills_the_names_and_keeps_back_a_share_of_each_named_group(tmp_path):
    found = _discovery(tmp_path / "found", [10, 6, 4])
    kept = naming.named_copy(found, tmp_path / "to_add", {0: "NEW1", 2: "NEW2"}, test_share=0.3, seed=1)
    names = pd.read_csv(tmp_path / "to_add" / outputs.NEW_TYPES_NAME, dtype=str, keep_default_na=False)
    assert list(names["name"]) == ["NEW1", "", "NEW2"]
    assert kept.groupby("class").size().to_dict() == {"NEW1": 3, "NEW2": 1}
    members = pd.read_csv(tmp_path / "to_add" / MEMBERS_NAME)
    assert len(members) == 21 - 4 and not set(kept["file"]) & set(members["file"])
    assert (members["cluster"] == 1).sum() == 6  # an unnamed group keeps every photo
    again = naming.named_copy(found, tmp_path / "again", {0: "NEW1", 2: "NEW2"}, test_share=0.3, seed=1)
    assert list(again["file"]) == list(kept["file"])  # the same seed keeps the same photos back
    assert pd.read_csv(found / MEMBERS_NAME).shape[0] == 21  # the discovery's own files are left alone


def test_naming_a_cluster_the_discovery_lacks_is_refused(tmp_path):
    found = _discovery(tmp_path / "found", [5])
    with pytest.raises(SettingsError, match="cluster.s. 3, which .* does not hold .its clusters: 0."):
        naming.named_copy(found, tmp_path / "to_add", {3: "NEW1"})
    with pytest.raises(SettingsError, match="test_share"):
        naming.named_copy(found, tmp_path / "to_add", {0: "NEW1"}, test_share=1.0)
    assert not (tmp_path / "to_add").exists()
