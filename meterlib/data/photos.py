"""Reading photos robustly: files, their bytes, PIL images or arrays, any colour mode, EXIF applied."""

from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from meterlib.errors import DataError
from meterlib.run import bounded_read

# .jpe and .jfif are JPEG files too (older cameras and some browsers save photos so).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
# A phone photo is 2-12 MB; a file far larger is no meter photo and would only fill the memory.
MAX_PHOTO_BYTES = 50 * 2**20
# Seconds a photo file may take to read: 50 MB even from a slow share (5 MB/s); a file that blocks
# (a procfs file behind a link) is given up after this instead of hanging the caller.
READ_TIMEOUT_S = 10.0
# Pixels decoded per photo at most, checked from the header before decoding. 108 MP phone photos
# fit; larger ones (200 MP) cannot be reduced before decoding without breaking "one photo, one
# answer" (only a JPEG file can be decoded at a reduced scale, its array cannot), so they are refused.
MAX_PHOTO_PIXELS = 120_000_000
# What decoding one photo at the cap may take at its peak, the most one decoding thread needs.
# Pillow keeps 4 bytes a pixel for RGB; measured: 4.4 bytes a pixel for an RGB JPEG, 8.4 for an
# EXIF-turned one, 16-21 for photos with alpha, 16-bit grey ones and PIL images with alpha.
DECODE_PEAK_BYTES = 21 * MAX_PHOTO_PIXELS

EXIF_ORIENTATION = 0x0112
# EXIF orientations 5-8 turn the picture by 90 degrees, so width and height swap.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})
_BYTES = (bytes, bytearray, memoryview)  # memoryview: what an ipywidgets FileUpload hands over
# Everything load_rgb accepts as one photo (a caller tells one photo from a list of them with it).
PHOTO_TYPES = (str, os.PathLike, *_BYTES, Image.Image, np.ndarray)
PhotoSource = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray]
# quiet_decoding's state: how many callers are inside it, and the filters it restores after the last.
_quiet_lock = threading.Lock()
_quiet_users = 0
_quiet_filters: warnings.catch_warnings | None = None


@dataclass(frozen=True)
class Photo:
    """A decoded photo (upright 8-bit RGB) and what the file said about itself."""

    image: Image.Image
    width: int  # full-resolution size, after the EXIF orientation is applied
    height: int
    mode: str  # the file's own colour mode, e.g. 'RGB', 'L', 'P', 'CMYK', 'I;16'
    format: str
    exif_rotated: bool  # True when an EXIF orientation other than 'normal' was applied


def is_image_name(path: str | os.PathLike) -> bool:
    """True when the file name has a photo suffix (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def load_rgb(source: PhotoSource, *, min_side: int | None = None) -> Image.Image:
    """A photo as upright 8-bit RGB, from a file path, its bytes, a PIL image or a numpy array.

    ``min_side``: shrink the photo by the largest whole factor (averaging blocks of pixels) that
    keeps both its sides at least twice this long. Every form takes the same steps, so a file, its
    bytes, the PIL image opened from it and that image's array give the same pixels. Arrays are
    H x W (grey), H x W x 1, H x W x 3 (RGB) or H x W x 4 (RGBA) of uint8, uint16, bool or float in [0, 1].
    """
    return load_rgb_sized(source, min_side=min_side)[0]


def load_rgb_sized(source: PhotoSource, *, min_side: int | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """``load_rgb``'s photo, and its upright (width, height) before any shrinking."""
    with quiet_decoding():
        upright = _upright_rgb(source)
    # Twice the final side, as Pillow's reducing_gap=2: the squash to the model's size that follows
    # still resamples by 2x or more, which keeps it within a few grey levels of squashing the full
    # photo, at a quarter of the cost for a 12 MP photo.
    factor = min(upright.size) // (2 * min_side) if min_side else 1
    return (upright.reduce(factor) if factor > 1 else upright), upright.size


def _upright_rgb(source: PhotoSource) -> Image.Image:
    """``source`` (any PhotoSource) as upright 8-bit RGB at its full size."""
    if isinstance(source, Image.Image):
        return _from_pil(source)
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, PHOTO_TYPES):
        return read_photo(source).image
    kind = type(source).__name__ if type(source).__module__ == "builtins" else \
        f"{type(source).__module__}.{type(source).__qualname__}"
    given = "None" if source is None else f"an object of type {kind}"
    hint = " (for an ipywidgets upload, pass its ['content'])" if isinstance(source, Mapping) else ""
    raise DataError(f"cannot read a photo from {given}{hint}: give a file path, the file's bytes, "
                    "a PIL image or a numpy array")


def load_thumbnail(path: str | os.PathLike, *, max_side: int = 256) -> Image.Image:
    """Decode a photo as upright 8-bit RGB no larger than ``max_side``, for display (fast for JPEG)."""
    return read_photo(path, max_side=max_side).image


def read_photo(source: str | os.PathLike | bytes | bytearray | memoryview, *,
               max_side: int | None = None) -> Photo:
    """Decode a photo file or its bytes, with its facts; ``max_side`` shrinks it (a JPEG while decoding)."""
    if isinstance(source, _BYTES):
        size = memoryview(source).nbytes
        name = f"image data ({size} bytes)"
        if size > MAX_PHOTO_BYTES:  # in the words a file of that size gets
            raise DataError(f"too large (over {MAX_PHOTO_BYTES / 2**20:g} MB)", path=name)
        data = bytes(source)
    else:
        name, data = str(source), read_file_bytes(source)
    if not data:
        raise DataError("empty (0 bytes)", path=name)
    # A file is decoded from its bytes too, so both take the same path through Pillow: from a
    # file name it memory-maps raw TIFFs, and (Pillow 13) turns EXIF-oriented ones out of shape.
    with quiet_decoding():
        return _decode(io.BytesIO(data), name, max_side=max_side)


def read_file_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of a regular file, read within MAX_PHOTO_BYTES and READ_TIMEOUT_S; UnreadableFile otherwise."""
    return bounded_read.read_file(path, limit=MAX_PHOTO_BYTES, timeout=READ_TIMEOUT_S)


@contextlib.contextmanager
def quiet_decoding():
    """Keep Pillow's warnings (damaged metadata, its bomb warning) from users while photos decode.

    Warning filters belong to the whole process, and threads that each saved and restored them
    would restore one another's and leave a filter behind; so the first of any number of
    overlapping users (a batch, its decoding threads) sets the filters and the last restores them.
    meterlib's own pixel cap says what Pillow's bomb warning would.
    """
    global _quiet_users, _quiet_filters
    with _quiet_lock:
        if _quiet_users == 0:
            _quiet_filters = warnings.catch_warnings()
            _quiet_filters.__enter__()
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        _quiet_users += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_users -= 1
            if _quiet_users == 0:
                _quiet_filters.__exit__(None, None, None)


def _decode(file: io.BytesIO, name: str, *, max_side: int | None) -> Photo:
    """The one decoder behind files and bytes, so both give the same pixels."""
    try:
        with Image.open(file) as img:
            mode, fmt, full_size = img.mode, img.format or "", img.size
            ratio = max_side / max(img.size) if max_side else 1.0
            if ratio < 1:
                # JPEG only: the decoder scales by 1/2..1/8 while decoding, far cheaper than resizing;
                # it keeps at least the size asked for, so ask for the final size.
                img.draft(None, (max(1, int(img.width * ratio)), max(1, int(img.height * ratio))))
            _check_pixels(img.size, name)  # after the draft: a JPEG too large to predict makes a thumbnail
            img.load()
            # Read after decoding: Pillow turns some TIFFs upright itself and then drops their tag.
            orientation = img.getexif().get(EXIF_ORIENTATION, 1)
            ImageOps.exif_transpose(img, in_place=True)  # a turned copy would double the memory
            upright = to_rgb(img)
    except DataError:
        raise
    except UnidentifiedImageError:
        raise DataError("not an image file (format not recognised)", path=name) from None
    except Image.DecompressionBombError:  # Pillow's own limit, met in the header before meterlib's
        raise _too_many_pixels(f"over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.3g}", name) from None
    except Exception as exc:  # damaged data makes Pillow raise many types (EOFError, struct.error, ...)
        problem = f"unreadable or truncated image ({exc or type(exc).__name__})"
        raise DataError(problem, path=name) from None
    if max_side and max(upright.size) > max_side:
        upright.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    width, height = full_size[::-1] if orientation in _QUARTER_TURNS else full_size
    return Photo(upright, width, height, mode, fmt, orientation not in (1, None))


def _check_pixels(size: tuple[int, int], name: str) -> None:
    """DataError when a photo of ``size`` (width, height) has more than MAX_PHOTO_PIXELS pixels."""
    if size[0] * size[1] > MAX_PHOTO_PIXELS:
        raise _too_many_pixels(f"{size[0] * size[1] / 1e6:.3g}", name)


def _too_many_pixels(megapixels: str, name: str) -> DataError:
    """The DataError for a photo of ``megapixels`` (a number as text) over the cap."""
    return DataError(f"too many pixels ({megapixels} MP; photos of up to {MAX_PHOTO_PIXELS / 1e6:.3g} MP "
                     "are read)", path=name)


def _from_pil(img: Image.Image) -> Image.Image:
    """A PIL image converted as a file of its mode would be, EXIF orientation applied."""
    name = getattr(img, "filename", "") or f"PIL image (mode {img.mode}, {img.width}x{img.height})"
    if img.width == 0 or img.height == 0:
        raise DataError("empty image (no pixels)", path=name)
    _check_pixels(img.size, name)  # the same cap as its file, before a lazily opened one decodes
    try:
        return to_rgb(ImageOps.exif_transpose(img))
    except Exception as exc:  # a lazily opened file decodes here, with the same failures as _decode
        raise DataError(f"cannot be converted to RGB ({exc or type(exc).__name__})", path=name) from None


def _from_array(arr: np.ndarray) -> Image.Image:
    """An H x W (x 1, 3 or 4) array as RGB, converted as the file saved from it would be."""
    name = f"array of shape {arr.shape} and dtype {arr.dtype}"
    if arr.size == 0:
        raise DataError("empty array (no pixels)", path=name)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2 and not (arr.ndim == 3 and arr.shape[2] in (3, 4)):
        raise DataError("expected H x W, H x W x 1, H x W x 3 (RGB) or H x W x 4 (RGBA) pixels", path=name)
    _check_pixels(arr.shape[1::-1], name)  # the same cap as the file saved from it
    return to_rgb(Image.fromarray(np.ascontiguousarray(_array_pixels(arr, name))))


def _array_pixels(arr: np.ndarray, name: str) -> np.ndarray:
    """uint8 pixels, except that a grey uint16 array stays 16-bit like a 16-bit grey file."""
    kind, size = arr.dtype.kind, arr.dtype.itemsize
    if kind == "u" and size == 1:
        return arr
    if kind == "b":
        return arr.astype(np.uint8) * 255
    if kind == "u" and size == 2:
        # A 16-bit RGB(A) file decodes to its high bytes; PIL has no 16-bit colour mode.
        return arr if arr.ndim == 2 else (arr >> 8).astype(np.uint8)
    if kind != "f":
        raise DataError("unsupported dtype (give uint8, uint16, bool or float in [0, 1])", path=name)
    values = arr.astype(np.float64)
    if not np.isfinite(values).all():
        raise DataError("contains NaN or infinite values", path=name)
    if values.min() < 0 or values.max() > 1:
        raise DataError(f"float pixels must lie in [0, 1], found {values.min():g} to {values.max():g}",
                        path=name)
    return np.round(values * 255).astype(np.uint8)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode (palette, alpha, CMYK, 16-bit, float) to 8-bit RGB; an RGB image comes back as it is."""
    if img.mode == "RGB":  # a copy would double a large photo's memory
        return img
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        arr = np.array(img, dtype=np.float64)
        top = arr.max() if arr.size else 0.0
        if top > 255:
            arr *= 255.0 / top  # in place, like the clip: each float copy is 8 bytes a pixel
        img = Image.fromarray(np.clip(arr, 0, 255, out=arr).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img if img.mode == "RGBA" else img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")
