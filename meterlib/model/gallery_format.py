"""The checkpoint's optional ``gallery`` field: a few training photos for the nearest-photo view.

``meterlib.serve.gallery`` builds it; ``checkpoint.load`` and ``checkpoint.write`` check it with
``problem``. Every key holds one entry per stored photo, in the same order.
"""

from __future__ import annotations

from typing import Any

# features: float tensor (photos x d), L2-normalised; labels: int64 class indices;
# thumbnails: JPEG files as 1-D uint8 tensors (a torch file stores bytes objects at about 1.4x);
# names: the photos' paths within their dataset, for display only
KEYS = ("features", "labels", "thumbnails", "names")


def problem(gallery: Any, *, n_classes: int) -> str:
    """What is wrong with a ``gallery`` field of a checkpoint with ``n_classes``; '' when it is absent or fine."""
    if gallery is None:
        return ""
    import torch  # here: a model without a gallery (an ONNX file) is checked without PyTorch

    if not isinstance(gallery, dict) or sorted(gallery) != sorted(KEYS):
        return f"must be a dict with the keys {', '.join(KEYS)}"
    features, labels = gallery["features"], gallery["labels"]
    if not (isinstance(features, torch.Tensor) and features.ndim == 2 and features.is_floating_point()):
        return "needs 'features' as a 2-D float tensor, one row per photo"
    rows = len(features)
    if not (isinstance(labels, torch.Tensor) and labels.dtype == torch.int64 and labels.shape == (rows,)):
        return f"needs 'labels' as an int64 tensor of {rows} class indices, one per feature row"
    if rows and not 0 <= int(labels.min()) <= int(labels.max()) < n_classes:
        return f"has 'labels' outside 0 to {n_classes - 1} (indices into class_names)"
    for key, what, valid in (("thumbnails", "1-D uint8 tensors (JPEG files)", _is_bytes_tensor),
                             ("names", "strings", lambda name: isinstance(name, str))):
        items = gallery[key]
        if not (isinstance(items, list) and len(items) == rows and all(map(valid, items))):
            return f"needs '{key}' as a list of {rows} {what}, one per feature row"
    return ""


def _is_bytes_tensor(value: Any) -> bool:
    import torch

    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.ndim == 1
