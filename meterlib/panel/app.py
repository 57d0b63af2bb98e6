"""Wire the panel: the model it serves, and its widgets (photos chosen with an upload button are answered on top)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import ipywidgets as widgets

from meterlib.data.listing import shown_name
from meterlib.errors import ModelFileError
from meterlib.panel import view
from meterlib.panel.answers import answer_uploads
from meterlib.serve import Predictor


def served_model(checkpoint: str | os.PathLike, *, default: Path) -> tuple[Path, Predictor | None]:
    """The model to serve and its Predictor: ``checkpoint`` when given (it must exist), else ``default``.

    Only a missing ``default`` gives None, for the panel to explain; a mistyped ``checkpoint`` is an
    error, so that a run asked to serve a certain model fails instead of showing no model.
    """
    if not checkpoint:
        return default, Predictor.from_checkpoint(default) if default.is_file() else None
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise ModelFileError(f"parameter checkpoint: no model file at {shown_name(path)} "
                             "(leave it empty to serve this run's reports/model/meterlib_checkpoint.pt)")
    return path, Predictor.from_checkpoint(path)


def upload_handler(predictor: Predictor, answers: widgets.Box, status: widgets.HTML,
                   **options: Any) -> Callable[[dict], None]:
    """A callback for ``FileUpload.observe(..., names="value")``; ``options`` go to answer_uploads."""

    def handle(change: dict) -> None:
        uploads = change["new"]
        if not uploads:  # the value was cleared below
            return
        status.value = view.notice(f"answering {len(uploads)} photo(s) ...")
        try:
            new = answer_uploads(predictor, uploads, **options)
        except Exception as exc:  # raised inside a widget callback it would vanish from the page
            status.value = view.notice(f"could not answer: {type(exc).__name__}: {exc}", colour=view.RED)
            return
        answers.children = (*view.render_all(new), *answers.children)
        failed = sum(not answer.ok for answer in new)
        status.value = view.notice(f"{len(new) - failed} photo(s) answered, {failed} unreadable; newest on top",
                                   colour=view.RED if failed else view.GREY)
        change["owner"].value = ()  # so that choosing the same file again is a change too

    return handle


def model_notes(predictor: Predictor) -> list[widgets.HTML]:
    """What the panel says once, above its answers, about the model: that it cannot flag unseen types, if so."""
    note = predictor.unseen_type_note
    return [view.message(note)] if note else []


def missing_model(path: Any) -> widgets.HTML:
    """What the panel shows instead of answers when there is no trained model."""
    return view.message(missing_model_text(path), colour=view.RED)


def missing_model_text(path: Any) -> str:
    """The missing-model notice as one line of text, for the notebook's record."""
    return f"no trained model at {shown_name(path)}: run `bash run.sh demo` first (or set the parameter `checkpoint`)"
