"""Turn uploaded photos into the panel's answers: prediction, heat-map, nearest training photos.

Plain functions without widgets, so they are tested without a browser; ``view`` draws their results.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from meterlib.confidence import selective
from meterlib.data import photos
from meterlib.data.listing import shown_name
from meterlib.errors import MeterlibError
from meterlib.model import gallery
from meterlib.serve import Prediction, Predictor, explain as saliency
from meterlib.serve.predictor import POOR_PHOTO, UNSEEN_TYPE, UNSURE

PREVIEW_SIDE = 320  # pixels: what the panel shows of a photo and of its heat-map
COMPARED = 2  # nearest training photos are shown for the predicted type and the runner-up
# Why an UNKNOWN names no type (Prediction.reason), in the words a field crew reads before the detail.
REASON_WORDS = {POOR_PHOTO: "retake the photo",
                UNSEEN_TYPE: "this looks like a meter type the model has never seen",
                UNSURE: "the model is unsure"}


@dataclass(frozen=True)
class PanelAnswer:
    """What the panel shows for one photo; ``error`` is set (and nothing else) when it could not be read."""

    name: str
    threshold: float  # the UNKNOWN threshold the answer was given with
    n_classes: int  # how many types the model knows
    prediction: Prediction | None = None
    error: str | None = None
    preview: Image.Image | None = None
    heatmap: Image.Image | None = None  # the heat-map laid over the preview
    neighbours: dict[str, list] = field(default_factory=dict)  # class -> nearest gallery.Neighbour
    neighbours_note: str = ""  # why no comparison photos are shown

    @property
    def ok(self) -> bool:
        return self.error is None


def answer_uploads(predictor: Predictor, uploads: Iterable[Any], *, explain: bool = True, neighbours: int = 3,
                   top_k: int = 3) -> list[PanelAnswer]:
    """Answers for a FileUpload's ``value`` (dicts with name and content) or photo paths, in order.

    A photo that cannot be read gets an answer with its error; the others are answered.
    """
    named = named_sources(uploads)
    outcomes = predictor.predict_each([source for _, source in named], names=[name for name, _ in named],
                                      top_k=top_k)
    return [_answer(predictor, name, source, outcome, explain=explain, neighbours=neighbours)
            for (name, source), outcome in zip(named, outcomes)]


def named_sources(uploads: Iterable[Any]) -> list[tuple[str, Any]]:
    """(name, photo source) pairs: an upload entry gives its name and content, a path its file name."""
    pairs = []
    for index, item in enumerate(uploads, start=1):
        if isinstance(item, Mapping):
            pairs.append((str(item.get("name") or f"upload {index}"), item.get("content")))
        elif isinstance(item, (str, os.PathLike)):
            pairs.append((Path(item).name, item))
        else:
            pairs.append((f"photo {index}", item))
    return pairs


def _answer(predictor: Predictor, name: str, source: Any, outcome, *, explain: bool,
            neighbours: int) -> PanelAnswer:
    known = {"threshold": float(predictor.calibration.unknown_threshold), "n_classes": len(predictor.class_names)}
    if not outcome.ok:
        return PanelAnswer(name=name, error=outcome.error, **known)
    prediction = outcome.prediction
    photo = photos.load_rgb(source)
    preview = photo.copy()
    preview.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    overlay = None
    if explain:
        # The heat-map explains the top class, also when the answer is UNKNOWN (it is the best guess).
        top = predictor.class_names.index(prediction.top_classes[0])
        heat = saliency.heatmap(predictor, photo, class_index=top)
        overlay = saliency.overlay(preview, heat)
    found, note = nearest_photos(predictor, photo, prediction.top_classes[:COMPARED], k=neighbours)
    return PanelAnswer(name=name, prediction=prediction, preview=preview, heatmap=overlay,
                       neighbours=found, neighbours_note=note, **known)


def nearest_photos(predictor: Predictor, photo: Image.Image, classes: Sequence[str], *,
                   k: int) -> tuple[dict[str, list], str]:
    """The ``k`` most similar training photos of each class, or none and the reason."""
    if k <= 0:
        return {}, ""
    try:
        return gallery.nearest(predictor, photo, list(classes), k=k), ""
    except MeterlibError as exc:  # e.g. a checkpoint saved without its gallery of training photos
        return {}, f"no comparison photos: {exc}"


def reason_text(prediction: Prediction) -> str:
    """Why an UNKNOWN names no type, in plain words and then its detail (raw text: escape it to show it)."""
    return f"{REASON_WORDS[prediction.reason]}: {prediction.detail}"


def summary_line(answer: PanelAnswer) -> str:
    """One line per answer for a text log: file, answer (an UNKNOWN with its reason), confidence, top classes.

    The confidence is compared with the threshold only when it is below it.
    """
    name = shown_name(answer.name)
    if not answer.ok:
        return f"{name}: cannot be answered: {shown_name(answer.error)}"
    p = answer.prediction
    if p.unknown:
        confidence = f"{p.confidence:.2f}"
        if selective.is_unknown(p.confidence, answer.threshold):
            pair = selective.told_apart(p.confidence, answer.threshold, digits=2)
            confidence = f"{pair[0]} < {pair[1]}" if pair else f"just below {answer.threshold:.2f}"
        verdict = (f"UNKNOWN, {p.reason}: {shown_name(p.detail)} "
                   f"(best guess {shown_name(p.top_classes[0])}, confidence {confidence})")
    else:
        verdict = f"{shown_name(p.label)} (confidence {p.confidence:.2f})"
    top = ", ".join(f"{shown_name(cls)} {prob:.2f}" for cls, prob in zip(p.top_classes, p.top_probabilities))
    return f"{name}: {verdict}; top-{len(p.top_classes)}: {top}"


def pick_photos(manifest: pd.DataFrame, count: int, *, split: str = "test") -> list[str]:
    """``count`` photos of a split (test by default) from a splits.csv manifest, deterministically.

    The first photo of each class comes first (classes in manifest order), then the rest in order.
    """
    rows = manifest[manifest["split"] == split]
    first = ~rows["class"].duplicated()
    ordered = pd.concat([rows[first], rows[~first]])
    return ordered["path"].head(max(count, 0)).tolist()
