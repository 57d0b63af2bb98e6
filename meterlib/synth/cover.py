"""The meter's transparent cover: reflections, dust, dirt, scratches and marker scribbles."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from meterlib.synth import glyphs

DIRT = (110, 90, 60)


def weather(canvas: Image.Image, box: tuple[int, int, int, int], rng: np.random.Generator) -> dict:
    """Overlay cover reflections, dirt, scratches and scribbles on ``box`` of ``canvas``; return their amounts."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    amounts = {
        "cover_reflection": round(float(rng.uniform(0.1, 0.9)), 3),
        "dirt": round(float(rng.uniform(0.0, 1.0) ** 1.5), 3),
        "scratches": int(rng.integers(0, 12)),
        "marker_scribble": bool(rng.random() < 0.3),
    }
    # Soft structures are drawn at quarter size, softened there (cheap) and scaled up.
    q = 4
    sw, sh = max(1, w // q), max(1, h // q)
    film = Image.new("RGBA", (sw, sh), (0, 0, 0, 0))
    draw = ImageDraw.Draw(film)
    for _ in range(int(amounts["dirt"] * 25)):  # dust and grime patches
        cx, cy = rng.uniform(0, sw), rng.uniform(0, sh)
        r = rng.uniform(0.02, 0.15) * sw
        draw.ellipse((cx - r, cy - r * rng.uniform(0.3, 1), cx + r, cy + r),
                     fill=(*DIRT, int(rng.uniform(40, 140) * amounts["dirt"])))
    for _ in range(int(rng.integers(1, 4))):  # diagonal sheen bands on the curved cover
        x = rng.uniform(-0.3, 1.0) * sw
        band = rng.uniform(0.05, 0.25) * sw
        tilt = rng.uniform(0.2, 0.8) * sh
        alpha = int(255 * amounts["cover_reflection"] * rng.uniform(0.25, 0.6))
        draw.polygon([(x, 0), (x + band, 0), (x + band + tilt, sh), (x + tilt, sh)], fill=(255, 255, 255, alpha))
    film = film.filter(ImageFilter.BoxBlur(1)).resize((w, h), Image.Resampling.BILINEAR)
    canvas.paste(film, (x0, y0), film)
    draw = ImageDraw.Draw(canvas)
    for _ in range(amounts["scratches"]):
        sx, sy = x0 + rng.uniform(0, w), y0 + rng.uniform(0, h)
        length = rng.uniform(0.05, 0.4) * w
        angle = rng.uniform(0, np.pi)
        shade = int(rng.integers(170, 235))
        draw.line((sx, sy, sx + length * np.cos(angle), sy + length * np.sin(angle)), fill=(shade,) * 3, width=1)
    if amounts["marker_scribble"]:
        _scribble(canvas, box, rng)
    return amounts


def _scribble(canvas: Image.Image, box: tuple[int, int, int, int], rng: np.random.Generator) -> None:
    """Hand-written numbers in black marker, as field staff write on covers."""
    w, h = box[2] - box[0], box[3] - box[1]
    size = int(w * rng.uniform(0.08, 0.14))
    digits = "".join(str(d) for d in rng.integers(0, 10, size=int(rng.integers(4, 9))))
    layer = Image.new("RGBA", (int(size * len(digits) * 0.7) + 4, size + 8), (0, 0, 0, 0))
    glyphs.text(ImageDraw.Draw(layer), (2, 2), digits, size=size, fill=(20, 20, 30, 230), bold=True)
    layer = layer.rotate(float(rng.uniform(-25, 25)), expand=True, resample=Image.Resampling.BILINEAR)
    x = box[0] + int(rng.uniform(0, max(1, w - layer.width)))
    y = box[1] + int(rng.uniform(0.45, 0.9) * h)
    canvas.paste(layer, (x, y), layer)
