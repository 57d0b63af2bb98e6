"""Tolerant batches: Predictor.predict_each answers every usable photo and names each bad one's problem."""

import io
import os
import re

import numpy as np
import pytest
from PIL import Image

from meterlib.data import photos
from meterlib.errors import MeterlibError
from meterlib.serve import Outcome, Predictor, batch


def picture(seed: int, size=(48, 36)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def encoded(img: Image.Image, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def predictor(random_checkpoint) -> Predictor:
    return Predictor.from_checkpoint(random_checkpoint, device="cpu")


def assert_same_answers(got, expected):
    assert [p.top_classes for p in got] == [p.top_classes for p in expected]
    np.testing.assert_allclose([p.top_probabilities for p in got], [p.top_probabilities for p in expected],
                               rtol=0, atol=1e-6)


def test_each_bad_photo_gets_its_problem_and_the_rest_are_answered_in_order(predictor, tmp_path):
    good = tmp_path / "good.jpg"
    picture(0).save(good)
    jpeg = good.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    Image.new("RGB", (1, 1), (200, 10, 10)).save(tmp_path / "dot.png")
    (tmp_path / "folder.jpg").mkdir()
    sources = [good, b"", b"just some text", tmp_path / "cut.jpg", str(tmp_path / "dot.png"), picture(1),
               np.asarray(picture(2)), tmp_path / "absent.jpg", tmp_path / "folder.jpg", memoryview(jpeg)]
    outcomes = predictor.predict_each(sources, batch_size=4)
    assert [o.source for o in outcomes] == [
        str(good), "photo 2 (bytes)", "photo 3 (bytes)", str(tmp_path / "cut.jpg"), str(tmp_path / "dot.png"),
        "photo 6 (Image)", "photo 7 (ndarray)", str(tmp_path / "absent.jpg"), str(tmp_path / "folder.jpg"),
        "photo 10 (memoryview)"]
    errors = [o.error for o in outcomes]
    assert errors[1] == "empty (0 bytes)"
    assert errors[2].startswith("not an image file")
    assert errors[3].startswith("unreadable or truncated image")
    assert errors[7] == "file not found" and errors[8].startswith("not a regular file (a directory)")
    ok = [i for i, o in enumerate(outcomes) if o.ok]
    assert ok == [0, 4, 5, 6, 9]  # the 1x1 PNG is upscaled and answered
    assert all(o.prediction is None for o in outcomes if not o.ok)
    assert_same_answers([outcomes[i].prediction for i in ok], predictor.predict_many([sources[i] for i in ok]))
    assert outcomes[9].prediction == outcomes[0].prediction  # a file and its bytes: the same answer


def test_batches_do_not_shift_answers_between_photos(predictor, tmp_path):
    sources = [encoded(picture(seed)) if seed % 3 else b"broken" for seed in range(11)]
    one_batch = predictor.predict_each(sources, top_k=2, batch_size=32)
    small = predictor.predict_each(sources, top_k=2, batch_size=2)
    assert [o.ok for o in small] == [seed % 3 != 0 for seed in range(11)]
    assert [o.source for o in small] == [o.source for o in one_batch]
    assert_same_answers([o.prediction for o in small if o.ok], [o.prediction for o in one_batch if o.ok])
    assert all(len(o.prediction.top_classes) == 2 for o in small if o.ok)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_path_bytes_and_pil_give_the_same_outcome(predictor, tmp_path, fmt):
    path = tmp_path / f"meter.{fmt.lower()}"
    picture(3, size=(90, 60)).save(path, fmt)
    data = path.read_bytes()
    outcomes = predictor.predict_each([path, data, memoryview(data), Image.open(path)])
    assert all(o.ok for o in outcomes)
    assert_same_answers([o.prediction for o in outcomes[1:]], [outcomes[0].prediction] * 3)


def test_names_label_the_outcomes(predictor):
    outcomes = predictor.predict_each([encoded(picture(0)), b""], names=["kitchen.jpg", "empty.jpg"])
    assert outcomes == [Outcome("kitchen.jpg", outcomes[0].prediction, None),
                        Outcome("empty.jpg", None, "empty (0 bytes)")]
    assert outcomes[0].ok and not outcomes[1].ok
    with pytest.raises(ValueError, match="2 names for 1 photos"):
        predictor.predict_each([b""], names=["a.jpg", "b.jpg"])


def test_only_bad_photos_give_only_errors(predictor):
    outcomes = predictor.predict_each([b"", b"x" * 10])
    assert [o.error for o in outcomes] == ["empty (0 bytes)", "not an image file (format not recognised)"]
    assert predictor.predict_each([]) == []


def test_files_and_bytes_above_the_size_limit_are_refused(predictor, tmp_path, monkeypatch):
    small = encoded(picture(0, size=(8, 8)))
    large = small + bytes(2**20)  # a JPEG with trailing padding: it would decode if it were read
    (tmp_path / "large.jpg").write_bytes(large)
    monkeypatch.setattr(photos, "MAX_PHOTO_BYTES", 2**20)
    outcomes = predictor.predict_each([small, large, tmp_path / "large.jpg"], names=["s", "l", "f"])
    assert outcomes[0].ok
    assert [o.error for o in outcomes[1:]] == ["too large (over 1 MB)"] * 2


def test_a_decompression_bomb_is_refused_in_meterlib_words(predictor, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses more than twice this
    outcomes = predictor.predict_each([encoded(picture(0, size=(100, 100)), "PNG"), encoded(picture(1, (20, 20)))])
    assert outcomes[0].error == "too many pixels (over 0.002 MP; photos of up to 120 MP are read)"
    assert outcomes[1].ok


def test_folded_batch_norms_answer_like_the_original(predictor, tmp_path):
    sources = [encoded(picture(seed)) for seed in range(3)]
    folded = predictor.with_folded_batch_norms()
    assert folded.model is not predictor.model and folded.class_names == predictor.class_names
    np.testing.assert_allclose(folded.probabilities(sources), predictor.probabilities(sources), rtol=0, atol=1e-5)


def test_inputs_are_the_named_files_and_the_photos_in_named_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ["in/b.jpg", "in/a.PNG", "in/sub/deep/c.jpeg", "in/notes.txt", "in/.hidden.jpg",
                 "in/.cache/d.jpg", "other/e.jpg", "notes.txt"]:
        os.makedirs(os.path.dirname(name) or ".", exist_ok=True)
        open(name, "wb").close()
    inputs = batch.expand_inputs(["in", "notes.txt", "missing.jpg", "in/b.jpg", "other/e.jpg"])
    assert [str(path) for path in inputs.files] == ["in/a.PNG", "in/b.jpg", "in/sub/deep/c.jpeg", "missing.jpg",
                                                    "notes.txt", "other/e.jpg"]
    assert inputs.skipped == {".txt": 1, "hidden": 2}  # in/.hidden.jpg and in/.cache, which is not looked into
    assert inputs.skipped_summary() == ("3 files skipped in folders: 1 .txt (not photo formats meterlib reads), "
                                        "2 hidden (names starting with '.')")


def test_no_photos_at_all_is_an_error_naming_the_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "readme.txt").write_text("no photos here")
    expected = f"no photos found in {tmp_path / 'empty'}, {tmp_path / 'texts'}"
    with pytest.raises(MeterlibError, match=re.escape(expected)):
        batch.expand_inputs([tmp_path / "empty", tmp_path / "texts"])
