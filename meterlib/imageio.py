"""Reading photos robustly: any common format and colour mode, EXIF orientation applied."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
EXIF_ORIENTATION = 0x0112
# EXIF orientations 5-8 turn the picture by 90 degrees, so width and height swap.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})


class ImageError(ValueError):
    """A file that cannot be used as a photo; the message names the file and the problem."""


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


def load_rgb(path: str | os.PathLike, *, min_side: int | None = None) -> Image.Image:
    """Decode a photo as 8-bit RGB, upright per its EXIF orientation.

    ``min_side``: a JPEG may be decoded at a reduced scale (1/2, 1/4, 1/8) as long as both its
    sides stay at least this long, which is several times faster for photos that get shrunk anyway.
    """
    return read_photo(path, min_side=min_side).image


def load_thumbnail(path: str | os.PathLike, *, max_side: int = 256) -> Image.Image:
    """Decode a photo as upright 8-bit RGB no larger than ``max_side`` (fast for JPEG)."""
    return read_photo(path, max_side=max_side).image


def read_photo(path: str | os.PathLike, *, max_side: int | None = None, min_side: int | None = None) -> Photo:
    """Decode a photo with its facts; ``max_side`` shrinks it, ``min_side`` as in :func:`load_rgb`."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageError(f"{path}: empty file (0 bytes)")
        with Image.open(path) as img:
            mode, fmt = img.mode, img.format or ""
            orientation = img.getexif().get(EXIF_ORIENTATION, 1)
            width, height = img.size
            if orientation in _QUARTER_TURNS:
                width, height = height, width
            ratio = max_side / max(img.size) if max_side else 1.0
            if ratio < 1:
                # JPEG only: the decoder scales by 1/2..1/8 while decoding, far cheaper than resizing;
                # it keeps at least the size asked for, so ask for the final size.
                img.draft(None, (max(1, int(img.width * ratio)), max(1, int(img.height * ratio))))
            elif min_side:
                img.draft(None, (min_side, min_side))
            img.load()
            upright = to_rgb(ImageOps.exif_transpose(img))
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (format not recognised)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{path}: unreadable or truncated image ({exc})") from None
    if max_side and max(upright.size) > max_side:
        upright.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return Photo(upright, width, height, mode, fmt, orientation not in (1, None))


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode (palette, alpha, CMYK, 16-bit, float) to 8-bit RGB."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() if arr.size else 0.0
        scale = 255.0 / top if top > 255 else 1.0
        img = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")
