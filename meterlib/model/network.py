"""The classifier's parts, and one batched pass through any of them.

Every classifier is ``nn.Sequential(frozen_part, last_block, pool, head)`` (``backbones.build_classifier``).
Training runs the frozen part once per photo and view and caches its output; the parts after it
are what each epoch runs on that cache, and what serving runs after the frozen part.
"""

from __future__ import annotations


def tail(model):
    """The last block, pool and head: frozen-part activations in, logits out."""
    return model[1:]


def pooled(model):
    """The last block and pool: frozen-part activations in, the features the head reads out."""
    return model[1:3]


def features(model):
    """The classifier without its head: preprocessed photos in, pooled features out."""
    return model[:3]


def to_device(x, device):
    """Move a batch to ``device`` as float32; image-like (4-D) batches go channels-last, which conv kernels prefer."""
    import torch

    x = x.to(device, dtype=torch.float32, non_blocking=True)  # bfloat16 activations: widened exactly
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def batched(part, tensors, *, batch_size: int, device):
    """``part`` applied to ``tensors`` in batches on ``device``, without gradients; a CPU tensor."""
    import torch

    # no_grad rather than inference_mode: cached outputs later feed layers that autograd tracks.
    with torch.no_grad():
        return torch.cat([part(to_device(tensors[start:start + batch_size], device)).cpu()
                          for start in range(0, len(tensors), batch_size)])
