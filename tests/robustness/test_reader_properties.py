"""Properties of the photo reader: any bytes decode or raise DataError; saved images round-trip upright."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from meterlib.data import photos
from meterlib.errors import DataError

# Modes each format writes and reads back (see Pillow's format notes).
MODES = {
    "PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"],
    "BMP": ["1", "L", "P", "RGB"],
    "TIFF": ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"],
}
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True, scope="module")
def small_bomb_limit():
    # A mutated header may claim ~100 M pixels: below Pillow's default bomb limit, but slow to
    # allocate. A low limit keeps every example fast; the reader's handling is the same.
    before = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 1_000_000
    yield
    Image.MAX_IMAGE_PIXELS = before


def sample(mode: str, width: int, height: int, seed: int) -> Image.Image:
    """A random picture in ``mode``."""
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    return rgb.convert(mode)


def encoded(img: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


SEEDS = {fmt: encoded(sample("RGB", 12, 9, 0), fmt) for fmt in ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")}


@st.composite
def damaged_files(draw) -> bytes:
    """A real small image file, cut short and with some bytes overwritten."""
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(0, 6))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


def outcome(source) -> tuple[str, bytes]:
    """('ok', pixels) or ('error', the message without the name of the source)."""
    try:
        image = photos.load_rgb(source, min_side=4)
    except DataError as exc:
        return "error", exc.problem.encode()
    assert image.mode == "RGB" and min(image.size) >= 1
    return "ok", image.tobytes()


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on the damaged metadata it skips
@SETTINGS
@given(st.one_of(st.binary(max_size=600), damaged_files()))
def test_any_bytes_decode_or_raise_image_error_the_same_as_their_file(data):
    from_bytes = outcome(data)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "upload.img"
        path.write_bytes(data)
        assert outcome(path) == from_bytes


@SETTINGS
@given(fmt=st.sampled_from(sorted(MODES)), data=st.data(), width=st.integers(1, 40), height=st.integers(1, 40),
       seed=st.integers(0, 2**16), orientation=st.integers(1, 8))
def test_saved_images_read_back_upright_rgb(fmt, data, width, height, seed, orientation):
    mode = data.draw(st.sampled_from(MODES[fmt]), label="mode")
    exif = Image.Exif()
    if fmt != "BMP":  # BMP has no EXIF
        exif[photos.EXIF_ORIENTATION] = orientation
    else:
        orientation = 1
    file_bytes = encoded(sample(mode, width, height, seed), fmt, exif=exif)
    upright = (height, width) if orientation >= 5 else (width, height)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"photo.{fmt.lower()}"
        path.write_bytes(file_bytes)
        photo = photos.read_photo(path)
    assert (photo.image.mode, photo.image.size, (photo.width, photo.height)) == ("RGB", upright, upright)
    assert photos.load_rgb(file_bytes).tobytes() == photo.image.tobytes()


ARRAY_DTYPES = st.sampled_from([np.uint8, np.uint16, np.bool_, np.float32, np.float64, np.int64, np.int8])


@SETTINGS
@given(hnp.arrays(ARRAY_DTYPES, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6)))
def test_arrays_become_rgb_of_their_size_or_raise_image_error(array):
    try:
        image = photos.load_rgb(array)
    except DataError as exc:
        assert str(array.shape) in str(exc) and str(array.dtype) in str(exc)
        return
    height, width = array.shape[:2]
    assert array.ndim in (2, 3) and array.shape[2:] in ((), (1,), (3,), (4,))
    assert image.mode == "RGB" and image.size == (width, height)
