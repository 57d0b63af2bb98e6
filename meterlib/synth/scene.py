"""The installation around the meter (wall, enclosure box, cables) and the phone camera that photographs it."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from meterlib.synth import glyphs

WALLS = [(196, 186, 166), (150, 140, 120), (120, 150, 110), (170, 175, 180), (90, 84, 76), (205, 200, 190),
         (140, 110, 80)]
CABLES = [(25, 25, 28), (30, 30, 30), (170, 30, 30), (60, 60, 64), (200, 200, 195), (40, 70, 160)]


def camera_matrix(*, width: int, height: int, rotation_deg: float, tilt_x_deg: float, tilt_y_deg: float,
                  centre: tuple[float, float]) -> np.ndarray:
    """Homography from scene to image for a phone looking at ``centre`` of a wall-flat scene.

    The scene is drawn at about image scale, so zoom lives in the scene; the camera adds
    roll, pitch and yaw (perspective) around the optical axis through the image centre.
    """
    f = 0.8 * height  # a phone's main camera in portrait: ~65 degrees vertical field of view
    k = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
    ax, ay, az = (math.radians(a) for a in (tilt_x_deg, tilt_y_deg, rotation_deg))
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    r = rz @ ry @ rx
    # Plane points (X, Y, 0) relative to the look-at point sit at depth f: one scene px ~ one image px.
    plane = np.column_stack([r[:, 0], r[:, 1], [0, 0, f]])
    shift = np.array([[1, 0, -centre[0]], [0, 1, -centre[1]], [0, 0, 1.0]])
    return k @ plane @ shift


def image_to_scene(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map image points (n, 2) back onto the scene plane."""
    inv = np.linalg.inv(h)
    p = np.column_stack([points, np.ones(len(points))]) @ inv.T
    return p[:, :2] / p[:, 2:3]


def warp_to_image(scene: Image.Image, h: np.ndarray, *, size: tuple[int, int]) -> Image.Image:
    """Photograph the scene: resample it through homography ``h`` into an image of ``size``."""
    inv = np.linalg.inv(h)
    inv = inv / inv[2, 2]
    # NEAREST is 4x cheaper than BILINEAR here; the lens blur that always follows hides the steps.
    return scene.transform(size, Image.Transform.PERSPECTIVE, tuple(inv.flatten()[:8]),
                           Image.Resampling.NEAREST, fillcolor=(60, 58, 55))


def wall(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A stained, uneven wall or board behind the meter, as a low-frequency texture."""
    w, h = size
    base = np.array(WALLS[int(rng.integers(len(WALLS)))], dtype=np.float32)
    small = (max(2, w // 40), max(2, h // 40))
    blotch = rng.normal(0.0, 1.0, (small[1], small[0], 1)).astype(np.float32)
    tint = rng.normal(0.0, 0.04, (1, 1, 3)).astype(np.float32)
    light = 1.0 + 0.12 * blotch + tint + np.linspace(0.1, -0.15, small[1], dtype=np.float32)[:, None, None]
    arr = np.clip(base * light, 0, 255).astype(np.uint8)
    # Smooth at quarter size, then blocky up: a smooth full-size upscale costs 7x more and
    # the camera's blur hides the 4 px steps of this low-contrast texture.
    quarter = (max(1, w // 4), max(1, h // 4))
    return Image.fromarray(arr, "RGB").resize(quarter, Image.Resampling.BILINEAR).resize((w, h), Image.Resampling.NEAREST)


def enclosure(draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float], rng: np.random.Generator) -> None:
    """The transparent meter box mounted on the wall: its frame and back plate seen through it."""
    x0, y0, x1, y1 = box
    back = tuple(int(c) for c in rng.integers(150, 215, size=3))
    draw.rounded_rectangle(box, radius=(x1 - x0) * 0.05, fill=back)
    edge = max(2, int((x1 - x0) * 0.025))
    draw.rounded_rectangle(box, radius=(x1 - x0) * 0.05, outline=(235, 238, 240), width=edge)
    draw.rounded_rectangle((x0 + edge, y0 + edge, x1 - edge, y1 - edge), radius=(x1 - x0) * 0.045,
                           outline=(120, 125, 128), width=max(1, edge // 3))


def cables(draw: ImageDraw.ImageDraw, starts: list[tuple[float, float]], rng: np.random.Generator, *,
           width: float, extent: tuple[int, int]) -> None:
    """Wires leaving the terminals and sagging out of the picture."""
    for sx, sy in starts:
        colour = CABLES[int(rng.integers(len(CABLES)))]
        ex = sx + rng.uniform(-0.5, 0.5) * extent[0]
        ey = extent[1] + width
        mx, my = (sx + ex) / 2 + rng.uniform(-0.2, 0.2) * extent[0], (sy + ey) / 2
        points = [_bezier((sx, sy), (mx, my), (ex, ey), t / 12) for t in range(13)]
        lw = int(width * rng.uniform(0.7, 1.3))
        draw.line(points, fill=glyphs.shade(colour, 0.6), width=lw + 2, joint="curve")
        draw.line(points, fill=colour, width=lw, joint="curve")
        draw.line([(x - lw * 0.2, y) for x, y in points], fill=glyphs.shade(colour, 1.6, add=40),
                  width=max(1, lw // 5), joint="curve")


def _bezier(p0, p1, p2, t):
    return ((1 - t) ** 2 * p0[0] + 2 * (1 - t) * t * p1[0] + t * t * p2[0],
            (1 - t) ** 2 * p0[1] + 2 * (1 - t) * t * p1[1] + t * t * p2[1])
