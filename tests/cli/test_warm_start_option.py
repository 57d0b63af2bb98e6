"""``meterlib run --warm-start`` hands notebook 02 an absolute checkpoint path and the warm preset."""

import os

import pytest

from meterlib.cli import main as cli
from meterlib.run import runner


@pytest.fixture()
def overrides(monkeypatch):
    seen = {}
    monkeypatch.setattr(runner, "run", lambda **kwargs: seen.update(kwargs["overrides"]))
    return seen


def test_warm_start_is_absolute_and_picks_the_warm_preset(overrides, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "parent.pt").write_bytes(b"")
    assert cli.main(["run", "--warm-start", "model/parent.pt", "-p", "dataset=mine"]) == 0
    assert overrides == {"dataset": "mine", "warm_start": os.path.join(str(tmp_path), "model", "parent.pt"),
                         "preset": "warm"}


def test_a_preset_given_beside_it_is_kept(overrides, tmp_path):
    parent = tmp_path / "parent.pt"
    parent.write_bytes(b"")
    assert cli.main(["run", "--warm-start", str(parent), "-p", "preset=default"]) == 0
    assert overrides["preset"] == "default" and overrides["warm_start"] == str(parent)


def test_a_missing_checkpoint_is_named_before_any_notebook_runs(overrides, capsys):
    assert cli.main(["run", "--warm-start", "no/such.pt"]) == 1
    assert "no/such.pt: --warm-start checkpoint not found" in capsys.readouterr().err
    assert overrides == {}  # runner.run never called


def test_without_it_nothing_is_added(overrides):
    assert cli.main(["run", "-p", "dataset=mine"]) == 0
    assert overrides == {"dataset": "mine"}
