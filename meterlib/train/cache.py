"""The frozen-part cache: the frozen part's activations, computed once per augmented view.

The backbone's frozen part (``model.frozen_part``) never changes and runs in eval mode, so its
output for a given input never changes either. Each augmented view of the training set therefore
goes through it once; every epoch of both phases then only runs ``last_block`` (phase 2) or just
the head (phase 1, on pooled features) on those cached activations. ``views`` sets how many
different augmented versions of each photo are cached; epoch ``e`` uses view ``e % views``.

The activations are kept in the precision the frozen part ran in (bfloat16 halves the cache) and
widened to float32 one batch at a time where they are used (``network.to_device``): widening is exact, so
the layers after the frozen part compute in float32 on the same numbers either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from meterlib.model import folding, network, transforms
from meterlib.train.recipe import TrainConfig

BATCH_SIZE = 64  # photos per pass through the frozen part
CPUINFO = Path("/proc/cpuinfo")  # Linux's list of CPU flags; other systems have none and keep float32
# AVX512-BF16 and AMX-BF16 compute in bfloat16; AVX-512 alone only emulates it, slower than float32.
NATIVE_BFLOAT16_FLAGS = {"avx512_bf16", "amx_bf16"}


def native_bfloat16() -> bool:
    """Whether this CPU computes in bfloat16 natively: it lists the flag avx512_bf16 or amx_bf16."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return False
    flags = {flag for line in text.splitlines() if line.startswith("flags")
             for flag in line.partition(":")[2].split()}
    return bool(flags & NATIVE_BFLOAT16_FLAGS)


def uses_bfloat16(precision: str, device) -> bool:
    """Whether the frozen part runs in bfloat16: asked for, or 'auto' on a CPU with native bfloat16.

    Such CPUs run the frozen part about twice as fast in bfloat16; its activations differ from
    float32 ones by rounding only (about 3 significant digits). GPUs are fast enough in float32.
    """
    import torch

    if precision != "auto":
        return precision == "bfloat16"
    return torch.device(device).type == "cpu" and native_bfloat16()


def frozen_activations(frozen_part, images: Sequence, transform, *, batch_size: int, device,
                       workers: int = 0, precision: str = "float32", progress: str | None = None):
    """Output of the frozen part for each PIL image after ``transform`` (one random draw per image).

    The output is bfloat16 when the frozen part ran in bfloat16 (see ``uses_bfloat16``), else
    float32. ``progress`` labels a progress bar; ``None`` shows none.
    """
    import torch
    from tqdm.auto import tqdm

    device = torch.device(device)
    loader = torch.utils.data.DataLoader(_Transformed(images, transform), batch_size=batch_size,
                                         num_workers=workers, shuffle=False)
    folded = folding.fold_batch_norms(frozen_part)
    chunks = []
    low = uses_bfloat16(precision, device)
    dtype = torch.bfloat16 if low else torch.float32
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=low):
        for batch in tqdm(loader, desc=progress, disable=progress is None, leave=False):
            chunks.append(folded(network.to_device(batch, device)).to(dtype).cpu())
    return torch.cat(chunks)


class _Transformed:
    """Indexable view of images through a transform (a map-style dataset for DataLoader)."""

    def __init__(self, images, transform):
        self.images, self.transform = images, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.transform(self.images[index])


def augmented_activations(frozen_part, images: Sequence, *, cfg: TrainConfig, mean, std, device,
                          workers: int = 0, progress: bool = False) -> list:
    """The frozen part's output for ``cfg.views`` views of the training images."""
    augment = transforms.train_transform(cfg.augment, image_size=cfg.image_size, mean=mean, std=std)
    clean = transforms.eval_transform(image_size=cfg.image_size, mean=mean, std=std)
    return [frozen_activations(frozen_part, images, clean if cfg.clean_view and view == 0 else augment,
                               batch_size=BATCH_SIZE, device=device, workers=workers,
                               precision=cfg.frozen_precision,
                               progress=f"view {view + 1}/{cfg.views}" if progress else None)
            for view in range(cfg.views)]


def clean_activations(frozen_part, images: Sequence, *, cfg: TrainConfig, mean, std, device,
                      workers: int = 0, progress: str | None = None):
    """The frozen part's output for un-augmented images (as the model sees them later); ``None`` for none.

    ``progress`` labels a progress bar; ``None`` shows none.
    """
    if not len(images):
        return None
    return frozen_activations(frozen_part, images,
                              transforms.eval_transform(image_size=cfg.image_size, mean=mean, std=std),
                              batch_size=BATCH_SIZE, device=device, workers=workers,
                              precision=cfg.frozen_precision, progress=progress)
