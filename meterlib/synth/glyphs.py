"""Small drawing primitives: fonts, 7-segment digits, barcodes, QR-like blocks, brand logos."""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import ImageDraw, ImageFont

# Segments a..g of a 7-segment cell as (x0, y0, x1, y1) in units of the stroke thickness,
# with gaps so the segments look separate as on a real LCD.
_SEGMENTS_OF_DIGIT = {"0": "abcdef", "1": "bc", "2": "abged", "3": "abgcd", "4": "fgbc", "5": "afgcd",
                      "6": "afgedc", "7": "abc", "8": "abcdefg", "9": "abcdfg", "-": "g"}


def shade(rgb: tuple[int, ...], factor: float, add: float = 0) -> tuple[int, ...]:
    """Scale (and lift) a colour, clipped to 0..255."""
    return tuple(int(min(255, max(0, c * factor + add))) for c in rgb)


@functools.lru_cache(maxsize=64)
def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at ``size`` px (its bitmap font where FreeType is missing)."""
    return ImageFont.load_default(size=max(1, int(size)))


def seven_segment(draw: ImageDraw.ImageDraw, text: str, box: tuple[float, float, float, float], *,
                  on: tuple[int, ...], off: tuple[int, ...] | None, slant: float = 0.12) -> None:
    """Draw ``text`` (digits, '-', ' ', '.') as slanted 7-segment cells filling ``box``."""
    x0, y0, x1, y1 = box
    cells = [c for c in text if c != "."]
    n = max(1, len(cells))
    pitch = (x1 - x0) / n
    w, h = pitch * 0.72, y1 - y0
    t = max(1.0, min(w, h) * 0.16)
    gap = t * 0.35
    segs = {
        "a": (gap, 0, w - gap, t), "d": (gap, h - t, w - gap, h), "g": (gap, (h - t) / 2, w - gap, (h + t) / 2),
        "f": (0, gap, t, h / 2 - gap), "b": (w - t, gap, w, h / 2 - gap),
        "e": (0, h / 2 + gap, t, h - gap), "c": (w - t, h / 2 + gap, w, h - gap),
    }
    cell = -1
    for ch in text:
        if ch == ".":
            cx = x0 + cell * pitch + w + gap
            draw.rectangle((cx, y1 - t, cx + t, y1), fill=on)
            continue
        cell += 1
        lit = _SEGMENTS_OF_DIGIT.get(ch, "")
        left = x0 + cell * pitch
        for name, (sx0, sy0, sx1, sy1) in segs.items():
            colour = on if name in lit else off
            if colour is None:
                continue
            # Shear each corner to the right in proportion to its height above the baseline.
            quad = [(sx0, sy0), (sx1, sy0), (sx1, sy1), (sx0, sy1)]
            draw.polygon([(left + x + (h - y) * slant, y0 + y) for x, y in quad], fill=colour)


def barcode(draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float], rng: np.random.Generator,
            *, ink: tuple[int, ...]) -> None:
    """A 1-D barcode of random bars filling ``box``."""
    x0, y0, x1, y1 = box
    widths = rng.integers(1, 4, size=90)
    unit = (x1 - x0) / widths.sum()
    x = x0
    for i, width in enumerate(widths):
        if i % 2 == 0:
            draw.rectangle((x, y0, max(x, x + width * unit - 0.5), y1), fill=ink)
        x += width * unit


def qr_block(draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float], rng: np.random.Generator,
             *, ink: tuple[int, ...], paper: tuple[int, ...]) -> None:
    """A QR-like square: random modules plus the three corner finder patterns."""
    x0, y0, x1, y1 = box
    side = min(x1 - x0, y1 - y0)
    n = 21
    m = side / n
    draw.rectangle((x0 - m, y0 - m, x0 + side + m, y0 + side + m), fill=paper)
    bits = rng.random((n, n)) < 0.5
    for r, c in zip(*np.nonzero(bits)):
        draw.rectangle((x0 + c * m, y0 + r * m, x0 + (c + 1) * m, y0 + (r + 1) * m), fill=ink)
    for fr, fc in ((0, 0), (0, n - 7), (n - 7, 0)):
        fx, fy = x0 + fc * m, y0 + fr * m
        draw.rectangle((fx - m, fy - m, fx + 8 * m, fy + 8 * m), fill=paper)
        draw.rectangle((fx, fy, fx + 7 * m, fy + 7 * m), fill=ink)
        draw.rectangle((fx + m, fy + m, fx + 6 * m, fy + 6 * m), fill=paper)
        draw.rectangle((fx + 2 * m, fy + 2 * m, fx + 5 * m, fy + 5 * m), fill=ink)


def logo(draw: ImageDraw.ImageDraw, kind: str, x: float, y: float, s: float, *,
         ink: tuple[int, ...], paper: tuple[int, ...]) -> None:
    """A brand mark of the given kind in the square (x, y, x+s, y+s)."""
    lw = max(1, round(s * 0.16))
    if kind == "circle":
        draw.ellipse((x, y, x + s, y + s), fill=ink)
        draw.ellipse((x + s * 0.3, y + s * 0.3, x + s * 0.7, y + s * 0.7), fill=paper)
    elif kind == "ring":
        draw.ellipse((x, y, x + s, y + s), outline=ink, width=lw)
        draw.line((x + s * 0.5, y + s * 0.15, x + s * 0.5, y + s * 0.85), fill=ink, width=lw)
    elif kind == "triangle":
        draw.polygon([(x + s / 2, y), (x + s, y + s), (x, y + s)], fill=ink)
    elif kind == "diamond":
        draw.polygon([(x + s / 2, y), (x + s, y + s / 2), (x + s / 2, y + s), (x, y + s / 2)], fill=ink)
    elif kind == "square":
        draw.rectangle((x, y, x + s, y + s), fill=ink)
        draw.rectangle((x + s * 0.28, y + s * 0.28, x + s * 0.72, y + s * 0.72), fill=paper)
    elif kind == "bars":
        for i in range(3):
            top = y + s * (0.6 - 0.3 * i)
            draw.rectangle((x + i * s * 0.36, top, x + i * s * 0.36 + s * 0.24, y + s), fill=ink)
    elif kind == "wave":
        points = [(x + s * i / 12, y + s / 2 - s * 0.35 * math.sin(i / 12 * 2 * math.pi)) for i in range(13)]
        draw.line(points, fill=ink, width=lw, joint="curve")
    else:
        raise ValueError(f"unknown logo kind {kind!r}")


def text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], string: str, *, size: float,
         fill: tuple[int, ...], bold: bool = False) -> None:
    """Draw text with the bundled font; ``bold`` thickens strokes for wordmarks."""
    stroke = max(1, round(size / 25)) if bold else 0
    draw.text(xy, string, font=font(round(size)), fill=fill, stroke_width=stroke, stroke_fill=fill)
