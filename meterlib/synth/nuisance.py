"""Per-photo nuisances of field photos: how they are drawn at random and applied to an image."""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from meterlib.synth import glyphs

OCCLUSIONS = ("none", "hand", "cable", "sticker")
_OCCLUSION_P = (0.88, 0.04, 0.04, 0.04)
_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
_GRAIN_SEED = 20240611
SKIN = [(224, 172, 140), (198, 140, 100), (160, 110, 80), (120, 80, 60)]


def sample(rng: np.random.Generator, *, width: int) -> dict:
    """Draw one photo's nuisance values; pixel sizes scale with ``width`` (720 = field photos)."""
    px = width / 720
    light = rng.choice(["normal", "low", "over"], p=[0.82, 0.11, 0.07])
    exposure = {"normal": rng.normal(0, 0.2), "low": rng.uniform(-1.4, -0.7), "over": rng.uniform(0.5, 1.1)}[light]
    tilt_x, tilt_y = np.clip(rng.normal(0, 5, size=2), -20, 20)
    blurred = rng.random() < 0.25
    moving = rng.random() < 0.12
    values = {
        "rotation_deg": float(np.clip(rng.normal(0, 3), -20, 20)),
        "tilt_x_deg": float(tilt_x),
        "tilt_y_deg": float(tilt_y),
        "perspective_deg": float(math.hypot(tilt_x, tilt_y)),
        "zoom": float(rng.uniform(0.7, 1.05)),  # meter width / photo width: far ... tight crop
        "offset_x": float(rng.normal(0, 0.05)),
        "offset_y": float(rng.normal(0, 0.05)),
        "defocus_sigma": float(rng.uniform(1.0, 3.5) * px if blurred else 0.0),
        "motion_blur_px": float(rng.uniform(2, 10) * px if moving else 0.0),
        "motion_angle_deg": float(rng.choice([0, 90]) if moving else 0),
        "light": str(light),
        "exposure_ev": float(exposure),
        "brightness": float(rng.normal(0, 6)),
        "haze": float(rng.uniform(0, 0.2)),
        "color_cast": float(rng.normal(0, 0.04)),  # + warm (tungsten), - cool (shade)
        "tint": float(rng.normal(0, 0.025)),  # + green, - magenta
        "glare": float(rng.uniform(0.3, 0.9) if rng.random() < 0.2 else 0.0),
        "shadow": float(rng.uniform(0.2, 0.5) if rng.random() < 0.2 else 0.0),
        "vignette": float(rng.uniform(0.1, 0.5) if rng.random() < 0.5 else 0.0),
        "noise_sigma": float(rng.uniform(1, 5) * (2.5 if light == "low" else 1.0)),
        "jpeg_quality": int(rng.integers(40, 96)),
        "occlusion": str(rng.choice(OCCLUSIONS, p=_OCCLUSION_P)),
        "timestamp": bool(rng.random() < 0.85),
    }
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in values.items()}


def degrade(img: Image.Image, nz: dict, rng: np.random.Generator, *, scale: float = 1.0) -> Image.Image:
    """Degrade a clean RGB render as the field phone would: occlusion, blur, exposure, light, noise.

    ``scale`` is the render size relative to the photo: pixel-sized nuisances shrink with it.
    """
    if nz["occlusion"] != "none":
        _occlude(img, nz["occlusion"], rng)
    img = _blur(img, nz, scale=scale)
    img = img.point(_tone_lut(nz))
    img = _light(img, nz, rng)
    return _noise(img, nz["noise_sigma"], rng)


def _blur(img: Image.Image, nz: dict, *, scale: float) -> Image.Image:
    # A box blur in C is ~3x cheaper than PIL's Gaussian at this size and looks alike on photos.
    r = nz["defocus_sigma"] * scale
    m = nz["motion_blur_px"] * scale / 2
    if r + m == 0:
        return img  # sharp: the final upscale's interpolation is all the softness it gets
    radius = (r, r + m) if nz["motion_angle_deg"] == 90 else (r + m, r)
    return img.filter(ImageFilter.BoxBlur(radius))


def _tone_lut(nz: dict) -> list[int]:
    """One lookup table for exposure, haze, brightness and white balance (a single C pass)."""
    gain = 2.0 ** nz["exposure_ev"]
    warm, tint = nz["color_cast"], nz["tint"]
    channel_gain = (gain * (1 + warm), gain * (1 + tint), gain * (1 - warm))
    x = np.arange(256, dtype=np.float64) / 255
    lut = []
    for g in channel_gain:
        y = x * g
        y = nz["haze"] * 0.55 + (1 - nz["haze"]) * y + nz["brightness"] / 255
        lut.extend(np.clip(np.round(y * 255), 0, 255).astype(int).tolist())
    return lut


def _light(img: Image.Image, nz: dict, rng: np.random.Generator) -> Image.Image:
    """Vignetting, cast shadow and glare, built at 1/8 size and scaled up."""
    w, h = img.size
    sw, sh = max(2, w // 8), max(2, h // 8)
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    u, v = xx / sw - 0.5, yy / sh - 0.5
    if nz["shadow"] > 0 or nz["vignette"] > 0:
        keep = 1.0 - nz["vignette"] * 2 * (u * u + v * v)
        if nz["shadow"] > 0:
            angle = rng.uniform(0, 2 * np.pi)
            edge = (u * np.cos(angle) + v * np.sin(angle) - rng.uniform(-0.2, 0.3)) / 0.06
            keep = keep * (1 - nz["shadow"] / (1 + np.exp(-edge)))
        mult = Image.fromarray(np.clip(keep * 255, 0, 255).astype(np.uint8), "L").resize((w, h),
                                                                                          Image.Resampling.BILINEAR)
        img = ImageChops.multiply(img, Image.merge("RGB", (mult, mult, mult)))
    if nz["glare"] > 0:
        cx, cy = rng.uniform(-0.3, 0.3), rng.uniform(-0.35, 0.25)
        r = rng.uniform(0.05, 0.2)
        spot = np.exp(-((u - cx) ** 2 + ((v - cy) * h / w) ** 2) / (2 * r * r))
        streak = np.exp(-((u - cx) * np.cos(0.6) + (v - cy) * np.sin(0.6)) ** 2 / 0.002) * (np.abs(v - cy) < 0.3)
        glow = np.clip((spot + 0.4 * streak) * nz["glare"] * 255, 0, 255).astype(np.uint8)
        g = Image.fromarray(glow, "L").resize((w, h), Image.Resampling.BILINEAR)
        img = ImageChops.screen(img, Image.merge("RGB", (g, g, g)))
    return img


@functools.lru_cache(maxsize=4)
def _unit_grain(width: int, height: int) -> Image.Image:
    """Fixed Gaussian grain (sigma 32 around 128) twice the image size; images crop it at random."""
    n = np.random.default_rng(_GRAIN_SEED).standard_normal((2 * height, 2 * width), dtype=np.float32) * 32 + 128
    return Image.fromarray(np.clip(n, 0, 255).astype(np.uint8), "L")


def _noise(img: Image.Image, sigma: float, rng: np.random.Generator) -> Image.Image:
    """Luminance sensor noise (the final upscale gives it the grain size phone denoisers leave)."""
    # Cropping a cached grain field at a random offset is deterministic per image and ~10x
    # cheaper than drawing fresh normals for every pixel.
    w, h = img.size
    x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
    gain = sigma / 32
    grain = _unit_grain(w, h).crop((x, y, x + w, y + h)).point(lambda v: round(128 + (v - 128) * gain))
    return ImageChops.add(img, Image.merge("RGB", (grain, grain, grain)), 1.0, -128)


def _occlude(img: Image.Image, kind: str, rng: np.random.Generator) -> None:
    w, h = img.size
    draw = ImageDraw.Draw(img)
    if kind == "hand":
        # Out-of-focus fingers entering from the bottom or a side.
        q = 4
        mask = Image.new("L", (max(1, w // q), max(1, h // q)), 0)
        md = ImageDraw.Draw(mask)
        mw, mh = mask.size
        side = rng.choice(["bottom", "left", "right"])
        for i in range(int(rng.integers(1, 4))):
            thick = mw * rng.uniform(0.12, 0.2)
            reach = rng.uniform(0.15, 0.35)
            if side == "bottom":
                x = mw * rng.uniform(0.1, 0.9)
                line = [(x, mh + thick), (x + rng.uniform(-0.1, 0.1) * mw, mh * (1 - reach))]
            else:
                y = mh * rng.uniform(0.3, 0.95)
                x_edge = -thick if side == "left" else mw + thick
                x_tip = mw * reach if side == "left" else mw * (1 - reach)
                line = [(x_edge, y), (x_tip, y + rng.uniform(-0.1, 0.1) * mh)]
            md.line(line, fill=255, width=int(thick))
            tip = line[1]
            md.ellipse((tip[0] - thick / 2, tip[1] - thick / 2, tip[0] + thick / 2, tip[1] + thick / 2), fill=255)
        mask = mask.filter(ImageFilter.BoxBlur(max(1, mw // 60))).resize((w, h), Image.Resampling.BILINEAR)
        skin = SKIN[int(rng.integers(len(SKIN)))]
        img.paste(skin, (0, 0, w, h), mask)
    elif kind == "cable":
        colour = (20, 20, 22) if rng.random() < 0.7 else (150, 30, 30)
        x0, x1 = rng.uniform(-0.2, 1.2, size=2) * w
        points = [((1 - t) * x0 + t * x1 + math.sin(t * 3 + x0) * w * 0.1, t * h) for t in np.linspace(0, 1, 16)]
        draw.line(points, fill=colour, width=max(2, int(w * rng.uniform(0.03, 0.07))), joint="curve")
    elif kind == "sticker":
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.7) * h
        sw, sh = rng.uniform(0.2, 0.45) * w, rng.uniform(0.06, 0.15) * h
        a = rng.uniform(-0.4, 0.4)
        corners = [(-sw / 2, -sh / 2), (sw / 2, -sh / 2), (sw / 2, sh / 2), (-sw / 2, sh / 2)]
        paper = (245, 240, 225) if rng.random() < 0.6 else (250, 220, 60)
        draw.polygon([(cx + x * math.cos(a) - y * math.sin(a), cy + x * math.sin(a) + y * math.cos(a))
                      for x, y in corners], fill=paper)
        glyphs.text(draw, (cx - sw * 0.35, cy - sh * 0.2), f"{rng.integers(10**5, 10**6)}", size=sh * 0.35,
                    fill=(200, 30, 30))


def timestamp(img: Image.Image, rng: np.random.Generator) -> None:
    """The field app's burned-in stamp: a dark band with date, time, GPS and a job number."""
    w, h = img.size
    size = max(6, round(h * 0.011))
    top = int(h * rng.uniform(0.86, 0.9))
    band = (0, top, w, top + int(size * 1.6))
    img.paste(img.crop(band).point(lambda v: v * 2 // 5), band[:2])
    stamp = (f"{rng.integers(1, 29):02d}-{_MONTHS[int(rng.integers(12))]}-{rng.integers(2023, 2027)} "
             f"{rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}:{rng.integers(0, 60):02d}, "
             f"{rng.uniform(8, 30):.7f}, {rng.uniform(70, 90):.7f}, {rng.uniform(0.5, 9):.2f}, "
             f"{rng.integers(10**11, 10**12):012d}")
    glyphs.text(ImageDraw.Draw(img), (w * 0.02, top + size * 0.25), stamp, size=size, fill=(240, 150, 40))
