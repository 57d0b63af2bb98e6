"""One synthetic field photo: a meter installed on a wall, photographed by a phone, with nuisances."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from meterlib.synth import cover, nuisance, render, scene
from meterlib.synth.catalog import MeterType

# Scenes are rendered at 60% of the photo size and scaled up at the end: that upscale is the
# softness of a phone photo, and it makes every full-frame step ~3x cheaper.
RENDER_SCALE = 0.6
_MIN_RENDER_HEIGHT = 400
# The scene canvas only needs to cover what the camera sees; cap it so extreme views stay cheap.
_MAX_CANVAS = 2.2


def image_rng(seed: int, class_number: int, index: int) -> np.random.Generator:
    """The random stream of one image, independent of every other image and of worker count."""
    return np.random.default_rng([seed, class_number, index])


def render_photo(mtype: MeterType, rng: np.random.Generator, *, width: int, height: int) -> tuple[Image.Image, dict]:
    """Render one RGB photo of ``mtype``; return it with the values that describe it (for the manifest)."""
    nz = nuisance.sample(rng, width=width)
    scale = RENDER_SCALE if height * RENDER_SCALE >= _MIN_RENDER_HEIGHT else 1.0
    iw, ih = round(width * scale), round(height * scale)
    mw, face_h, mh = render.meter_size(mtype, width=round(nz["zoom"] * iw))
    # The photographer aims near the middle of the face; the offsets move the aim point.
    aim = np.array([mw * (0.5 + nz["offset_x"]), face_h * (0.6 + nz["offset_y"])])
    view = dict(width=iw, height=ih, rotation_deg=nz["rotation_deg"], tilt_x_deg=nz["tilt_x_deg"],
                tilt_y_deg=nz["tilt_y_deg"])
    corners = np.array([[0, 0], [iw, 0], [iw, ih], [0, ih]], dtype=float)
    seen = scene.image_to_scene(scene.camera_matrix(**view, centre=(0.0, 0.0)), corners)
    lo = np.maximum(seen.min(axis=0), -_MAX_CANVAS * np.array([iw, ih]))
    hi = np.minimum(seen.max(axis=0), _MAX_CANVAS * np.array([iw, ih]))
    canvas_size = (int(hi[0] - lo[0]) + 2, int(hi[1] - lo[1]) + 2)
    origin = -lo  # canvas position of the aim point
    mx, my = int(origin[0] - aim[0]), int(origin[1] - aim[1])
    canvas = scene.wall(canvas_size, rng)
    draw = ImageDraw.Draw(canvas)
    margin = int(mw * rng.uniform(0.06, 0.25))
    box = (mx - margin, my - margin, mx + mw + margin, my + mh + int(margin * 2.5))
    scene.enclosure(draw, box, rng)
    shadow = max(1, mw // 40)
    draw.rounded_rectangle((mx + shadow, my + shadow, mx + mw + shadow, my + mh + shadow), radius=mw * 0.06,
                           fill=(45, 45, 45))
    facts = render.draw_meter(canvas, mtype, rng, origin=(mx, my), width=mw)
    n_wires = int(rng.integers(2, 6))
    starts = [(mx + mw * (0.14 + 0.144 * int(i)), my + mh - mw * 0.02)
              for i in sorted(rng.choice(6, size=n_wires, replace=False))]
    scene.cables(draw, starts, rng, width=mw * 0.035, extent=canvas_size)
    wear = cover.weather(canvas, box, rng)
    photo = scene.warp_to_image(canvas, scene.camera_matrix(**view, centre=tuple(origin)), size=(iw, ih))
    photo = nuisance.degrade(photo, nz, rng, scale=scale)
    if photo.size != (width, height):
        photo = photo.resize((width, height), Image.Resampling.BILINEAR)
    if nz["timestamp"]:
        nuisance.timestamp(photo, rng)
    return photo, {**nz, **wear, **facts}
