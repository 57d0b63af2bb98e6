"""Reference features: what 02 stores for the unseen-type score, and the network that scores against them."""

import numpy as np
import pytest
import random_photos
import torch

from meterlib.errors import ModelFileError
from meterlib.model import backbones, checkpoint, field_formats, gallery, inference, reference

SPEC = checkpoint.ModelSpec("random", ["zeta", "alpha", "mu"], 32, mean=(0.5,) * 3, std=(0.25,) * 3)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return backbones.build_classifier("random", 3, pretrained=False).eval()


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory):
    return random_photos.save(tmp_path_factory.mktemp("reference_photos"), 8, width=48, height=40)


def test_build_stores_unit_features_of_every_photo_as_float16(model, photo_files):
    field = reference.build(model, photo_files, [0, 1, 2, 0, 1, 2, 0, 1], spec=SPEC)
    assert field["features"].dtype == torch.float16 and field["features"].shape == (8, 512)
    assert torch.allclose(field["features"].float().norm(dim=1), torch.ones(8), atol=1e-3)
    assert field["labels"].tolist() == [0, 1, 2, 0, 1, 2, 0, 1] and field["k"] == reference.K
    assert field_formats.reference_problem(field, n_classes=3) == ""


def test_build_draws_at_most_max_photos_and_keeps_their_labels(model, photo_files, monkeypatch):
    monkeypatch.setattr(reference, "MAX_PHOTOS", 3)
    labels = [0, 1, 2, 0, 1, 2, 0, 1]
    field = reference.build(model, photo_files, labels, spec=SPEC, seed=1)
    pictures = inference.load_resized(photo_files, image_size=32)
    features = gallery.unit_features(model, pictures, SPEC)
    rows = [int(np.argmax(features @ row.float().numpy())) for row in field["features"]]
    assert len(rows) == 3 and field["labels"].tolist() == [labels[i] for i in rows]


def test_k_never_exceeds_the_photos(model, photo_files):
    assert reference.build(model, photo_files[:2], [0, 1], spec=SPEC, k=5)["k"] == 2


def test_scoring_gives_the_logits_the_kth_similarity_and_its_class(model, photo_files):
    field = reference.build(model, photo_files[:5], [0, 1, 2, 1, 0], spec=SPEC, k=2)
    pictures = inference.load_resized(photo_files, image_size=32)
    logits, similarity, nearest = inference.outputs_for_images(reference.scoring(model, field), pictures,
                                                               image_size=32, mean=SPEC.mean, std=SPEC.std)
    expected_logits = inference.logits_for_images(model, pictures, image_size=32, mean=SPEC.mean, std=SPEC.std)
    assert torch.allclose(logits, expected_logits, atol=1e-5)
    cosine = gallery.unit_features(model, pictures, SPEC) @ field["features"].float().numpy().T
    second = np.argsort(-cosine, axis=1)[:, 1]
    assert np.allclose(similarity.numpy(), cosine[np.arange(8), second], atol=1e-4)
    assert nearest.tolist() == field["labels"][second].tolist()


@pytest.mark.parametrize("change, message", [
    (lambda f: {**f, "extra": 1}, "must be a dict with the keys features, labels, k"),
    (lambda f: {**f, "features": f["features"][:, :, None]}, "2-D float tensor of finite values"),
    (lambda f: {**f, "features": torch.full((4, 8), float("nan"))}, "2-D float tensor of finite values"),
    (lambda f: {**f, "labels": f["labels"][:-1]}, "int64 tensor of 4 class indices"),
    (lambda f: {**f, "labels": torch.tensor([0, 1, 2, 3])}, "outside 0 to 2"),
    (lambda f: {**f, "k": 0}, "'k' as an int from 1 to 4"),
    (lambda f: {**f, "k": 5}, "'k' as an int from 1 to 4"),
])
def test_a_malformed_field_says_what_is_wrong(change, message):
    field = {"features": torch.zeros(4, 8, dtype=torch.float16), "labels": torch.tensor([0, 1, 2, 0]), "k": 1}
    assert message in field_formats.reference_problem(change(field), n_classes=3)


def test_a_reference_that_does_not_fit_the_head_is_never_written(model, tmp_path):
    field = {"features": torch.zeros(4, 100, dtype=torch.float16), "labels": torch.tensor([0, 1, 2, 0]), "k": 1}
    with pytest.raises(ModelFileError, match="reference_features.*100 values, but the head reads 512"):
        checkpoint.save(tmp_path / "c.pt", model=model, spec=SPEC, reference_features=field)
    assert not (tmp_path / "c.pt").exists()
