"""The 38 invented meter types: brand families, their look, and the subtle cues between variants."""

from __future__ import annotations

from dataclasses import dataclass

from meterlib.errors import SettingsError

# Backlight colours of the LCD (digits are dark segments on the lit glass).
LCD_GREEN = (150, 238, 110)
LCD_LIME = (212, 236, 70)
LCD_GREY = (186, 196, 182)
LCD_BLUE = (115, 185, 250)

# Case colours named in the field: white, grey, black, blue, beige.
WHITE = (236, 236, 230)
CREAM = (238, 232, 214)
GREY = (158, 162, 165)
DARK_GREY = (96, 100, 104)
BLACK = (46, 47, 50)
BLUE = (38, 92, 170)
NAVY = (20, 38, 80)
BEIGE = (218, 203, 168)

# Where things sit on the meter face, as fractions of its width (x) and height (y).
# lcd/plate/code are boxes (x0, y0, x1, y1); port is (x, y, radius); others are anchors.
LAYOUTS = {
    "classic": dict(brand=(0.09, 0.05), lcd=(0.09, 0.13, 0.74, 0.29), port=(0.80, 0.44, 0.11),
                    leds=(0.52, 0.35), buttons=(0.16, 0.37), plate=(0.08, 0.50, 0.62, 0.74),
                    code=(0.08, 0.78, 0.62, 0.86), serial=(0.08, 0.89)),
    "centred": dict(brand=(0.30, 0.05), lcd=(0.14, 0.15, 0.86, 0.31), port=(0.50, 0.72, 0.12),
                    leds=(0.68, 0.38), buttons=(0.22, 0.40), plate=(0.08, 0.46, 0.92, 0.58),
                    code=(0.66, 0.84, 0.92, 0.95), serial=(0.08, 0.90)),
    "port_left": dict(brand=(0.40, 0.05), lcd=(0.30, 0.14, 0.92, 0.30), port=(0.16, 0.24, 0.10),
                      leds=(0.62, 0.36), buttons=(0.80, 0.38), plate=(0.30, 0.46, 0.92, 0.70),
                      code=(0.06, 0.48, 0.26, 0.62), serial=(0.30, 0.76)),
    "tall": dict(brand=(0.10, 0.04), lcd=(0.10, 0.10, 0.90, 0.22), port=(0.76, 0.36, 0.10),
                 leds=(0.12, 0.30), buttons=(0.40, 0.32), plate=(0.08, 0.44, 0.60, 0.66),
                 code=(0.08, 0.70, 0.90, 0.78), serial=(0.08, 0.82)),
    "low_lcd": dict(brand=(0.08, 0.06), lcd=(0.12, 0.30, 0.82, 0.46), port=(0.78, 0.70, 0.11),
                    leds=(0.56, 0.14), buttons=(0.14, 0.52), plate=(0.08, 0.58, 0.60, 0.80),
                    code=(0.08, 0.84, 0.60, 0.92), serial=(0.62, 0.90)),
}


@dataclass(frozen=True)
class MeterType:
    """Everything that distinguishes one class from the others, and nothing random."""

    class_name: str
    family: str
    variant: int
    cue: str
    brand: str
    model: str
    layout: str
    shape: str  # "rounded", "chamfer" or "arched"
    aspect: float  # face height / width
    body: tuple[int, int, int]
    face: tuple[int, int, int]  # the printed name plate inside the case
    ink: tuple[int, int, int]  # printed text colour
    lcd: tuple[int, int, int]
    lcd_shift: float  # LCD moved down by this fraction of the face height
    digits: int
    logo: str  # "circle", "triangle", "diamond", "bars", "ring", "square", "wave"
    buttons: int
    leds: int
    code: str  # "barcode", "qr" or "both"
    stripe: tuple[int, int, int] | None
    terminal: tuple[int, int, int]  # terminal cover colour
    port_side: str  # "layout" keeps the layout's port, "mirror" mirrors it horizontally


# name, brand wordmark, model prefix, base look; then the variants' differences and cue text.
_FAMILIES: list[tuple[str, str, str, dict, list[tuple[dict, str]]]] = [
    ("AMPEXA", "Ampexa", "AX", dict(layout="classic", shape="rounded", body=WHITE, face=WHITE, lcd=LCD_GREEN,
                                   logo="circle"), [
        ({}, "reference look"),
        ({"buttons": 2}, "second push button"),
        ({"lcd": LCD_BLUE}, "blue backlight"),
    ]),
    ("BREVOLT", "BREVOLT", "BV", dict(layout="centred", shape="chamfer", body=GREY, face=(214, 218, 220),
                                     lcd=LCD_GREEN, logo="triangle"), [
        ({}, "reference look"),
        ({"lcd_shift": 0.07}, "LCD sits lower"),
        ({"logo": "diamond"}, "diamond logo"),
    ]),
    ("CELTRIX", "celtrix", "CT", dict(layout="classic", shape="rounded", body=BLUE, face=BLUE, ink=(240, 244, 250),
                                     lcd=LCD_GREEN, logo="wave"), [
        ({}, "reference look"),
        ({"face": NAVY, "body": NAVY}, "darker blue case"),
        ({"stripe": (230, 190, 40)}, "yellow stripe"),
    ]),
    ("DYNAMHO", "DYNAMHO", "DM", dict(layout="port_left", shape="arched", body=BLACK, face=(62, 64, 68),
                                     ink=(230, 230, 230), lcd=LCD_GREY, logo="bars"), [
        ({}, "reference look"),
        ({"lcd": LCD_GREEN}, "green backlight"),
    ]),
    ("ELVORA", "Elvora", "EV", dict(layout="tall", shape="rounded", body=BEIGE, face=CREAM, lcd=LCD_LIME,
                                   logo="ring"), [
        ({}, "reference look"),
        ({"leds": 1, "buttons": 0}, "single pulse LED, no push button"),
        ({"code": "qr"}, "QR block instead of barcode"),
    ]),
    ("FLUXON", "FLUXON", "FX", dict(layout="low_lcd", shape="chamfer", body=WHITE, face=(228, 232, 236),
                                   lcd=LCD_BLUE, logo="square", stripe=(200, 40, 40)), [
        ({}, "reference look"),
        ({"stripe": (40, 110, 200)}, "blue stripe"),
    ]),
    ("GRIDANO", "Gridano", "GD", dict(layout="classic", shape="arched", body=GREY, face=WHITE, lcd=LCD_GREEN,
                                     logo="diamond"), [
        ({}, "reference look"),
        ({"port_side": "mirror"}, "port on the left"),
        ({"digits": 8}, "eight-digit LCD"),
        ({"body": DARK_GREY}, "dark grey case"),
    ]),
    ("HELVION", "HELVION", "HV", dict(layout="centred", shape="rounded", body=CREAM, face=CREAM, lcd=LCD_GREY,
                                     logo="circle"), [
        ({}, "reference look"),
        ({"lcd": LCD_LIME}, "lime backlight"),
    ]),
    ("IONTRA", "iontra", "IO", dict(layout="tall", shape="chamfer", body=BLUE, face=(70, 130, 200),
                                   ink=(245, 245, 250), lcd=LCD_GREEN, logo="bars"), [
        ({}, "reference look"),
        ({"buttons": 0}, "no push button"),
        ({"code": "both"}, "barcode and QR block"),
    ]),
    ("JOULEX", "JOULEX", "JX", dict(layout="port_left", shape="rounded", body=WHITE, face=WHITE, lcd=LCD_GREEN,
                                   logo="triangle"), [
        ({}, "reference look"),
        ({"lcd_shift": 0.06}, "LCD sits lower"),
    ]),
    ("KORVANT", "Korvant", "KV", dict(layout="low_lcd", shape="chamfer", body=GREY, face=(226, 226, 220),
                                     lcd=LCD_GREEN, logo="ring"), [
        ({}, "reference look"),
        ({"logo": "square"}, "square logo"),
        ({"lcd": LCD_LIME}, "lime backlight"),
        ({"buttons": 2}, "second push button"),
        ({"leds": 3}, "three LEDs"),
    ]),
    ("LUMENTA", "LUMENTA", "LM", dict(layout="low_lcd", shape="rounded", body=BLACK, face=BLACK,
                                     ink=(225, 225, 225), lcd=LCD_BLUE, logo="wave"), [
        ({}, "reference look"),
        ({"lcd": LCD_GREEN}, "green backlight"),
    ]),
    ("MERIDAX", "Meridax", "MX", dict(layout="centred", shape="arched", body=BEIGE, face=(230, 220, 190),
                                     lcd=LCD_GREEN, logo="square"), [
        ({}, "reference look"),
        ({"body": WHITE, "face": WHITE}, "white case"),
    ]),
    ("NOVAREL", "NOVAREL", "NR", dict(layout="tall", shape="rounded", body=DARK_GREY, face=GREY, lcd=LCD_GREEN,
                                     logo="circle", stripe=(40, 150, 80)), [
        ({}, "reference look"),
        ({"port_side": "mirror"}, "port on the left"),
    ]),
]

_DEFAULTS = dict(ink=(30, 32, 36), lcd_shift=0.0, digits=6, buttons=1, leds=2, code="barcode", stripe=None,
                 port_side="layout")
_ASPECT = {"classic": 1.45, "centred": 1.35, "port_left": 1.25, "tall": 1.6, "low_lcd": 1.4}


# Terminal covers are a large area: one colour per family (cycled) makes brands easier to tell apart.
_TERMINALS = [(172, 176, 180), (58, 60, 64), (204, 198, 178), (118, 128, 150), (214, 216, 218), (150, 120, 90)]


def _build_catalog() -> tuple[MeterType, ...]:
    types = []
    for number, (family, brand, prefix, base, variants) in enumerate(_FAMILIES):
        for v, (delta, cue) in enumerate(variants, start=1):
            look = {**_DEFAULTS, "terminal": _TERMINALS[number % len(_TERMINALS)], **base, **delta}
            types.append(MeterType(
                class_name=f"{family}{v}", family=family, variant=v, cue=cue, brand=brand,
                model=f"{prefix}-{100 + 7 * number + v}{'S' if v % 2 else 'E'}",
                aspect=_ASPECT[look["layout"]], **look))
    return tuple(types)


CATALOG: tuple[MeterType, ...] = _build_catalog()
BY_NAME: dict[str, MeterType] = {t.class_name: t for t in CATALOG}


def selection_order() -> list[MeterType]:
    """Catalog order for picking the first n classes: every family's first variant, then the seconds, ..."""
    return sorted(CATALOG, key=lambda t: (t.variant, _family_index(t.family)))


def _family_index(family: str) -> int:
    return [f[0] for f in _FAMILIES].index(family)


def class_names(n_classes: int = len(CATALOG)) -> list[str]:
    """Names of the first ``n_classes`` types in selection order (distinct brands come first)."""
    if not 1 <= n_classes <= len(CATALOG):
        raise SettingsError(f"n_classes must be between 1 and {len(CATALOG)} (the catalog size), got {n_classes}")
    return [t.class_name for t in selection_order()[:n_classes]]


def catalog_table():
    """The catalog as a pandas DataFrame (class, family, variant, cue) for reports."""
    import pandas as pd

    return pd.DataFrame([{"class": t.class_name, "family": t.family, "variant": t.variant, "cue": t.cue}
                         for t in selection_order()])
