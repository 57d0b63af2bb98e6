"""Small photos of random pixels for tests that need real files but not real meters."""

from pathlib import Path

import numpy as np
from PIL import Image


def save(folder: Path, count: int, *, width: int, height: int, seed: int = 0, name: str = "p{}.png",
         high: int = 255) -> list[Path]:
    """``count`` PNG files of random RGB pixels below ``high``, named ``name.format(i)``, in ``folder``."""
    rng, files = np.random.default_rng(seed), []
    for i in range(count):
        files.append(folder / name.format(i))
        Image.fromarray(rng.integers(0, high, (height, width, 3), dtype=np.uint8)).save(files[-1])
    return files
