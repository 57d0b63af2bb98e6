"""Heat-maps: captum's Grad-CAM equals the closed-form class activation map, and leaves the model alone."""

import importlib.util
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from meterlib.errors import SettingsError, UnavailableError
from meterlib.model import backbones
from meterlib.serve import Predictor, explain

SIZE = 96  # ResNet-18's last block gives a 3 x 3 map
MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)
needs_captum = pytest.mark.skipif(importlib.util.find_spec("captum") is None, reason="captum not installed")


@pytest.fixture()
def predictor():
    torch.manual_seed(0)
    model = backbones.build_classifier("random", 3, pretrained=False).eval()
    return Predictor(model=model, class_names=["a", "b", "c"], image_size=SIZE, mean=list(MEAN),
                     std=list(STD), device="cpu")


@pytest.fixture()
def photo():
    # Already square and of the input size, so the model sees exactly these pixels.
    return Image.fromarray(np.random.default_rng(1).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))


def _class_activation_map(model, photo, class_index):
    """ReLU(sum_k W[c, k] A_k) of the last block's maps, upsampled and scaled to peak 1, computed by hand."""
    pixels = torch.from_numpy(np.asarray(photo, dtype=np.float32) / 255).permute(2, 0, 1)
    x = ((pixels - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None])[None]
    with torch.no_grad():
        maps = model.last_block(model.frozen_part(x))[0]
        cam = torch.relu(torch.einsum("k,khw->hw", model.head.weight[class_index], maps))
    cam = F.interpolate(cam[None, None], (SIZE, SIZE), mode="bilinear")[0, 0].numpy()
    return cam / cam.max()


@needs_captum
def test_grad_cam_is_the_class_activation_map(predictor, photo):
    for class_index in range(3):
        expected = _class_activation_map(predictor.model, photo, class_index)
        np.testing.assert_allclose(explain.heatmap(predictor, photo, class_index), expected, atol=1e-4)
    top = int(predictor.logits(photo)[0].argmax())
    np.testing.assert_allclose(explain.heatmap(predictor, photo), _class_activation_map(predictor.model, photo, top),
                               atol=1e-4)


@needs_captum
def test_each_class_has_its_own_map_in_the_unit_range(predictor, photo):
    maps = [explain.heatmap(predictor, photo, c) for c in range(3)]
    for heat in maps:
        assert heat.shape == (SIZE, SIZE) and heat.dtype == np.float32
        assert heat.min() >= 0 and heat.max() == pytest.approx(1.0) and np.isfinite(heat).all()
    assert not np.allclose(maps[0], maps[1]) and not np.allclose(maps[1], maps[2])


@needs_captum
def test_the_model_is_left_as_it_was(predictor, photo):
    model = predictor.model.to(memory_format=torch.channels_last)
    for parameter in [*model.frozen_part.parameters(), *model.last_block.parameters()]:
        parameter.requires_grad_(False)  # nothing up to the heat-mapped block needs gradients
    model.train()  # even a model left in training mode keeps its batch-norm statistics ...
    model.frozen_part.eval()  # ... and its modes, mixed as in fine-tuning
    flags = [p.requires_grad for p in model.parameters()]
    modes = [m.training for m in model.modules()]
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    predictor.logits(photo)  # inference_mode elsewhere does not stop the gradients Grad-CAM needs
    model.train()
    model.frozen_part.eval()
    with torch.inference_mode():
        heat = explain.heatmap(predictor, photo, 2)
    assert [p.requires_grad for p in model.parameters()] == flags
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(b, buffers[name]) for name, b in model.named_buffers())
    model.eval()
    np.testing.assert_allclose(heat, _class_activation_map(model, photo, 2), atol=1e-4)


@needs_captum
def test_a_map_without_a_peak_is_zeros_not_nan(predictor, photo):
    with torch.no_grad():
        predictor.model.head.weight.zero_()
    heat = explain.heatmap(predictor, photo, 0)
    assert heat.shape == (SIZE, SIZE) and not heat.any()


@needs_captum
def test_a_class_index_outside_the_classes_is_refused(predictor, photo):
    with pytest.raises(SettingsError, match="class_index must be None or an int from 0 to 2"):
        explain.heatmap(predictor, photo, 3)


def test_overlay_covers_the_upright_photo(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side: upright it is 40 wide and 60 high
    Image.new("RGB", (60, 40), (200, 200, 200)).save(path, exif=exif)
    heat = np.zeros((8, 8), np.float32)
    heat[:, 4:] = 1.0  # hot right half
    assert explain.overlay(path, heat).size == (40, 60)
    assert np.array_equal(np.asarray(explain.overlay(path, heat, alpha=0.0)),
                          np.asarray(Image.open(path).transpose(Image.Transpose.ROTATE_270)))
    tinted = np.asarray(explain.overlay(path, heat, alpha=1.0)).astype(int)
    left, right = tinted[30, 2], tinted[30, 37]
    assert left[2] > left[0] and right[0] > right[2]  # cold is blue, hot is red
    with pytest.raises(SettingsError, match="alpha"):
        explain.overlay(path, heat, alpha=1.5)


def test_without_captum_the_error_says_which_extra_to_install(predictor, photo, monkeypatch):
    monkeypatch.setitem(sys.modules, "captum.attr", None)  # import fails as if captum were absent
    with pytest.raises(UnavailableError, match=r"pip install -e \.\[analysis\]"):
        explain.heatmap(predictor, photo)
