"""The split rule's parameter checks and its choice of photo groups, at their boundaries."""

import re

import pytest

from meterlib.data import splits
from meterlib.errors import SettingsError

VALID = dict(seed=0, min_images_test=5, min_images_val=5, test_fraction=0.4, val_fraction=0.5)


@pytest.mark.parametrize("change", [
    {}, dict(min_images_test=1, min_images_val=1), dict(val_fraction=0.0), dict(test_fraction=0.01, val_fraction=0.98),
])
def test_the_smallest_workable_rules_are_accepted(change):
    splits.check_rule(**{**VALID, **change})


@pytest.mark.parametrize("change, message", [
    (dict(seed=-1), "seed must be a whole number >= 0, got -1"),
    (dict(seed=True), "seed must be a whole number >= 0, got True"),
    (dict(min_images_test=1.5), "min_images_test must be a whole number >= 0, got 1.5"),
    (dict(min_images_val=-2), "min_images_val must be a whole number >= 0, got -2"),
    (dict(test_fraction=float("nan")), "test_fraction must be a number between 0 and 1, got nan"),
    (dict(test_fraction="0.2"), "test_fraction must be a number between 0 and 1, got '0.2'"),
    (dict(val_fraction=True), "val_fraction must be a number between 0 and 1, got True"),
    (dict(val_fraction=float("inf")), "val_fraction must be a number between 0 and 1, got inf"),
    (dict(min_images_test=0), "need 0 < min_images_test (0) <= min_images_val (5)"),
    (dict(min_images_test=6), "need 0 < min_images_test (6) <= min_images_val (5)"),
    (dict(test_fraction=0.0), "test_fraction (0.0) and val_fraction (0.5) must lie in [0, 1)"),
    (dict(test_fraction=0.5), "test_fraction (0.5) and val_fraction (0.5) must lie in [0, 1)"),
    (dict(val_fraction=-0.1), "test_fraction (0.4) and val_fraction (-0.1) must lie in [0, 1)"),
])
def test_each_unworkable_rule_is_refused_by_name(change, message):
    with pytest.raises(SettingsError, match="^" + re.escape(message)):
        splits.check_rule(**{**VALID, **change})


def _choose(sizes: dict, targets: dict) -> tuple[dict, list]:
    order = list(sizes)
    return splits._choose_groups(order, sizes, targets), order


def test_groups_fill_a_share_in_order_skipping_those_too_large():
    chosen, left = _choose({"a": 2, "c": 3, "b": 1}, {"test": 3})
    assert chosen == {"a": "test", "b": "test"} and left == ["c"]


def test_each_share_takes_its_own_groups():
    chosen, left = _choose(dict.fromkeys("abcde", 1), {"test": 2, "val": 2})
    assert chosen == {"a": "test", "b": "test", "c": "val", "d": "val"} and left == ["e"]


def test_when_every_group_is_too_large_the_smallest_is_held_out():
    assert _choose({"x": 5, "y": 4, "z": 6}, {"test": 3}) == ({"y": "test"}, ["x", "z"])
    assert _choose({"x": 5, "y": 4}, {"test": 3}) == ({"y": "test"}, ["x"])


def test_training_keeps_the_last_group():
    assert _choose({"a": 1}, {"test": 5}) == ({}, ["a"])
    assert _choose({"a": 3, "b": 4}, {"test": 10}) == ({"a": "test"}, ["b"])
