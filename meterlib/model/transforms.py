"""Image preprocessing presets: the eval resize and the training augmentation.

Photos are squashed to ``image_size`` x ``image_size`` (meters are already well framed, so the
whole picture is kept). Training adds zoom, angle, perspective, lighting and blur changes; no
horizontal flips, because mirrored digits and brand names do not occur in real photos.
"""

from __future__ import annotations

from typing import Sequence


def resize(image_size: int):
    """Squash-resize a PIL image to a square (a no-op copy for an image already that size)."""
    from torchvision import transforms as T

    return T.Resize((image_size, image_size), antialias=True)


def to_tensor(mean: Sequence[float], std: Sequence[float]):
    """PIL image -> normalised float tensor."""
    from torchvision import transforms as T

    return T.Compose([T.ToTensor(), T.Normalize(list(mean), list(std))])


def eval_transform(*, image_size: int, mean: Sequence[float], std: Sequence[float]):
    """Deterministic preprocessing for validation, test and prediction."""
    from torchvision import transforms as T

    return T.Compose([resize(image_size), to_tensor(mean, std)])


def augmentation(*, image_size: int, crop_scale_min: float = 0.7, rotation_deg: float = 10.0,
                 perspective: float = 0.2, perspective_p: float = 0.5, brightness: float = 0.3,
                 contrast: float = 0.3, saturation: float = 0.3, hue: float = 0.02,
                 blur_p: float = 0.3, blur_sigma_max: float = 1.5):
    """Random zoom, angle, perspective, lighting and blur on a square PIL image (no flips)."""
    from torchvision import transforms as T

    steps = [T.RandomResizedCrop(image_size, scale=(crop_scale_min, 1.0), antialias=True)]
    if rotation_deg > 0:
        steps.append(T.RandomRotation(rotation_deg, interpolation=T.InterpolationMode.BILINEAR))
    if perspective > 0 and perspective_p > 0:
        steps.append(T.RandomPerspective(perspective, p=perspective_p))
    if max(brightness, contrast, saturation, hue) > 0:
        steps.append(T.ColorJitter(brightness, contrast, saturation, hue))
    if blur_p > 0 and blur_sigma_max > 0:
        # Kernel about 2*3 sigma wide, odd, as GaussianBlur requires.
        kernel = 2 * max(1, round(3 * blur_sigma_max)) + 1
        steps.append(T.RandomApply([T.GaussianBlur(kernel, sigma=(0.1, blur_sigma_max))], p=blur_p))
    return T.Compose(steps)


def train_transform(*, image_size: int, mean: Sequence[float], std: Sequence[float], **strengths):
    """Full training pipeline: squash-resize, augment (``strengths`` as in :func:`augmentation`), normalise."""
    from torchvision import transforms as T

    return T.Compose([resize(image_size), augmentation(image_size=image_size, **strengths),
                      to_tensor(mean, std)])
