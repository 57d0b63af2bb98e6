"""Reading photos robustly: files, their bytes, PIL images or arrays, any colour mode, EXIF applied."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from meterlib.errors import MeterlibError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
EXIF_ORIENTATION = 0x0112
# EXIF orientations 5-8 turn the picture by 90 degrees, so width and height swap.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})
_BYTES = (bytes, bytearray, memoryview)  # memoryview: what an ipywidgets FileUpload hands over
# Everything load_rgb accepts as one photo (a caller tells one photo from a list of them with it).
PHOTO_TYPES = (str, os.PathLike, *_BYTES, Image.Image, np.ndarray)
PhotoSource = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray]


class ImageError(MeterlibError, ValueError):
    """A photo that cannot be used: ``path`` names the file (or the photo in memory), ``problem`` says why.

    The message is ``"<path>: <problem>"``, or the problem alone when ``path`` is None.
    """

    def __init__(self, problem: str, *, path: str | os.PathLike | None = None) -> None:
        super().__init__(problem if path is None else f"{path}: {problem}")
        self.path = None if path is None else str(path)
        self.problem = problem


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

    ``min_side``: a JPEG file or its bytes may be decoded at a reduced scale (1/2, 1/4, 1/8) as
    long as both its sides stay at least this long, several times faster for photos that get
    shrunk anyway; a PIL image or an array is used at its own size. Arrays are H x W (grey),
    H x W x 1, H x W x 3 (RGB) or H x W x 4 (RGBA) of uint8, uint16, bool or float in [0, 1].
    """
    if isinstance(source, Image.Image):
        return _from_pil(source)
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, PHOTO_TYPES):
        return read_photo(source, min_side=min_side).image
    kind = type(source).__name__ if type(source).__module__ == "builtins" else \
        f"{type(source).__module__}.{type(source).__qualname__}"
    given = "None" if source is None else f"an object of type {kind}"
    hint = " (for an ipywidgets upload, pass its ['content'])" if isinstance(source, Mapping) else ""
    raise ImageError(f"cannot read a photo from {given}{hint}: give a file path, the file's bytes, "
                     "a PIL image or a numpy array")


def load_thumbnail(path: str | os.PathLike, *, max_side: int = 256) -> Image.Image:
    """Decode a photo as upright 8-bit RGB no larger than ``max_side`` (fast for JPEG)."""
    return read_photo(path, max_side=max_side).image


def read_photo(source: str | os.PathLike | bytes | bytearray | memoryview, *, max_side: int | None = None,
               min_side: int | None = None) -> Photo:
    """Decode a photo file or its bytes, with its facts; ``max_side`` shrinks it (``min_side``: load_rgb)."""
    if isinstance(source, _BYTES):
        data = bytes(source)
        name = f"image data ({len(data)} bytes)"
    else:
        name, data = str(source), _file_bytes(Path(source))
    if not data:
        raise ImageError("empty (0 bytes)", path=name)
    # A file is decoded from its bytes too, so both take the same path through Pillow: from a
    # file name it memory-maps raw TIFFs, and (Pillow 13) turns EXIF-oriented ones out of shape.
    return _decode(io.BytesIO(data), name, max_side=max_side, min_side=min_side)


def _file_bytes(path: Path) -> bytes:
    """The bytes of a regular file; ImageError for anything else."""
    try:
        mode = path.stat().st_mode  # stat before opening: opening a FIFO would wait for a writer forever
        if stat.S_ISREG(mode):
            return path.read_bytes()
    except FileNotFoundError:
        raise ImageError("file not found", path=path) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        raise ImageError(f"cannot read the file ({exc})", path=path) from None
    kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO, socket or device"
    raise ImageError(f"not a regular file ({kind})", path=path)


def _decode(file: io.BytesIO, name: str, *, max_side: int | None, min_side: int | None) -> Photo:
    """The one decoder behind files and bytes, so both give the same pixels (JPEG draft included)."""
    try:
        with Image.open(file) as img:
            mode, fmt, full_size = img.mode, img.format or "", img.size
            ratio = max_side / max(img.size) if max_side else 1.0
            if ratio < 1:
                # JPEG only: the decoder scales by 1/2..1/8 while decoding, far cheaper than resizing;
                # it keeps at least the size asked for, so ask for the final size.
                img.draft(None, (max(1, int(img.width * ratio)), max(1, int(img.height * ratio))))
            elif min_side:
                img.draft(None, (min_side, min_side))
            img.load()
            # Read after decoding: Pillow turns some TIFFs upright itself and then drops their tag.
            orientation = img.getexif().get(EXIF_ORIENTATION, 1)
            upright = to_rgb(ImageOps.exif_transpose(img))
    except UnidentifiedImageError:
        raise ImageError("not an image file (format not recognised)", path=name) from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"too large to decode safely ({exc})", path=name) from None
    except Exception as exc:  # damaged data makes Pillow raise many types (EOFError, struct.error, ...)
        problem = f"unreadable or truncated image ({exc or type(exc).__name__})"
        raise ImageError(problem, path=name) from None
    if max_side and max(upright.size) > max_side:
        upright.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    width, height = full_size[::-1] if orientation in _QUARTER_TURNS else full_size
    return Photo(upright, width, height, mode, fmt, orientation not in (1, None))


def _from_pil(img: Image.Image) -> Image.Image:
    """A PIL image converted as a file of its mode would be, EXIF orientation applied."""
    name = getattr(img, "filename", "") or f"PIL image (mode {img.mode}, {img.width}x{img.height})"
    if img.width == 0 or img.height == 0:
        raise ImageError("empty image (no pixels)", path=name)
    try:
        return to_rgb(ImageOps.exif_transpose(img))
    except Exception as exc:  # a lazily opened file decodes here, with the same failures as _decode
        raise ImageError(f"cannot be converted to RGB ({exc or type(exc).__name__})", path=name) from None


def _from_array(arr: np.ndarray) -> Image.Image:
    """An H x W (x 1, 3 or 4) array as RGB, converted as the file saved from it would be."""
    name = f"array of shape {arr.shape} and dtype {arr.dtype}"
    if arr.size == 0:
        raise ImageError("empty array (no pixels)", path=name)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2 and not (arr.ndim == 3 and arr.shape[2] in (3, 4)):
        raise ImageError("expected H x W, H x W x 1, H x W x 3 (RGB) or H x W x 4 (RGBA) pixels", path=name)
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
        raise ImageError("unsupported dtype (give uint8, uint16, bool or float in [0, 1])", path=name)
    values = arr.astype(np.float64)
    if not np.isfinite(values).all():
        raise ImageError("contains NaN or infinite values", path=name)
    if values.min() < 0 or values.max() > 1:
        raise ImageError(f"float pixels must lie in [0, 1], found {values.min():g} to {values.max():g}",
                         path=name)
    return np.round(values * 255).astype(np.uint8)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode (palette, alpha, CMYK, 16-bit, float) to 8-bit RGB."""
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() if arr.size else 0.0
        scale = 255.0 / top if top > 255 else 1.0
        img = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")
