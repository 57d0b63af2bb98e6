"""How good a photo is to judge: brightness, contrast and sharpness, measured alike in 01's audit and in serving."""

from __future__ import annotations

import numpy as np
from PIL import Image

# Quality is measured on a copy this large, so scores compare across photo sizes.
QUALITY_SIDE = 256


def quality(image: Image.Image) -> dict[str, float]:
    """Brightness and contrast (0 to 1) and sharpness of a PIL image, on a copy of at most QUALITY_SIDE pixels."""
    if max(image.size) > QUALITY_SIDE:
        image = image.copy()
        image.thumbnail((QUALITY_SIDE, QUALITY_SIDE), Image.Resampling.BILINEAR)
    gray = np.asarray(image.convert("L"), dtype=np.float64)
    return {"brightness": gray.mean() / 255, "contrast": gray.std() / 255, "sharpness": _laplacian_variance(gray)}


def _laplacian_variance(gray: np.ndarray) -> float:
    # Variance of the 4-neighbour Laplacian: low when edges are soft (defocus or motion blur).
    if min(gray.shape) < 3:
        return 0.0
    lap = (gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:]
           - 4 * gray[1:-1, 1:-1])
    return float(lap.var())
