"""Image preprocessing presets: the eval resize and the training augmentation.

Photos are squashed to ``image_size`` x ``image_size`` (meters are already well framed, so the
whole picture is kept). Training adds zoom, angle, perspective, lighting and blur changes; no
horizontal flips, because mirrored digits and brand names do not occur in real photos.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from meterlib.run.parameters import NON_NEGATIVE, POSITIVE, Range, setting, share


def resize(image_size: int):
    """Squash-resize a PIL image to a square (a copy for an image already that size).

    Pillow's antialiased bilinear resize, which is what torchvision's ``Resize`` runs on a PIL
    image, called directly: serving an ONNX model then needs no PyTorch.
    """
    from PIL import Image

    def squash(picture):
        return picture.resize((image_size, image_size), Image.Resampling.BILINEAR)

    return squash


def normalised_pixels(pictures: Sequence, *, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Same-size RGB PIL images as one float32 array (n x 3 x H x W): pixels scaled to [0, 1], then (x - mean) / std.

    The array is a channels-last view (what PyTorch's CPU convolutions prefer); plain numpy
    arithmetic keeps PyTorch's thread pool out of it, whose wake-ups cost milliseconds per photo
    on a busy machine. The float32 steps are those of torchvision's ToTensor and Normalize, so
    the numbers are the same to the bit.
    """
    pixels = np.stack([np.asarray(picture, dtype=np.uint8) for picture in pictures])
    scaled = pixels.astype(np.float32) / np.float32(255)
    scaled -= np.asarray(mean, dtype=np.float32)
    scaled /= np.asarray(std, dtype=np.float32)
    return scaled.transpose(0, 3, 1, 2)


def to_tensor(mean: Sequence[float], std: Sequence[float]):
    """PIL image -> normalised float tensor (3 x H x W, contiguous)."""
    import torch

    def convert(picture):
        return torch.from_numpy(np.ascontiguousarray(normalised_pixels([picture], mean=mean, std=std)[0]))

    return convert


def eval_transform(*, image_size: int, mean: Sequence[float], std: Sequence[float]):
    """Deterministic preprocessing for validation, test and prediction."""
    from torchvision import transforms as T

    return T.Compose([resize(image_size), to_tensor(mean, std)])


@dataclass(frozen=True)
class Augment:
    """Strengths of the training augmentation; the training recipe holds their values."""

    crop_scale_min: float = setting(help="zoom: smallest crop area kept, as a share of the photo",
                                    range=share(open_low=True))
    rotation_deg: float = setting(help="angle: largest rotation either way, degrees", range=Range(0, 180))
    perspective: float = setting(help="angle: perspective distortion strength (0 to 1)", range=share())
    perspective_p: float = setting(help="share of photos distorted in perspective", range=share())
    brightness: float = setting(help="lighting: brightness jitter", range=NON_NEGATIVE)
    contrast: float = setting(help="lighting: contrast jitter", range=NON_NEGATIVE)
    saturation: float = setting(help="lighting: saturation jitter", range=NON_NEGATIVE)
    hue: float = setting(help="lighting: hue jitter", range=Range(0, 0.5))
    blur_p: float = setting(help="focus: share of photos blurred", range=share())
    blur_sigma_max: float = setting(help="focus: strongest Gaussian blur, pixels", range=POSITIVE)


def augmentation(strengths: Augment, *, image_size: int):
    """Random zoom, angle, perspective, lighting and blur on a square PIL image (no flips)."""
    from torchvision import transforms as T

    s = strengths
    steps = [T.RandomResizedCrop(image_size, scale=(s.crop_scale_min, 1.0), antialias=True)]
    if s.rotation_deg > 0:
        steps.append(T.RandomRotation(s.rotation_deg, interpolation=T.InterpolationMode.BILINEAR))
    if s.perspective > 0 and s.perspective_p > 0:
        steps.append(T.RandomPerspective(s.perspective, p=s.perspective_p))
    if max(s.brightness, s.contrast, s.saturation, s.hue) > 0:
        steps.append(T.ColorJitter(s.brightness, s.contrast, s.saturation, s.hue))
    if s.blur_p > 0 and s.blur_sigma_max > 0:
        # Kernel about 2*3 sigma wide, odd, as GaussianBlur requires.
        kernel = 2 * max(1, round(3 * s.blur_sigma_max)) + 1
        steps.append(T.RandomApply([T.GaussianBlur(kernel, sigma=(0.1, s.blur_sigma_max))], p=s.blur_p))
    return T.Compose(steps)


def train_transform(strengths: Augment, *, image_size: int, mean: Sequence[float], std: Sequence[float]):
    """Full training pipeline: squash-resize, augment, normalise."""
    from torchvision import transforms as T

    return T.Compose([resize(image_size), augmentation(strengths, image_size=image_size),
                      to_tensor(mean, std)])
