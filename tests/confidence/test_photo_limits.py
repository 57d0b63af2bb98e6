"""Photo limits: fitted at a quantile of the training photos' audit measures; which limits a photo breaks."""

import numpy as np
import pandas as pd
import pytest

from meterlib.confidence import photo_limits
from meterlib.confidence.photo_limits import PhotoLimits
from meterlib.errors import DataError, SettingsError


def _manifest(n=200, seed=0):
    rng = np.random.default_rng(seed)
    rows = pd.DataFrame({"split": ["train"] * n, "brightness": rng.uniform(0.2, 0.8, n),
                         "contrast": rng.uniform(0.1, 0.3, n), "sharpness": rng.uniform(50, 500, n),
                         "width": rng.integers(300, 900, n), "height": rng.integers(300, 900, n)})
    # Test photos far darker than any training photo must not lower the limits.
    test = rows.head(50).assign(split="test", brightness=0.01)
    return pd.concat([rows, test], ignore_index=True)


def test_limits_sit_at_the_quantile_of_the_training_photos_only():
    manifest = _manifest()
    limits = photo_limits.fit_photo_limits(manifest, quantile=0.05)
    train = manifest[manifest["split"] == "train"]
    assert limits.brightness == pytest.approx(train["brightness"].quantile(0.05))
    assert limits.sharpness == pytest.approx(train["sharpness"].quantile(0.05))
    assert limits.short_side == pytest.approx(np.minimum(train["width"], train["height"]).quantile(0.05))
    assert limits.quantile == 0.05


def test_a_photo_is_judged_poor_on_every_measure_below_its_limit():
    limits = PhotoLimits(brightness=0.2, contrast=0.1, sharpness=50, short_side=300)
    good = {"brightness": 0.5, "contrast": 0.2, "sharpness": 100.0, "short_side": 400}
    assert limits.problem(good) == ""
    dark_and_small = {**good, "brightness": 0.05, "short_side": 120}
    assert limits.problem(dark_and_small) == "too dark (brightness 0.05 < 0.2); too small (short_side 120 < 300)"
    assert limits.problem({**good, "sharpness": 49.0}).startswith("too blurred")
    assert limits.problem({**good, "contrast": 0.1}) == ""  # at the limit is still judged


def test_too_few_measured_training_photos_give_no_limits():
    assert photo_limits.fit_photo_limits(_manifest(n=photo_limits.MIN_PHOTOS - 1)) is None


def test_a_manifest_without_the_audit_columns_is_refused_by_name():
    with pytest.raises(DataError, match="sharpness"):
        photo_limits.fit_photo_limits(_manifest().drop(columns="sharpness"))


@pytest.mark.parametrize("quantile", [-0.1, 0.5, 1.0])
def test_the_quantile_must_be_below_a_half(quantile):
    with pytest.raises(SettingsError, match="poor_photo_quantile"):
        photo_limits.fit_photo_limits(_manifest(), quantile=quantile)


def test_the_field_round_trips_and_is_checked():
    limits = photo_limits.fit_photo_limits(_manifest())
    assert PhotoLimits.from_field(limits.to_field()) == limits
    assert photo_limits.field_problem(limits.to_field()) == ""
    assert "keys" in photo_limits.field_problem({"brightness": 0.1})
    assert "finite numbers" in photo_limits.field_problem({**limits.to_field(), "sharpness": float("inf")})
    assert "finite numbers" in photo_limits.field_problem({**limits.to_field(), "contrast": -1})
