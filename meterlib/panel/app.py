"""Wire the panel's widgets: photos chosen with an upload button are answered above earlier answers."""

from __future__ import annotations

from typing import Any, Callable

import ipywidgets as widgets

from meterlib.panel import view
from meterlib.panel.answers import answer_uploads
from meterlib.serve import Predictor


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


def missing_model(path: Any) -> widgets.HTML:
    """What the panel shows instead of answers when there is no trained model."""
    return view.message(f"no trained model at {path}: run `bash run.sh demo` first "
                        "(or set the parameter `checkpoint`)", colour=view.RED)
