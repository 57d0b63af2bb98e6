"""Backbone weights: the bundled ImageNet weights really load, the default choice is honest offline."""

import pytest
import torch
from PIL import Image

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


def test_auto_picks_bundled_weights_offline_without_local_resnet(monkeypatch, tmp_path):
    monkeypatch.setenv("METERLIB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv(backbones.RESNET18_ENV, raising=False)
    name, reason = backbones.choose("auto")
    assert name == "efficientnet_lite0"
    assert "offline" in reason


def test_auto_prefers_a_local_resnet_file(monkeypatch, tmp_path):
    weights = tmp_path / "r18.pth"
    torch.save(backbones.build_classifier("random", 2).state_dict(), weights)
    monkeypatch.setenv("METERLIB_OFFLINE", "1")
    monkeypatch.setenv(backbones.RESNET18_ENV, str(weights))
    assert backbones.choose("auto")[0] == "resnet18"


def test_explicit_resnet_offline_without_weights_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("METERLIB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv(backbones.RESNET18_ENV, raising=False)
    assert backbones.choose("resnet18") == ("resnet18", "chosen explicitly")
    with pytest.raises(backbones.WeightsUnavailableError, match="METERLIB_OFFLINE"):
        backbones.create("resnet18", 3)


def test_unknown_backbone_is_rejected():
    with pytest.raises(ValueError, match="unknown backbone"):
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


def test_state_dicts_from_before_the_frozen_part_was_renamed_still_load():
    torch.manual_seed(0)
    saved = backbones.build_classifier("random", 3, pretrained=False).state_dict()
    assert any(key.startswith("frozen_part.") for key in saved)
    old = {key.replace("frozen_part.", "stem.", 1): tensor for key, tensor in saved.items()}
    model = backbones.build_classifier("random", 3, pretrained=False)
    model.load_state_dict(old)  # strict: every old key must find its renamed parameter
    assert all(torch.equal(model.state_dict()[key], tensor) for key, tensor in saved.items())
    assert "stem.0.weight" in old  # the caller's dict is left as it was
