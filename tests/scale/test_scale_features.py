"""``meterlib features``: float16 unit-length features and photo names per partition, the same on a cluster."""

import numpy as np
import pytest

from meterlib.discover import inputs
from meterlib.errors import DataError
from meterlib.scale import features
from meterlib.serve import Predictor


def test_features_are_the_discovery_features_in_float16_on_a_cluster_too(tmp_path, plant, random_checkpoint,
                                                                          command):
    distributed = pytest.importorskip("distributed")
    photos = plant(tmp_path / "photos")
    args = [photos, "--checkpoint", random_checkpoint, "--partition-size", "4", "--batch-size", "4"]
    report = command("features", *args, "--out", tmp_path / "here")
    assert report.splitlines()[0] == f"wrote the features of 8 photos in {tmp_path / 'here'} (3 could not be read)"
    here = features.read(tmp_path / "here")
    files = sorted((path for path in photos.rglob("*.jpg")), key=str)
    expected = inputs.features_each(Predictor.from_checkpoint(random_checkpoint).with_folded_batch_norms(), files,
                                    names=[str(file) for file in files], batch_size=4)
    assert here.files == expected.files and here.unreadable == expected.unreadable
    assert here.values.dtype == np.float16
    np.testing.assert_allclose(here.values, expected.values, atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(here.values.astype(np.float32), axis=1), 1, atol=1e-3)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        command("features", *args, "--out", tmp_path / "there", "--scheduler", cluster.scheduler_address)
    there = features.read(tmp_path / "there")
    assert (there.files, there.unreadable) == (here.files, here.unreadable)
    np.testing.assert_allclose(there.values, here.values, atol=1e-3)  # 1 thread there, 2 here: float rounding


def test_an_unfinished_job_is_not_read_as_if_whole(tmp_path, plant, random_checkpoint, command):
    command("features", plant(tmp_path / "photos"), "--checkpoint", random_checkpoint, "--out", tmp_path / "out",
            "--partition-size", "4", "--batch-size", "4")
    (tmp_path / "out" / "features-00001.csv").unlink()
    with pytest.raises(DataError, match="1 of 3 partitions are unfinished .*--resume"):
        features.read(tmp_path / "out")
    report = command("features", tmp_path / "photos", "--checkpoint", random_checkpoint, "--out", tmp_path / "out",
                     "--partition-size", "4", "--batch-size", "4", "--resume")
    assert report.splitlines()[1] == f"3 partitions in {tmp_path / 'out'}: 1 run in this process, 2 finished before"
    assert len(features.read(tmp_path / "out").files) == 8
