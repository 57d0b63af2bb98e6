"""What discovery leaves for a person to review: members.csv, new_types.csv, noise.csv and contact sheets.

Every file is written atomically and only where ``output_path.check`` allows: a file meterlib
did not write is replaced only with ``overwrite``, and so is a new_types.csv whose names a person
has begun to fill in. Contact sheets of an earlier run that this one no longer has are removed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw, PngImagePlugin

from meterlib.data import photos
from meterlib.data.adding import MEMBERS_NAME, NOISE
from meterlib.data.listing import shown_name
from meterlib.discover.clustering import Clusters
from meterlib.errors import DataError
from meterlib.run import atomic, output_path

NEW_TYPES_NAME, NOISE_NAME = "new_types.csv", "noise.csv"
MEMBERS_COLUMNS = ("cluster", "file", "status", "known_type", "nearest_type", "similarity")  # noise.csv's too
NEW_TYPES_COLUMNS = ("cluster", "photos", "nearest_type", "nearest_similarity", "contact_sheet", "name")
SHEET_PATTERN = "contact_sheet_{}.png"
SOFTWARE = "meterlib discover"  # the PNG text that marks a contact sheet as ours
THUMB, COLUMNS, MAX_SHOWN, CAPTION = 128, 8, 64, 14  # pixels; thumbnails a row; photos shown; caption pixels


def _header(columns: Sequence[str]) -> bytes:
    return (",".join(columns) + "\n").encode()


def _unnamed_new_types(path: Path) -> bool:
    """Whether ``path`` is a new_types.csv of ours with no name filled in (so replacing it loses nobody's work)."""
    if not output_path.starts_with(_header(NEW_TYPES_COLUMNS))(path):
        return False
    try:
        names = pd.read_csv(path, dtype=str, keep_default_na=False)["name"]
    except (OSError, ValueError, KeyError):
        return False
    return bool((names.str.strip() == "").all())


def _is_our_sheet(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            return image.format == "PNG" and image.text.get("Software") == SOFTWARE
    except (OSError, ValueError, SyntaxError):  # not an image, or a broken one
        return False


def check(out: str | os.PathLike, *, inputs: Sequence[str | os.PathLike] = (), overwrite: bool = False,
          sheets: Sequence[str] = ()) -> Path:
    """The folder ``out`` (made when written), or OutputError when a file in it may not be replaced.

    Checked: the CSVs, the ``sheets`` named and every contact sheet already there (any may be
    replaced or removed); ``inputs`` are never replaced.
    """
    out = Path(out)
    existing = sorted(path.name for path in out.glob(SHEET_PATTERN.format("*"))) if out.is_dir() else []
    ours = {MEMBERS_NAME: output_path.starts_with(_header(MEMBERS_COLUMNS)),
            NOISE_NAME: output_path.starts_with(_header(MEMBERS_COLUMNS)),
            NEW_TYPES_NAME: _unnamed_new_types,
            **{name: _is_our_sheet for name in [*existing, *sheets]}}
    for name, test in ours.items():
        output_path.check(out / name, inputs=inputs, ours=test, overwrite=overwrite)
    return out


def members_table(found: Clusters, files: Sequence[Path], class_names: Sequence[str]) -> pd.DataFrame:
    """members.csv: one row per photo, in input order."""
    return pd.DataFrame({"cluster": found.cluster, "file": [str(file) for file in files], "status": found.status,
                         "known_type": [class_names[i] if i >= 0 else "" for i in found.known_type],
                         "nearest_type": [class_names[i] for i in found.nearest_type],
                         "similarity": found.similarity.round(3)}, columns=list(MEMBERS_COLUMNS))


def new_types_table(found: Clusters, class_names: Sequence[str]) -> pd.DataFrame:
    """new_types.csv: one row per new cluster, its name left for a person to fill in."""
    rows = [{"cluster": kind.cluster, "photos": len(kind.members),
             "nearest_type": class_names[kind.nearest[0][0]] if kind.nearest else "",
             "nearest_similarity": round(kind.nearest[0][1], 3) if kind.nearest else "",
             "contact_sheet": SHEET_PATTERN.format(kind.cluster), "name": ""} for kind in found.new_types]
    return pd.DataFrame(rows, columns=list(NEW_TYPES_COLUMNS))


def contact_sheet(files: Sequence[Path], *, title: str) -> Image.Image:
    """The photos as thumbnails in a grid under ``title``, the first captioned as the medoid, the rest by file name."""
    shown = list(files[:MAX_SHOWN])
    if len(files) > len(shown):
        title += f" (the first {len(shown)} shown)"
    columns = min(COLUMNS, len(shown))
    sheet = Image.new("RGB", (max(columns * THUMB, 6 * len(title) + 8), CAPTION + 4 +
                              math.ceil(len(shown) / COLUMNS) * (THUMB + CAPTION)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 2), _drawable(title), fill="black")
    for place, file in enumerate(shown):
        x, y = place % COLUMNS * THUMB, CAPTION + 4 + place // COLUMNS * (THUMB + CAPTION)
        try:
            thumb = photos.load_thumbnail(file, max_side=THUMB - 4)
            sheet.paste(thumb, (x + (THUMB - thumb.width) // 2, y + (THUMB - thumb.height) // 2))
        except DataError:  # gone or changed since its features were read: its place says so
            draw.rectangle((x + 2, y + 2, x + THUMB - 3, y + THUMB - 3), outline="grey")
        caption = "medoid" if place == 0 else file.name
        draw.text((x + 2, y + THUMB), _drawable(caption)[: THUMB // 6], fill="black")
    return sheet


def _drawable(text: str) -> str:
    """``text`` in the characters Pillow's built-in font draws (others as escapes)."""
    return shown_name(text).encode("ascii", "backslashreplace").decode("ascii")


def write(out: str | os.PathLike, found: Clusters, files: Sequence[Path], class_names: Sequence[str], *,
          inputs: Sequence[str | os.PathLike] = (), overwrite: bool = False) -> list[Path]:
    """Write the review files of ``found`` (the clusters of ``files``) into ``out``; the files written, CSVs last."""
    sheets = {kind.cluster: SHEET_PATTERN.format(kind.cluster) for kind in found.new_types}
    out = check(out, inputs=[*inputs, *files], overwrite=overwrite, sheets=list(sheets.values()))
    stale = [path for path in out.glob(SHEET_PATTERN.format("*")) if path.name not in sheets.values()]
    written = []
    marker = PngImagePlugin.PngInfo()
    marker.add_text("Software", SOFTWARE)
    for kind in found.new_types:
        title = f"cluster {kind.cluster}: {len(kind.members)} photos, nearest known types " + \
                ", ".join(f"{class_names[label]} {similarity:.2f}" for label, similarity in kind.nearest)
        picture = contact_sheet([files[i] for i in kind.members], title=title)
        with atomic.atomic_path(out / sheets[kind.cluster]) as tmp:
            picture.save(tmp, format="PNG", pnginfo=marker)
        written.append(out / sheets[kind.cluster])
    for path in stale:
        if _is_our_sheet(path):
            path.unlink()
    members = members_table(found, files, class_names)
    written.append(atomic.write_csv(out / NOISE_NAME, members[members["cluster"] == NOISE]))
    written.append(atomic.write_csv(out / MEMBERS_NAME, members))
    # Last: add-types reads it with the members.csv beside it, so both are new once it is.
    written.append(atomic.write_csv(out / NEW_TYPES_NAME, new_types_table(found, class_names)))
    return written
