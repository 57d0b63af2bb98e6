"""Draw one meter (case, name plate, LCD, port, LEDs, codes, terminal cover, seal) seen from the front."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from meterlib.synth import glyphs
from meterlib.synth.catalog import LAYOUTS, MeterType

SEAL_COLOURS = [(150, 60, 170), (40, 160, 120), (220, 60, 50), (230, 200, 40), (60, 110, 210)]
LED_RED = (200, 30, 30)
_RATINGS = ["5-30A", "10-60A", "10-40A", "20-100A"]
_CLASSES = ["CL 1.0", "Class 1", "CL-1", "Class 0.5S"]
_PULSES = ["1600 imp/kWh", "3200 imp/kWh", "6400 imp/kWh", "1000 imp/kWh"]


def _mix(a: tuple[int, ...], b: tuple[int, ...], t: float) -> tuple[int, int, int]:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))  # type: ignore[return-value]


def meter_size(mtype: MeterType, *, width: int) -> tuple[int, int, int]:
    """Width, face height and total height (face + terminal cover) of a meter drawn ``width`` px wide."""
    w = max(24, int(width))
    face_h = int(w * mtype.aspect)
    return w, face_h, face_h + int(w * 0.34)


def draw_meter(canvas: Image.Image, mtype: MeterType, rng: np.random.Generator, *,
               origin: tuple[int, int], width: int) -> dict:
    """Draw the meter onto ``canvas`` with its top-left corner at ``origin``; return the random facts drawn."""
    w, face_h, total_h = meter_size(mtype, width=width)
    ox, oy = origin
    draw = ImageDraw.Draw(canvas)
    info: dict = {}
    _terminal_cover(draw, mtype, rng, left=ox, w=w, top=oy + face_h - int(w * 0.04), bottom=oy + total_h)
    _case(draw, mtype, left=ox, top=oy, w=w, h=face_h)
    layout = dict(LAYOUTS[mtype.layout])
    if mtype.port_side == "mirror":
        px, py, pr = layout["port"]
        layout["port"] = (1 - px, py, pr)
        cx0, cy0, cx1, cy1 = layout["lcd"]
        layout["lcd"] = (1 - cx1, cy0, 1 - cx0, cy1)

    def at(fx: float, fy: float) -> tuple[float, float]:
        return ox + fx * w, oy + fy * face_h

    ink, face = mtype.ink, mtype.face
    if mtype.stripe is not None:
        y = at(0, 0.105)[1]
        draw.rectangle((ox + w * 0.05, y, ox + w * 0.95, y + w * 0.04), fill=mtype.stripe)
    bx, by = at(*layout["brand"])
    size, mark = w * 0.09, w * 0.12  # wordmark height; the logo is larger, being a variant cue
    glyphs.logo(draw, mtype.logo, bx, by - (mark - size) / 2, mark, ink=ink, paper=face)
    glyphs.text(draw, (bx + mark * 1.2, by - size * 0.1), mtype.brand, size=size, fill=ink, bold=True)
    glyphs.text(draw, (bx + mark * 1.2, by + size * 1.05), mtype.model, size=w * 0.035, fill=ink)
    info["lcd_reading"] = _lcd(draw, mtype, rng, at(*layout["lcd"][:2]), at(*layout["lcd"][2:]),
                               shift=mtype.lcd_shift * face_h)
    _leds(draw, mtype, rng, *at(*layout["leds"]), w=w)
    _buttons(draw, mtype, *at(*layout["buttons"]), w=w)
    px, py = at(*layout["port"][:2])
    info["port_cap"] = bool(rng.random() < 0.35)
    _optical_port(draw, px, py, layout["port"][2] * w, capped=info["port_cap"])
    _rating_plate(draw, mtype, rng, at(*layout["plate"][:2]), at(*layout["plate"][2:]), w=w)
    _codes(draw, mtype, rng, at(*layout["code"][:2]), at(*layout["code"][2:]))
    sx, sy = at(*layout["serial"])
    info["serial"] = f"{mtype.model[:2]}{rng.integers(10**7, 10**8)}"
    glyphs.text(draw, (sx, sy), f"Sr.No {info['serial']}", size=w * 0.045, fill=ink, bold=True)
    return info


def _case(draw: ImageDraw.ImageDraw, mtype: MeterType, *, left: float, top: float, w: int, h: int) -> None:
    body, face = mtype.body, mtype.face
    edge = glyphs.shade(body, 0.8)
    k = w * 0.015

    def box(x0, y0, x1, y1):
        return (left + x0, top + y0, left + x1, top + y1)

    if mtype.shape == "rounded":
        draw.rounded_rectangle(box(0, 0, w - 1, h - 1), radius=w * 0.08, fill=edge)
        draw.rounded_rectangle(box(k, k, w - k, h - k), radius=w * 0.08, fill=body)
    elif mtype.shape == "chamfer":
        c = w * 0.09
        for d, colour in ((0, edge), (k, body)):
            draw.polygon([(left + x, top + y) for x, y in
                          [(c + d, d), (w - c - d, d), (w - d, c + d), (w - d, h - d), (d, h - d), (d, c + d)]],
                         fill=colour)
    else:  # arched top
        arch = w * 0.16
        for d, colour in ((0, edge), (k, body)):
            draw.ellipse(box(d, d, w - 1 - d, arch * 2), fill=colour)
            draw.rectangle(box(d, arch, w - 1 - d, h - 1 - d), fill=colour)
    # A moulded case catches more light at the top: a few darker bands towards the bottom.
    for i in range(1, 4):
        y = h * (0.55 + 0.13 * i)
        draw.rectangle(box(k, y, w - k, h - k), fill=glyphs.shade(body, 1 - 0.03 * i))
    inset = w * 0.045
    face_top = inset + (w * 0.08 if mtype.shape == "arched" else 0)
    if face != body:
        draw.rounded_rectangle(box(inset, face_top, w - inset, h - inset), radius=w * 0.03, fill=face,
                               outline=glyphs.shade(face, 0.85), width=max(1, w // 200))
    screw_y = w * (0.12 if mtype.shape == "arched" else 0.03)
    rr = w * 0.012
    for cx, cy in ((0.035 * w, screw_y), (0.965 * w, screw_y), (0.035 * w, h - w * 0.03), (0.965 * w, h - w * 0.03)):
        draw.ellipse(box(cx - rr, cy - rr, cx + rr, cy + rr), fill=glyphs.shade(body, 0.6))


def _lcd(draw: ImageDraw.ImageDraw, mtype: MeterType, rng: np.random.Generator,
         top_left: tuple[float, float], bottom_right: tuple[float, float], *, shift: float) -> str:
    x0, y0 = top_left
    x1, y1 = bottom_right
    y0, y1 = y0 + shift, y1 + shift
    pad = (x1 - x0) * 0.03
    draw.rounded_rectangle((x0 - pad, y0 - pad, x1 + pad, y1 + pad), radius=pad, fill=(40, 42, 44))
    lit = rng.random() < 0.85  # a few displays are caught between refreshes or off
    glass = mtype.lcd if lit else _mix(mtype.lcd, (90, 100, 90), 0.6)
    draw.rectangle((x0, y0, x1, y1), fill=glyphs.shade(glass, 0.88))
    # A brighter core imitates the uneven backlight of the field photos.
    for i in range(1, 4):
        k = i * 0.06
        draw.rounded_rectangle((x0 + (x1 - x0) * k, y0 + (y1 - y0) * k, x1 - (x1 - x0) * k, y1 - (y1 - y0) * k),
                               radius=(y1 - y0) * 0.2, fill=glyphs.shade(glass, 0.88 + 0.05 * i))
    n = mtype.digits
    value = int(rng.integers(0, 10 ** int(rng.integers(2, n + 1))))
    text = str(value).rjust(n, "0" if rng.random() < 0.5 else " ")
    if rng.random() < 0.4:
        text = text[:-1] + "." + text[-1]
    on = _mix(glass, (15, 25, 15), 0.85)
    ghost = glyphs.shade(glass, 0.95)
    digit_box = (x0 + (x1 - x0) * 0.06, y0 + (y1 - y0) * 0.22, x0 + (x1 - x0) * 0.80, y1 - (y1 - y0) * 0.16)
    glyphs.seven_segment(draw, text, digit_box, on=on, off=ghost)
    glyphs.text(draw, (x0 + (x1 - x0) * 0.83, y1 - (y1 - y0) * 0.42), "kWh", size=(y1 - y0) * 0.2, fill=on)
    for i in range(int(rng.integers(1, 5))):  # status icons along the top edge
        ix = x0 + (x1 - x0) * (0.08 + 0.1 * i)
        s = (y1 - y0) * 0.09
        draw.polygon([(ix, y0 + s * 2.2), (ix + s, y0 + s * 2.2), (ix + s / 2, y0 + s)], fill=on)
    return text.strip()


def _leds(draw: ImageDraw.ImageDraw, mtype: MeterType, rng: np.random.Generator, x: float, y: float, *, w: int) -> None:
    r = w * 0.03
    for i in range(mtype.leds):
        cx = x + i * w * 0.115
        draw.ellipse((cx - r * 1.4, y - r * 1.4, cx + r * 1.4, y + r * 1.4), fill=(60, 60, 62))
        lit = rng.random() < 0.4
        colour = (255, 120, 100) if lit else LED_RED if i == 0 else (150, 40, 30)
        if lit:
            draw.ellipse((cx - r * 2.2, y - r * 2.2, cx + r * 2.2, y + r * 2.2), fill=(250, 170, 150))
        draw.ellipse((cx - r, y - r, cx + r, y + r), fill=colour)


def _buttons(draw: ImageDraw.ImageDraw, mtype: MeterType, x: float, y: float, *, w: int) -> None:
    r = w * 0.06
    for i in range(mtype.buttons):
        cx = x + i * w * 0.17
        draw.ellipse((cx - r, y - r, cx + r, y + r), fill=(35, 36, 40))
        draw.ellipse((cx - r * 0.7, y - r * 0.75, cx + r * 0.5, y + r * 0.4), fill=(70, 72, 78))


def _optical_port(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, *, capped: bool) -> None:
    # Metal ring, black socket, and the two optical windows (or a black cap over it all).
    if capped:
        draw.ellipse((x - r * 1.5, y - r * 1.5, x + r * 1.5, y + r * 1.5), fill=(22, 22, 24))
        draw.ellipse((x - r * 1.1, y - r * 1.2, x + r * 0.6, y + r * 0.2), fill=(45, 45, 48))
        return
    draw.ellipse((x - r * 1.3, y - r * 1.3, x + r * 1.3, y + r * 1.3), fill=(120, 122, 125))
    draw.ellipse((x - r * 1.15, y - r * 1.15, x + r * 1.15, y + r * 1.15), fill=(190, 192, 195))
    draw.ellipse((x - r, y - r, x + r, y + r), fill=(20, 20, 22))
    q = r * 0.22
    draw.ellipse((x - r * 0.45 - q, y - q, x - r * 0.45 + q, y + q), fill=(70, 70, 90))
    draw.ellipse((x + r * 0.45 - q, y - q, x + r * 0.45 + q, y + q), fill=(70, 70, 90))


def _rating_plate(draw: ImageDraw.ImageDraw, mtype: MeterType, rng: np.random.Generator,
                  top_left: tuple[float, float], bottom_right: tuple[float, float], *, w: int) -> None:
    x0, y0 = top_left
    x1, y1 = bottom_right
    lines = [
        f"{_RATINGS[mtype.variant % 4]}  240V  50Hz",
        f"1Ph 2W Static Energy Meter",
        f"{_CLASSES[len(mtype.family) % 4]}   {_PULSES[mtype.variant % 4]}",
        f"Mfd {rng.integers(1, 13):02d}/{rng.integers(15, 26)}   Type {mtype.model}",
        "Property of Regional Power Co.",
    ]
    size = min(w * 0.03, (y1 - y0) / (len(lines) * 1.35))
    for i, line in enumerate(lines):
        glyphs.text(draw, (x0, y0 + i * size * 1.35), line, size=size, fill=mtype.ink)
    # The double-square protection-class symbol printed on most plates.
    s = size * 1.6
    draw.rectangle((x1 - s, y0, x1, y0 + s), outline=mtype.ink, width=max(1, int(size / 8)))
    draw.rectangle((x1 - s * 0.7, y0 + s * 0.3, x1 - s * 0.3, y0 + s * 0.7), outline=mtype.ink,
                   width=max(1, int(size / 8)))


def _codes(draw: ImageDraw.ImageDraw, mtype: MeterType, rng: np.random.Generator,
           top_left: tuple[float, float], bottom_right: tuple[float, float]) -> None:
    x0, y0 = top_left
    x1, y1 = bottom_right
    paper = (245, 245, 240)
    ink = (15, 15, 15)
    if mtype.code in ("barcode", "both"):
        right = x1 if mtype.code == "barcode" else x0 + (x1 - x0) * 0.62
        draw.rectangle((x0, y0, right, y1), fill=paper)
        pad = (y1 - y0) * 0.12
        glyphs.barcode(draw, (x0 + pad, y0 + pad, right - pad, y1 - pad), rng, ink=ink)
    if mtype.code in ("qr", "both"):
        side = min(y1 - y0, x1 - x0) * (1.6 if mtype.code == "qr" else 1.0)
        left = x1 - side if mtype.code == "both" else x0
        glyphs.qr_block(draw, (left, y0, left + side, y0 + side), rng, ink=ink, paper=paper)


def _terminal_cover(draw: ImageDraw.ImageDraw, mtype: MeterType, rng: np.random.Generator, *,
                    left: float, w: int, top: float, bottom: float) -> None:
    colour = mtype.terminal
    draw.rounded_rectangle((left + w * 0.04, top, left + w * 0.96, bottom - 1), radius=w * 0.04, fill=colour)
    h = bottom - top
    for i in range(6):  # terminal screws seen through the cover
        cx = left + w * (0.14 + i * 0.144)
        cy = top + h * 0.38
        r = w * 0.028
        draw.rectangle((cx - r * 1.3, cy - r * 1.3, cx + r * 1.3, cy + r * 1.3), fill=glyphs.shade(colour, 0.7))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(196, 160, 80))
        draw.line((cx - r * 0.7, cy, cx + r * 0.7, cy), fill=(110, 85, 40), width=max(1, int(r / 3)))
    # Sealing screw with a plastic seal hanging on its wire.
    sx, sy = left + w * (0.3 + 0.4 * rng.random()), top + h * 0.72
    seal = SEAL_COLOURS[int(rng.integers(len(SEAL_COLOURS)))]
    draw.ellipse((sx - w * 0.02, sy - w * 0.02, sx + w * 0.02, sy + w * 0.02), fill=(90, 90, 92))
    hang = (sx + w * (rng.random() - 0.5) * 0.1, sy + h * 0.22)
    draw.line((sx, sy, *hang), fill=(150, 150, 150), width=max(1, w // 250))
    s = w * 0.045
    draw.polygon([(hang[0] - s, hang[1]), (hang[0] + s, hang[1] - s * 0.3), (hang[0] + s * 1.1, hang[1] + s),
                  (hang[0] - s * 0.9, hang[1] + s * 1.1)], fill=seal)
