"""Photo quality: one measure for 01's audit and for serving."""

import numpy as np
import pytest
from PIL import Image

from meterlib.data import measuring, quality
from meterlib.model import inference


def _photo(seed=0, size=(640, 480)):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    return Image.fromarray(base).resize(size, Image.Resampling.BICUBIC)


def test_a_flat_grey_photo_has_its_brightness_and_no_contrast_or_sharpness():
    measures = quality.quality(Image.new("RGB", (50, 40), (51, 51, 51)))
    assert measures == {"brightness": pytest.approx(0.2), "contrast": 0.0, "sharpness": 0.0}


def test_large_photos_are_measured_on_a_copy_of_quality_side():
    photo = _photo()
    small = photo.copy()
    small.thumbnail((quality.QUALITY_SIDE,) * 2, Image.Resampling.BILINEAR)
    assert quality.quality(photo) == quality.quality(small)
    assert photo.size == (640, 480)  # the photo itself is left as it was


def test_serving_measures_a_photo_as_the_audit_did(tmp_path):
    path = tmp_path / "meter.jpg"
    _photo(1, (1200, 900)).save(path, quality=92)
    audited = measuring.inspect_file(path)
    served = inference.load_resized([path], image_size=64, measure=True)[0]
    assert served.picture.size == (64, 64) and served.quality["short_side"] == 900
    assert served.quality["brightness"] == pytest.approx(audited["brightness"], abs=0.01)
    assert served.quality["contrast"] == pytest.approx(audited["contrast"], abs=0.01)
    assert served.quality["sharpness"] == pytest.approx(audited["sharpness"], rel=0.25)
