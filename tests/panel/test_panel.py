"""The prediction panel of notebook 04: uploads in, answers and their widgets out (no browser)."""

import dataclasses
import datetime
import html
import io
import re
from types import SimpleNamespace

import ipywidgets as widgets
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from meterlib.confidence.fitted import Calibration
from meterlib.errors import ModelFileError
from meterlib.model import backbones, checkpoint
from meterlib.panel import answers, app, figures, view
from meterlib.confidence.unseen import UnseenRule
from meterlib.serve import UNKNOWN, Prediction, Predictor
from meterlib.serve.predictor import POOR_PHOTO, UNSEEN_TYPE, UNSURE

CLASSES = ["zeta", "alpha", "mu", "kappa", "beta"]  # five, so that the top 3 leave two out


@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> Predictor:
    torch.manual_seed(0)
    model = backbones.build_classifier("random", len(CLASSES), pretrained=False).eval()
    spec = checkpoint.ModelSpec(backbone="random", class_names=CLASSES, image_size=32,
                                mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    path = checkpoint.save(tmp_path_factory.mktemp("panel") / "ckpt.pt", model=model, spec=spec)
    return Predictor.from_checkpoint(path, device="cpu")


def _calibrated(predictor, threshold: float) -> Predictor:
    return predictor.with_calibration(Calibration(unknown_threshold=threshold))


def _upload(name: str, data: bytes) -> dict:
    """An entry of ipywidgets 8's FileUpload.value."""
    return {"name": name, "type": "image/png", "size": len(data), "content": memoryview(data),
            "last_modified": datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc)}


@pytest.fixture()
def uploads(tmp_path) -> tuple[dict, ...]:
    rng = np.random.default_rng(1)
    entries = []
    for i in range(3):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (60, 40, 3), dtype=np.uint8)).save(buffer, format="PNG")
        entries.append(_upload(f"meter {i}.png", buffer.getvalue()))
    return tuple(entries)


def _tree(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _tree(child)


def _with_class(widget, css: str) -> list:
    return [w for w in _tree(widget) if css in w._dom_classes]


def _text(widget) -> str:
    return " ".join(w.value for w in _tree(widget) if isinstance(w, widgets.HTML))


def test_uploads_get_the_predictors_answers(predictor, uploads):
    given = answers.answer_uploads(predictor, uploads, neighbours=0)
    assert [a.name for a in given] == ["meter 0.png", "meter 1.png", "meter 2.png"]
    for answer, upload in zip(given, uploads):
        expected = predictor.predict(bytes(upload["content"]))
        assert answer.ok and answer.prediction.label == expected.label
        assert answer.prediction.top_classes == expected.top_classes
        assert answer.prediction.top_probabilities == pytest.approx(expected.top_probabilities, abs=1e-5)
        assert answer.heatmap.size == answer.preview.size == (40, 60)


def test_paths_are_answered_and_named_by_their_file(predictor, uploads, tmp_path):
    path = tmp_path / "on disk.png"
    path.write_bytes(bytes(uploads[0]["content"]))
    [answer] = answers.answer_uploads(predictor, [path], explain=False, neighbours=0)
    assert answer.name == "on disk.png" and answer.heatmap is None
    assert answer.prediction.top_classes == predictor.predict(path).top_classes


def test_a_bad_upload_is_named_and_the_others_are_answered(predictor, uploads):
    broken = _upload("broken.jpg", b"not a photo")
    given = answers.answer_uploads(predictor, (uploads[0], broken, uploads[1]), explain=False, neighbours=0)
    assert [a.ok for a in given] == [True, False, True]
    assert given[1].name == "broken.jpg" and "not an image" in given[1].error
    line = view.render(given[1])
    assert "meterlib-error" in line._dom_classes and "broken.jpg" in line.value
    assert "not an image" in answers.summary_line(given[1])


def test_rendered_answer_shows_the_label_and_exactly_the_top_three(predictor, uploads):
    [answer] = answers.answer_uploads(_calibrated(predictor, 0.0), uploads[:1], neighbours=0)
    shown = view.render(answer)
    assert "meterlib-answer" in shown._dom_classes
    [label] = _with_class(shown, "meterlib-label")
    assert f">{answer.prediction.label}<" in label.value and answer.prediction.label in CLASSES
    [bars] = _with_class(shown, "meterlib-top")
    named = [c for c in CLASSES if f">{c}</td>" in bars.value]
    assert sorted(named) == sorted(answer.prediction.top_classes) and len(named) == 3
    order = sorted(named, key=bars.value.index)
    assert order == answer.prediction.top_classes
    assert len(_with_class(shown, "meterlib-heatmap")) == 1 and _with_class(shown, "meterlib-set")


@pytest.mark.parametrize("threshold, unknown", [(1.0, True), (0.0, False)])
def test_the_unknown_banner_appears_exactly_when_the_answer_is_unknown(predictor, uploads, threshold, unknown):
    [answer] = answers.answer_uploads(_calibrated(predictor, threshold), uploads[:1], explain=False,
                                      neighbours=0)
    assert answer.prediction.unknown is unknown
    banners = _with_class(view.render(answer), "meterlib-unknown")
    assert len(banners) == int(unknown)
    if unknown:
        assert answer.prediction.label == UNKNOWN and answer.prediction.reason == UNSURE
        assert answer.prediction.top_classes[0] in banners[0].value
        assert f"UNKNOWN: the model is unsure: {answer.prediction.detail}." in banners[0].value


def test_a_checkpoint_without_gallery_says_so(predictor, uploads):
    assert predictor.gallery is None
    [answer] = answers.answer_uploads(predictor, uploads[:1], explain=False, neighbours=3)
    assert answer.neighbours == {} and "no comparison photos" in answer.neighbours_note
    [compare] = _with_class(view.render(answer), "meterlib-neighbours")
    assert "no comparison photos" in _text(compare)


def test_nearest_photos_of_the_predicted_type_and_the_runner_up_are_shown(predictor, uploads, monkeypatch):
    asked = {}

    def nearest(_, image, classes, *, k):
        asked.update(classes=classes, k=k)
        thumb = Image.new("RGB", (20, 30), "grey")
        return {c: [SimpleNamespace(class_name=c, name=f"raw/{c}/{c}_{i}.jpg", similarity=0.9 - i / 10, thumbnail=thumb)
                    for i in range(k)] for c in classes}

    monkeypatch.setattr(answers.gallery, "nearest", nearest)
    [answer] = answers.answer_uploads(predictor, uploads[:1], explain=False, neighbours=2)
    assert asked == {"classes": answer.prediction.top_classes[:2], "k": 2}
    text = _text(_with_class(view.render(answer), "meterlib-neighbours")[0])
    top, runner_up = answer.prediction.top_classes[:2]
    assert f"predicted type: <b>{top}</b>" in text and f"runner-up: <b>{runner_up}</b>" in text
    assert f'title="raw/{top}/{top}_1.jpg">{top}_1.jpg</span><br>similarity 0.80' in text


def test_the_upload_handler_puts_new_answers_on_top_and_clears_the_button(predictor, uploads):
    earlier = widgets.HTML("earlier answer")
    box, status = widgets.VBox([earlier]), widgets.HTML()
    upload = widgets.FileUpload(accept="image/*", multiple=True)
    upload.observe(app.upload_handler(predictor, box, status, explain=False, neighbours=0), names="value")
    upload.value = (uploads[0], _upload("broken.jpg", b"x"))
    assert len(box.children) == 3 and box.children[-1] is earlier
    assert "meterlib-answer" in box.children[0]._dom_classes and "meter 0.png" in _text(box.children[0])
    assert "meterlib-error" in box.children[1]._dom_classes
    assert "1 photo(s) answered, 1 unreadable" in status.value
    assert upload.value == ()


def test_the_missing_model_message_says_what_to_run(tmp_path):
    shown = app.missing_model(tmp_path / "model.pt")
    assert "model.pt" in shown.value and "bash run.sh demo" in shown.value


def test_prefill_takes_test_photos_of_distinct_classes_first():
    manifest = pd.DataFrame({"path": [f"p{i}" for i in range(7)],
                             "class": ["a", "a", "b", "b", "c", "a", "d"],
                             "split": ["test", "test", "train", "test", "test", "test", "holdout"]})
    assert answers.pick_photos(manifest, 3) == ["p0", "p3", "p4"]
    assert answers.pick_photos(manifest, 5) == ["p0", "p3", "p4", "p1", "p5"]
    assert answers.pick_photos(manifest, 0) == []


def test_summary_line_and_figure_hold_the_answers(predictor, uploads):
    given = answers.answer_uploads(_calibrated(predictor, 1.0), uploads[:2], neighbours=0)
    line = answers.summary_line(given[0])
    assert line.startswith(f"meter 0.png: UNKNOWN, unsure: {given[0].prediction.detail} (best guess")
    assert "top-3:" in line
    fig = figures.plot_answers(given + [answers.PanelAnswer(name="x", threshold=1.0, n_classes=5, error="bad")])
    assert len(fig.axes) == 6  # one row per answered photo
    assert fig.axes[2].get_title().startswith("UNKNOWN, unsure (")
    fig.clf()


def _given(confidence: float, threshold: float, *, name: str = "meter.png",
           classes: tuple[str, ...] = ("alpha", "beta", "mu"), reason: str | None = None,
           detail: str = "torn between two types") -> answers.PanelAnswer:
    """An answer built by hand: the confidence, reason and names a model would not give on demand.

    Without a ``reason``, a confidence below the threshold makes it ``unsure``.
    """
    rest = (1 - confidence) / 2
    reason = reason or (UNSURE if confidence < threshold else None)
    prediction = Prediction(label=UNKNOWN if reason else classes[0], unknown=reason is not None,
                            confidence=confidence, top_classes=list(classes),
                            top_probabilities=[confidence, rest, rest], prediction_set=list(classes[:2]),
                            reason=reason, detail=detail if reason else "", unseen_p=0.01)
    preview = Image.new("RGB", (40, 60), "grey")
    return answers.PanelAnswer(name=name, threshold=threshold, n_classes=5, prediction=prediction,
                               preview=preview, heatmap=preview)


def _shown_comparison(text: str, pattern: str) -> tuple[float, float] | None:
    found = re.search(pattern, text)
    return None if found is None else (float(found[1]), float(found[2]))


@pytest.mark.parametrize("confidence, threshold", [(0.8996, 0.9), (0.89999, 0.9), (0.5, 0.9), (0.45, 0.4501),
                                                   (0.9 - 1e-12, 0.9)])
def test_the_comparison_shown_for_an_unknown_answer_is_true(confidence, threshold):
    answer = _given(confidence, threshold)
    line = answers.summary_line(answer)
    banner = view.unknown_banner(answer).value
    in_line = _shown_comparison(line, r"confidence ([\d.]+) < ([\d.]+)\)")
    in_banner = _shown_comparison(banner, r"The confidence ([\d.]+)% is below the threshold ([\d.]+)%")
    if threshold - confidence < 1e-9:  # no sensible number of digits tells them apart
        assert in_line is None and f"confidence just below {threshold:.2f})" in line
        assert in_banner is None and f"The confidence is just below the threshold {threshold:.1%}" in banner
    else:
        assert in_line is not None and in_line[0] < in_line[1], line
        assert in_banner is not None and in_banner[0] < in_banner[1], banner


def test_a_confidence_just_below_the_threshold_gets_the_digits_it_needs_and_no_more():
    assert "confidence 0.8996 < 0.9000)" in answers.summary_line(_given(0.8996, 0.9))
    assert "The confidence 89.96% is below the threshold 90.00%" in view.unknown_banner(_given(0.8996, 0.9)).value
    assert "confidence 0.50 < 0.90)" in answers.summary_line(_given(0.5, 0.9))
    assert "The confidence 50.0% is below the threshold 90.0%" in view.unknown_banner(_given(0.5, 0.9)).value


DETAILS = {POOR_PHOTO: "too dark (brightness 0.01 < 0.1)",
           UNSEEN_TYPE: "unlike every known type: p = 0.010, below 0.05 (nearest training photo: mu, similarity 0.41)",
           UNSURE: "torn between alpha (50.0%) and beta (25.0%); answers need 90.0%"}
LEADS = {POOR_PHOTO: "retake the photo", UNSEEN_TYPE: "this looks like a meter type the model has never seen",
         UNSURE: "the model is unsure"}


@pytest.mark.parametrize("reason", [POOR_PHOTO, UNSEEN_TYPE, UNSURE])
def test_the_banner_says_the_reason_in_plain_words_with_its_detail(reason):
    confidence = 0.5 if reason == UNSURE else 0.97  # an unseen type or a poor photo can be confident
    answer = _given(confidence, 0.9, reason=reason, detail=DETAILS[reason])
    [banner] = _with_class(view.render(answer), "meterlib-unknown")
    assert f"UNKNOWN: {LEADS[reason]}: {html.escape(DETAILS[reason])}." in banner.value
    assert [lead for lead in LEADS.values() if lead in banner.value] == [LEADS[reason]]
    assert ("below the threshold" in banner.value) is (reason == UNSURE)
    line = answers.summary_line(answer)
    assert f"UNKNOWN, {reason}: {DETAILS[reason]} (best guess alpha, confidence " in line
    assert (" < " in line.split("confidence ")[-1]) is (reason == UNSURE)
    fig = figures.plot_answers([answer])
    assert fig.axes[2].get_title().startswith(f"UNKNOWN, {reason} (")
    fig.clf()


def test_the_sets_coverage_is_promised_for_known_types_only():
    promise = "with the calibrated coverage"
    for reason in (None, POOR_PHOTO, UNSURE):
        assert promise in _text(view.render(_given(0.95 if reason is None else 0.5, 0.9, reason=reason)))
    unseen = _text(view.render(_given(0.97, 0.9, reason=UNSEEN_TYPE)))
    assert promise not in unseen and "Prediction set: alpha or beta (the closest known types" in unseen


def test_a_detail_is_escaped_in_the_banner_and_the_log():
    detail = "nearest training photo: <b>m\x1b[2J</b>"
    answer = _given(0.97, 0.9, reason=UNSEEN_TYPE, detail=detail)
    banner = view.unknown_banner(answer).value
    assert "<b>m" not in banner and "&lt;b&gt;m\\x1b[2J&lt;/b&gt;" in banner
    assert "\x1b" not in answers.summary_line(answer) and "m\\x1b[2J" in answers.summary_line(answer)


def test_the_panel_says_once_that_the_model_cannot_flag_unseen_types(predictor):
    [note] = app.model_notes(predictor)  # no reference features, no unseen-type rule
    assert note.value.count("unseen_type is unavailable") == 1 and "meterlib-message" in note._dom_classes
    rule = UnseenRule(energy=[0.0] * 3, similarity=[0.5] * 3, fused=[0.5] * 3, alpha=0.3)
    able = dataclasses.replace(predictor, reference={}, calibration=Calibration(unseen_type=rule))
    assert able.unseen_type_note == "" and app.model_notes(able) == []


FORGING = ("\x1b[1A", "\r", "\u202e", "\n")  # cursor up, carriage return, right-to-left override, line break


def _raw_controls(text: str) -> list[str]:
    return [char for char in FORGING if char in text]


def test_control_characters_in_names_are_escaped_wherever_the_panel_shows_them(tmp_path):
    name = "meter\x1b[1A\rOK \u202egnp.png"
    classes = ("alpha\x1b[31m", "beta\n", "mu")
    answer = _given(0.5, 0.9, name=name, classes=classes)
    shown = _text(view.render(answer))
    assert _raw_controls(shown) == [] and "meter\\x1b[1A\\x0dOK \\u202egnp.png" in shown
    assert "alpha\\x1b[31m" in shown and "beta\\x0a" in shown
    line = answers.summary_line(answer)
    assert _raw_controls(line) == [] and line.startswith("meter\\x1b[1A\\x0dOK \\u202egnp.png: UNKNOWN")
    assert "best guess alpha\\x1b[31m" in line
    failed = answers.PanelAnswer(name=name, threshold=0.9, n_classes=5, error="cannot read \x1b[2Jfile")
    for text in (view.render(failed).value, answers.summary_line(failed)):
        assert _raw_controls(text) == [] and "\\x1b[2Jfile" in text and "\\x1b[1A" in text
    fig = figures.plot_answers([answer])
    titles = [ax.get_title() for ax in fig.axes] + [label.get_text() for label in fig.axes[2].get_yticklabels()]
    assert _raw_controls(" ".join(titles)) == [] and "meter\\x1b[1A\\x0dOK \\u202egnp.png" in titles
    fig.clf()
    assert _raw_controls(app.missing_model(tmp_path / "model\x1b[1A.pt").value) == []


def test_a_missing_photo_is_an_error_line_and_the_others_are_answered(predictor, uploads, tmp_path):
    present = tmp_path / "there.png"
    present.write_bytes(bytes(uploads[0]["content"]))
    given = answers.answer_uploads(predictor, [tmp_path / "gone.jpg", present], explain=False, neighbours=0)
    assert [(a.name, a.ok) for a in given] == [("gone.jpg", False), ("there.png", True)]
    line = answers.summary_line(given[0])
    assert line.startswith("gone.jpg: cannot be answered: ") and "file not found" in line


def test_the_model_served_is_the_given_checkpoint_else_the_default(random_checkpoint, tmp_path):
    missing_default = tmp_path / "reports" / "model.pt"
    assert app.served_model("", default=missing_default) == (missing_default, None)
    path, predictor = app.served_model("", default=random_checkpoint)
    assert path == random_checkpoint and predictor.class_names == ["zeta", "alpha", "mu"]
    path, predictor = app.served_model(str(random_checkpoint), default=missing_default)
    assert path == random_checkpoint and predictor is not None
    with pytest.raises(ModelFileError) as err:
        app.served_model(str(tmp_path / "typo.pt"), default=random_checkpoint)
    message = str(err.value)
    assert "parameter checkpoint" in message and str(tmp_path / "typo.pt") in message
    assert len(message.splitlines()) == 1


def test_an_upload_pillow_warns_about_is_answered_without_the_warning(predictor, uploads, monkeypatch, recwarn):
    # The decoder keeps Pillow's warnings from users; the panel's own decoding (the preview) must go through it too.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # the 40 x 60 uploads now draw a DecompressionBombWarning
    [answer] = answers.answer_uploads(predictor, uploads[:1], explain=False, neighbours=0)
    assert answer.ok
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]
