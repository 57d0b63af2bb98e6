"""Where the model looked: a Grad-CAM heat-map of one photo, and that map laid over the photo.

Grad-CAM weighs the last block's activation maps by the mean gradient of one class's score.
For meterlib's classifiers (global average pooling, then one linear layer) that is the classic
class activation map ReLU(sum_k W[c, k] * A_k) up to a positive factor. Needs the ``analysis``
extra (captum, matplotlib).
"""

from __future__ import annotations

import importlib
import numbers

import numpy as np
from PIL import Image

from meterlib.data import photos
from meterlib.errors import DataError, SettingsError, UnavailableError
from meterlib.model import inference, network, transforms

COLORMAP = "jet"  # matplotlib colour map of the overlay: blue (cold) to red (hot)


def heatmap(predictor, image: photos.PhotoSource, class_index: int | None = None) -> np.ndarray:
    """Grad-CAM of ``class_index`` (default: the top class) for one photo: float32, image_size square, in [0, 1]."""
    import torch

    attr = _optional("captum.attr")
    _check_class_index(class_index, len(predictor.class_names))
    model, size = predictor.model, predictor.image_size
    picture = inference.load_resized([image], image_size=size)[0]
    prepare = transforms.eval_transform(image_size=size, mean=predictor.mean, std=predictor.std)
    after_frozen_part = network.tail(model)  # all Grad-CAM's gradients pass through it
    modes = [(module, module.training) for module in model.modules()]  # may be mixed, as in fine-tuning
    model.eval()  # batch norms use their running statistics and leave them alone
    try:
        # Grad-CAM needs autograd even when called under no_grad or inference_mode.
        with torch.inference_mode(False), torch.enable_grad():
            batch = prepare(picture).unsqueeze(0).to(next(model.parameters()).device)
            with torch.no_grad():
                frozen = model.frozen_part(batch.contiguous(memory_format=torch.channels_last))
                scores = after_frozen_part(frozen)[0]
            target = int(scores.argmax()) if class_index is None else int(class_index)
            # Frozen weights need no gradients; the block's output still needs a graph to differentiate.
            frozen.requires_grad_(True)
            cam = attr.LayerGradCam(after_frozen_part, model.last_block).attribute(
                frozen, target=target, relu_attributions=True)
            upsampled = attr.LayerAttribution.interpolate(cam.detach(), (size, size), "bilinear")
    finally:
        for module, training in modes:
            module.training = training
    return _unit_range(upsampled[0, 0].float().cpu().numpy())


def overlay(image: photos.PhotoSource, heat: np.ndarray, *, alpha: float = 0.45) -> Image.Image:
    """The heat-map stretched over the upright RGB photo (the model squashed the whole photo) and blended."""
    if not 0 <= alpha <= 1:
        raise SettingsError(f"alpha must lie in [0, 1], got {alpha!r}")
    heat = np.asarray(heat, dtype=np.float32)
    if heat.ndim != 2 or heat.size == 0:
        raise DataError(f"heat must be a non-empty 2-D map, got shape {heat.shape}")
    photo = photos.load_rgb(image)
    stretched = np.asarray(Image.fromarray(heat).resize(photo.size, Image.Resampling.BILINEAR))
    colours = _optional("matplotlib").colormaps[COLORMAP](np.clip(stretched, 0, 1))[..., :3]
    tinted = Image.fromarray(np.round(colours * 255).astype(np.uint8))
    return Image.blend(photo, tinted, alpha)


def _check_class_index(value, n_classes: int) -> None:
    """Refuse a ``class_index`` that is neither None nor one of the model's classes."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)
                              or not 0 <= value < n_classes):
        raise SettingsError(f"class_index must be None or an int from 0 to {n_classes - 1}, got {value!r}")


def _unit_range(heat: np.ndarray) -> np.ndarray:
    """A non-negative map scaled so that its peak is 1; a map without a peak becomes zeros."""
    heat = np.nan_to_num(heat, nan=0.0, posinf=0.0, neginf=0.0).clip(min=0)
    peak = heat.max()
    return (heat / peak if peak > 0 else np.zeros_like(heat)).astype(np.float32)


def _optional(module: str):
    """Import a module of the ``analysis`` extra, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UnavailableError(f"{module.split('.')[0]} is not installed; the heat-map needs the analysis "
                                "extra: pip install -e .[analysis]") from None
