"""Draw the panel's answers as ipywidgets, with stable CSS classes that a browser test can find.

Classes: meterlib-answer (one photo), meterlib-name, meterlib-photo, meterlib-heatmap,
meterlib-label, meterlib-confidence, meterlib-unknown (the warning banner), meterlib-top
(the bar chart), meterlib-set, meterlib-neighbours, meterlib-error.
"""

from __future__ import annotations

import html
import io
from collections.abc import Iterable
from pathlib import PurePosixPath

import ipywidgets as widgets
from PIL import Image

from meterlib.confidence import selective
from meterlib.data.listing import shown_name
from meterlib.panel.answers import PanelAnswer, reason_text
from meterlib.serve.predictor import POOR_PHOTO, UNSEEN_TYPE, UNSURE

RED, BLUE, GREY = "#b3261e", "#1f5fa8", "#5f6368"
THUMB_SIDE = 96  # pixels: a nearest training photo
ROLES = ("predicted type", "runner-up")


def render(answer: PanelAnswer) -> widgets.Widget:
    """One answer as a widget: photo, heat-map, answer with its confidence and top classes, comparison photos."""
    if not answer.ok:
        return error_line(answer.name, answer.error)
    parts = [_html(f"<b>{_escaped(answer.name)}</b>", "meterlib-name")]
    if answer.prediction.unknown:
        parts.append(unknown_banner(answer))
    columns = [_captioned(answer.preview, "the photo", "meterlib-photo")]
    if answer.heatmap is not None:
        columns.append(_captioned(answer.heatmap, "what drove the answer (red: most)", "meterlib-heatmap"))
    columns += [_verdict(answer), _comparison(answer)]
    parts.append(widgets.HBox(columns, layout=widgets.Layout(flex_flow="row wrap", align_items="flex-start")))
    box = widgets.VBox(parts, layout=widgets.Layout(border=f"1px solid {GREY}", padding="6px", margin="6px 0"))
    box.add_class("meterlib-answer")
    return box


def render_all(answers: Iterable[PanelAnswer]) -> list[widgets.Widget]:
    """The widgets of several answers, in order."""
    return [render(answer) for answer in answers]


def error_line(name: str, problem: str | None) -> widgets.HTML:
    """A red line naming the photo that could not be answered and why."""
    text = f"&#10007; <b>{_escaped(name)}</b>: {_escaped(problem or 'unknown problem')}"
    return _html(f'<div style="color:{RED}">{text}</div>', "meterlib-error")


def unknown_banner(answer: PanelAnswer) -> widgets.HTML:
    """The warning shown when the model names no type: its reason in plain words, the detail, what to do."""
    p = answer.prediction
    guess = _escaped(p.top_classes[0])
    advice = {POOR_PHOTO: f"The best guess is {guess}, but a photo this poor cannot be judged.",
              UNSEEN_TYPE: f"The closest known type is {guess}: compare with the training photos; "
                           "if it is a new type, report it so that the model can learn it.",
              UNSURE: f"The best guess is {guess}: compare with the training photos or take another photo."}
    text = f"UNKNOWN: {_escaped(reason_text(p))}."
    if p.reason == UNSURE:
        pair = selective.told_apart(p.confidence, answer.threshold, digits=1, percent=True)
        text += (f" The confidence {pair[0]} is below the threshold {pair[1]}." if pair
                 else f" The confidence is just below the threshold {answer.threshold:.1%}.")
    return _html(f'<div style="background:{RED};color:white;padding:6px 10px;border-radius:4px;'
                 f'font-weight:bold">{text} {advice[p.reason]}</div>', "meterlib-unknown")


def notice(text: str, *, colour: str = GREY) -> str:
    """A one-line notice as HTML (status, missing model); ``text`` is plain text."""
    return f'<div style="color:{colour}">{_escaped(text)}</div>'


def message(text: str, *, colour: str = GREY) -> widgets.HTML:
    """A one-line notice as a widget."""
    return _html(notice(text, colour=colour), "meterlib-message")


def bars_html(classes: list[str], probabilities: list[float]) -> str:
    """A horizontal bar chart of the top classes and their calibrated probabilities, as HTML."""
    rows = "".join(
        f'<tr><td style="padding-right:6px">{_escaped(name)}</td>'
        f'<td style="width:140px"><div style="background:{BLUE if i == 0 else GREY};height:12px;'
        f'width:{max(prob, 0.0) * 100:.1f}%"></div></td>'
        f'<td style="padding-left:6px;text-align:right">{prob:.0%}</td></tr>'
        for i, (name, prob) in enumerate(zip(classes, probabilities)))
    return f"<table>{rows}</table>"


def set_text(prediction_set: list[str], n_classes: int, *, reason: str | None = None) -> str:
    """The prediction set in words; its coverage is promised only for known types, so not for an ``unseen_type``."""
    if not prediction_set:
        return "Prediction set: empty (no type is likely enough)."
    if len(prediction_set) == n_classes > 1:
        return "Prediction set: every known type (the model cannot narrow it down)."
    names = [_escaped(name) for name in prediction_set]
    words = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    if reason == UNSEEN_TYPE:
        return (f"Prediction set: {words} (the closest known types; this photo looks like none of them, "
                "so the set may not hold its true type).")
    return f"Prediction set: {words} (the true type is among these with the calibrated coverage)."


def _verdict(answer: PanelAnswer) -> widgets.VBox:
    p = answer.prediction
    colour = RED if p.unknown else BLUE
    label = _html(f'<div style="font-size:1.9em;font-weight:bold;color:{colour}">{_escaped(p.label)}</div>',
                  "meterlib-label")
    note = f" (best guess: {_escaped(p.top_classes[0])})" if p.unknown else ""
    confidence = _html(f'<div style="font-size:1.3em">confidence {p.confidence:.1%}{note}</div>',
                       "meterlib-confidence")
    title = _html(f"<i>top {len(p.top_classes)}, calibrated</i>")
    bars = _html(bars_html(p.top_classes, p.top_probabilities), "meterlib-top")
    sets = _html(f'<div style="max-width:320px">{set_text(p.prediction_set, answer.n_classes, reason=p.reason)}</div>',
                 "meterlib-set")
    return widgets.VBox([label, confidence, title, bars, sets], layout=widgets.Layout(margin="0 12px"))


def _comparison(answer: PanelAnswer) -> widgets.VBox:
    if not answer.neighbours:
        text = _escaped(answer.neighbours_note) if answer.neighbours_note else "no comparison photos asked for"
        box = widgets.VBox([_html(f'<i style="color:{GREY}">{text}</i>')])
    else:
        rows = []
        for role, (class_name, found) in zip(ROLES, answer.neighbours.items()):
            rows.append(_html(f"training photos of the {role}: <b>{_escaped(class_name)}</b>"))
            rows.append(widgets.HBox([_captioned(n.thumbnail, _neighbour_caption(n), "", side=THUMB_SIDE)
                                      for n in found]))
        box = widgets.VBox(rows)
    box.add_class("meterlib-neighbours")
    return box


def _neighbour_caption(neighbour) -> str:
    # The stored name is the photo's path in its dataset: the file name fits under a thumbnail.
    full = _escaped(neighbour.name)
    return f'<span title="{full}">{_escaped(PurePosixPath(neighbour.name).name)}</span>' \
           f"<br>similarity {neighbour.similarity:.2f}"


def _captioned(img: Image.Image, caption: str, css: str, *, side: int | None = None) -> widgets.VBox:
    width = min(img.width, side) if side else img.width  # never blown up beyond its pixels
    picture = widgets.Image(value=_jpeg(img), format="jpeg", layout=widgets.Layout(width=f"{width}px"))
    box = widgets.VBox([picture, _html(f'<small style="color:{GREY}">{caption}</small>')],
                       layout=widgets.Layout(margin="0 6px 0 0"))
    if css:
        box.add_class(css)
    return box


def _jpeg(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.convert("RGB").save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()


def _escaped(text: str) -> str:
    # Names come from files and folders: control characters could move the cursor or reorder text.
    return html.escape(shown_name(text))


def _html(value: str, css: str = "") -> widgets.HTML:
    widget = widgets.HTML(value)
    if css:
        widget.add_class(css)
    return widget
