"""How many images each class gets: a long tail like the field data, or counts the caller fixes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist

from meterlib.errors import SettingsError
from meterlib.synth.catalog import BY_NAME, class_names

# The field data (1,975 photos, 38 types) has a heavy lower tail (a few types with <= 5 photos)
# and a milder upper one (several with 80+, none dominating). Class sizes follow the quantiles
# of a normal distribution pushed through exp() with a steeper slope below the median.
_LOWER_SLOPE = 1.5
_UPPER_SLOPE = 0.7


def long_tail_counts(n_images: int, n_classes: int) -> list[int]:
    """Long-tailed per-class counts, largest first, summing to n_images with at least one each."""
    _check_totals(n_images, n_classes)
    normal = NormalDist()
    quantiles = [normal.inv_cdf((n_classes - i - 0.5) / n_classes) for i in range(n_classes)]
    weights = [math.exp((_LOWER_SLOPE if z < 0 else _UPPER_SLOPE) * z) for z in quantiles]
    # Every class gets one image; the rest is shared by weight with largest-remainder rounding.
    spare = n_images - n_classes
    shares = [spare * w / sum(weights) for w in weights]
    counts = [1 + int(s) for s in shares]
    by_remainder = sorted(range(n_classes), key=lambda i: (-(shares[i] - int(shares[i])), i))
    for i in by_remainder[: n_images - sum(counts)]:
        counts[i] += 1
    return counts


def resolve_class_counts(*, n_images: int, n_classes: int,
                         class_counts: Sequence[int] | Mapping[str, int] | None) -> dict[str, int]:
    """Class name -> image count: the long tail by default, else the caller's counts (checked)."""
    if class_counts is None:
        return dict(zip(class_names(n_classes), long_tail_counts(n_images, n_classes)))
    if isinstance(class_counts, Mapping):
        unknown = sorted(set(class_counts) - set(BY_NAME))
        if unknown:
            raise SettingsError(f"class_counts names unknown classes {unknown}; valid names come from "
                                f"meterlib.synth.class_names()")
        names = [name for name in class_names() if name in class_counts]
        counts = [class_counts[name] for name in names]
    else:
        counts = list(class_counts)
        if len(counts) > len(BY_NAME):
            raise SettingsError(f"class_counts has {len(counts)} entries but the catalog has {len(BY_NAME)} classes")
        names = class_names(len(counts)) if counts else []
    bad = [c for c in counts if isinstance(c, bool) or not isinstance(c, int) or c < 1]
    if bad:
        raise SettingsError(f"class_counts must be positive integers, got {bad}")
    if len(counts) != n_classes:
        raise SettingsError(f"class_counts has {len(counts)} classes but n_classes={n_classes}; "
                            f"pass n_classes={len(counts)}")
    if sum(counts) != n_images:
        raise SettingsError(f"class_counts sums to {sum(counts)} but n_images={n_images}; pass n_images={sum(counts)}")
    return dict(zip(names, counts))


def _check_totals(n_images: int, n_classes: int) -> None:
    for name, value in (("n_images", n_images), ("n_classes", n_classes)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{name} must be an integer, got {value!r}")
    class_names(n_classes)  # validates the range against the catalog size
    if n_images < n_classes:
        raise SettingsError(f"n_images ({n_images}) must be at least n_classes ({n_classes}): "
                            "every class needs an image")
