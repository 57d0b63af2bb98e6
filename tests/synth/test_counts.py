"""Synthetic data: the catalog of invented meter types and the long-tailed class counts."""

from collections import Counter

import pytest

from meterlib.synth import CATALOG, catalog_table, class_names, long_tail_counts
from meterlib.synth.counts import resolve_class_counts


def test_catalog_has_38_types_in_12_to_15_families_of_2_to_5_variants():
    assert len(CATALOG) == 38
    assert len({t.class_name for t in CATALOG}) == 38
    variants = Counter(t.family for t in CATALOG)
    assert 12 <= len(variants) <= 15
    assert all(2 <= n <= 5 for n in variants.values())


def test_variants_of_a_family_differ_and_nothing_else_is_identical():
    looks = {t.class_name: tuple(v for k, v in vars(t).items() if k not in ("class_name", "variant", "cue", "model"))
             for t in CATALOG}
    assert len(set(looks.values())) == 38


def test_first_classes_come_from_distinct_brands():
    families = [name.rstrip("0123456789") for name in class_names(14)]
    assert len(set(families)) == 14
    assert list(catalog_table()["class"]) == class_names()


def test_default_counts_have_the_field_datas_long_tail():
    counts = long_tail_counts(1975, 38)
    assert sum(counts) == 1975 and len(counts) == 38
    assert counts == sorted(counts, reverse=True)
    assert 2 <= sum(c <= 5 for c in counts) <= 5
    assert sum(c >= 80 for c in counts) >= 5
    assert min(counts) >= 1


@pytest.mark.parametrize("n_images, n_classes", [(4, 4), (32, 4), (200, 10), (5000, 38)])
def test_counts_scale_to_other_sizes(n_images, n_classes):
    counts = long_tail_counts(n_images, n_classes)
    assert sum(counts) == n_images and len(counts) == n_classes and min(counts) >= 1
    assert counts == sorted(counts, reverse=True)


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_images=3, n_classes=4), "at least n_classes"),
    (dict(n_images=100, n_classes=39), "between 1 and 38"),
    (dict(n_images=100, n_classes=0), "between 1 and 38"),
    (dict(n_images=-5, n_classes=2), "at least n_classes"),
    (dict(n_images=10.5, n_classes=2), "must be an integer"),
])
def test_bad_totals_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        long_tail_counts(**kwargs)


def test_caller_counts_by_list_or_by_name():
    assert resolve_class_counts(n_images=5, n_classes=2, class_counts=[3, 2]) == dict(zip(class_names(2), [3, 2]))
    picked = resolve_class_counts(n_images=4, n_classes=2, class_counts={"KORVANT2": 1, "KORVANT1": 3})
    assert picked == {"KORVANT1": 3, "KORVANT2": 1}


@pytest.mark.parametrize("counts, message", [
    ([3, 2], "sums to 5 but n_images=6"),
    ([3, 3, 0], "positive integers"),
    ([6], "has 1 classes but n_classes=2"),
    ({"NOPE1": 6, "AMPEXA1": 0}, "unknown classes"),
])
def test_bad_caller_counts_are_refused(counts, message):
    with pytest.raises(ValueError, match=message):
        resolve_class_counts(n_images=6, n_classes=2, class_counts=counts)
