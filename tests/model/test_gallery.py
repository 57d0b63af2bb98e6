"""The gallery of training photos: built small and deterministic, stored safely, searched by cosine."""

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from meterlib.errors import MeterlibError, ModelFileError
from meterlib.model import backbones, checkpoint, gallery
from meterlib.serve import Predictor

CLASSES = ["zeta", "alpha", "mu"]
SPEC = checkpoint.ModelSpec(backbone="random", class_names=CLASSES, image_size=32,
                            mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


@pytest.fixture()
def dataset(tmp_path):
    """Five photos per class, of three sizes and shades, under tmp_path/raw/<class>/."""
    rng = np.random.default_rng(0)
    files, labels = [], []
    for label, name in enumerate(CLASSES):
        (tmp_path / "raw" / name).mkdir(parents=True)
        for i in range(5):
            files.append(tmp_path / "raw" / name / f"photo {i}.jpg")
            pixels = rng.integers(0, 256, (60 + 10 * label, 40, 3)) * (i + 1) // 5
            Image.fromarray(pixels.astype(np.uint8)).save(files[-1], quality=95)
            labels.append(label)
    return tmp_path, files, labels


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return backbones.build_classifier("random", len(CLASSES), pretrained=False).eval()


def _pooled(model, photo):
    """Unit-length pooled features of one photo, preprocessed by hand (squash, scale, normalise)."""
    pixels = np.asarray(Image.open(photo).convert("RGB").resize((32, 32), Image.Resampling.BILINEAR))
    x = (torch.from_numpy(pixels.astype(np.float32) / 255).permute(2, 0, 1)[None] - 0.5) / 0.25
    with torch.no_grad():
        return F.normalize(model[:3](x), dim=1)[0].numpy()


def test_build_draws_per_class_photos_with_the_seed(dataset, model):
    root, files, labels = dataset
    built = gallery.build(model, files, labels, spec=SPEC, root=root, per_class=2, thumb_side=24)
    assert built["labels"].tolist() == [0, 0, 1, 1, 2, 2] and built["labels"].dtype == torch.int64
    assert built["features"].dtype == torch.float16 and built["features"].shape == (6, 512)
    np.testing.assert_allclose(built["features"].float().norm(dim=1), 1.0, atol=2e-3)
    assert all(name.startswith(f"raw/{CLASSES[label]}/photo ") for name, label in zip(built["names"], built["labels"]))
    again = gallery.build(model, files, labels, spec=SPEC, root=root, per_class=2, thumb_side=24)
    assert again["names"] == built["names"] and torch.equal(again["features"], built["features"])
    other = gallery.build(model, files, labels, spec=SPEC, root=root, per_class=2, thumb_side=24, seed=1)
    assert other["names"] != built["names"]
    thumbnail = Image.open(io.BytesIO(built["thumbnails"][-1].numpy().tobytes()))
    assert thumbnail.format == "JPEG" and thumbnail.size == (12, 24)  # 40 x 80 photo, aspect kept
    without_root = gallery.build(model, files[:1], labels[:1], spec=SPEC)
    assert without_root["names"] == ["photo 0.jpg"]


def test_stored_features_are_the_model_without_its_head(dataset, model):
    root, files, labels = dataset
    built = gallery.build(model, files, labels, spec=SPEC, root=root, per_class=5)
    for row, name in enumerate(built["names"]):
        np.testing.assert_allclose(built["features"][row].float().numpy(), _pooled(model, root / name), atol=5e-3)


def test_many_classes_store_fewer_photos_each(dataset, model, monkeypatch):
    root, files, labels = dataset
    monkeypatch.setattr(gallery, "MAX_PHOTOS", 4)  # 3 classes: one photo each
    assert gallery.build(model, files, labels, spec=SPEC, per_class=12)["labels"].tolist() == [0, 1, 2]


def test_labels_must_fit_the_photos_and_classes(dataset, model):
    root, files, labels = dataset
    with pytest.raises(ValueError, match="one label per photo"):
        gallery.build(model, files, labels[:-1], spec=SPEC)
    with pytest.raises(ValueError, match="class indices from 0 to 2"):
        gallery.build(model, files, [3] * len(files), spec=SPEC)


@pytest.fixture()
def served(dataset, model, tmp_path):
    root, files, labels = dataset
    path = tmp_path / "model" / "ckpt.pt"
    checkpoint.save(path, model=model, spec=SPEC,
                    gallery=gallery.build(model, files, labels, spec=SPEC, root=root, per_class=4))
    return Predictor.from_checkpoint(path, device="cpu"), root, files


def test_the_gallery_survives_a_weights_only_load(served, tmp_path):
    predictor, _, _ = served
    raw = torch.load(tmp_path / "model" / "ckpt.pt", weights_only=True)["gallery"]
    assert len(raw["names"]) == 12 and torch.equal(raw["labels"], predictor.gallery["labels"])


def test_nearest_ranks_a_class_by_cosine_similarity(served):
    predictor, root, _ = served
    stored = predictor.gallery
    query = root / stored["names"][int(np.flatnonzero(stored["labels"].numpy() == 1)[0])]  # a stored 'alpha'
    found = gallery.nearest(predictor, query, ["alpha", "mu"], k=3)
    assert list(found) == ["alpha", "mu"] and all(len(v) == 3 for v in found.values())
    expected = _pooled(predictor.model, query)
    for name, neighbours in found.items():
        rows = [i for i, label in enumerate(stored["labels"]) if CLASSES[label] == name]
        truth = sorted(((float(stored["features"][i].float() @ torch.from_numpy(expected)), stored["names"][i])
                        for i in rows), reverse=True)[:3]
        assert [n.name for n in neighbours] == [t[1] for t in truth]
        assert [n.similarity for n in neighbours] == pytest.approx([t[0] for t in truth], abs=5e-3)
        assert all(n.class_name == name and isinstance(n.thumbnail, Image.Image) for n in neighbours)
    assert root / found["alpha"][0].name == query and found["alpha"][0].similarity > 0.99  # the photo itself


def test_features_of_one_photo_or_many(served):
    predictor, _, files = served
    many = gallery.features(predictor, files[:2])
    assert many.shape == (2, 512) and many.dtype == np.float32
    np.testing.assert_allclose(gallery.features(predictor, files[1])[0], many[1], atol=1e-6)
    np.testing.assert_allclose(many[0], _pooled(predictor.model, files[0]), atol=1e-4)


def test_a_checkpoint_without_gallery_or_an_unknown_class_is_a_clear_error(served, dataset):
    predictor, _, files = served
    with pytest.raises(ValueError, match="unknown class 'omega'"):
        gallery.nearest(predictor, files[0], ["alpha", "omega"])
    predictor.gallery = None
    with pytest.raises(ModelFileError, match="no gallery .* retrain with notebook 02") as caught:
        gallery.nearest(predictor, files[0], ["alpha"])
    assert isinstance(caught.value, MeterlibError)


def _broken(built, key, value):
    return {**built, key: value}


@pytest.mark.parametrize("change, problem", [
    (lambda g: {k: v for k, v in g.items() if k != "names"}, "must be a dict with the keys"),
    (lambda g: _broken(g, "features", g["features"][0]), "'features' as a 2-D float tensor"),
    (lambda g: _broken(g, "labels", g["labels"][:-1]), "'labels' as an int64 tensor of 6"),
    (lambda g: _broken(g, "labels", g["labels"] + 1), "'labels' outside 0 to 2"),
    (lambda g: _broken(g, "thumbnails", [t.float() for t in g["thumbnails"]]), "'thumbnails' as a list of 6 1-D uint8"),
    (lambda g: _broken(g, "names", g["names"][:-1]), "'names' as a list of 6 strings"),
], ids=["missing key", "1-D features", "labels too few", "label out of range", "float thumbnails", "names too few"])
def test_a_malformed_gallery_is_never_written_nor_loaded(dataset, model, tmp_path, change, problem):
    root, files, labels = dataset
    broken = change(gallery.build(model, files, labels, spec=SPEC, root=root, per_class=2))
    with pytest.raises(ModelFileError, match=rf"x\.pt: checkpoint field 'gallery' .*{problem}"):
        checkpoint.save(tmp_path / "x.pt", model=model, spec=SPEC, gallery=broken)
    assert not (tmp_path / "x.pt").exists()
    path = checkpoint.save(tmp_path / "y.pt", model=model, spec=SPEC)
    torch.save({**torch.load(path, weights_only=True), "gallery": broken}, path)  # as if written elsewhere
    with pytest.raises(ModelFileError, match=rf"y\.pt: checkpoint field 'gallery' .*{problem}"):
        checkpoint.load(path)
