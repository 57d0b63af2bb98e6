"""The training photos' features that the unseen-type score compares a photo with, and the network that does.

Notebook 02 stores ``reference_features`` in the checkpoint (its format: ``field_formats.reference_problem``):
the pooled features the head reads (L2-normalised, float16) of up to ``MAX_PHOTOS`` training photos,
their class indices and ``k``.
``Scoring`` wraps the classifier so that one pass gives the logits, the cosine similarity to the
k-th nearest reference photo and that photo's class; PyTorch serving runs it, and the ONNX export
is this same module, so both runtimes compute the score alike.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from meterlib.errors import DataError
from meterlib.model import checkpoint, gallery, inference, network

MAX_PHOTOS = 4000  # drawn at random beyond this, so the checkpoint stays small (about 4 MB at 512 values)
K = 1  # the nearest photo: measured best of k = 1, 5, 10, 50 (benchmarks/bench_unseen.py)
OUTPUTS = ("logits", "similarity", "nearest_class")  # what Scoring gives, in order (the ONNX outputs too)


def build(model, files: Sequence[str | os.PathLike], labels: Sequence[int], *, spec: checkpoint.ModelSpec,
          k: int = K, seed: int = 0) -> dict:
    """A checkpoint's ``reference_features`` from training photos and their class indices (into ``spec.class_names``)."""
    import torch

    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(files) != len(labels) or not len(labels):
        raise DataError(f"need one label per photo and at least one photo, got {len(files)} photos "
                        f"and {len(labels)} labels")
    k = min(inference.positive_int("k", k), len(labels))
    chosen = np.sort(np.random.default_rng(seed).permutation(len(labels))[:MAX_PHOTOS])
    pictures = inference.load_resized([files[i] for i in chosen], image_size=spec.image_size)
    return {"features": torch.from_numpy(gallery.unit_features(model, pictures, spec)).half(),
            "labels": torch.from_numpy(labels[chosen]), "k": k}


def scoring(model, reference: dict):
    """``model`` wrapped to give (logits, similarity to the k-th nearest reference photo, that photo's class)."""
    import torch

    class Scoring(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features, self.head = network.features(model), model[3]
            self.register_buffer("reference", reference["features"].float().T.contiguous())  # d x m
            self.register_buffer("reference_labels", reference["labels"].clone())
            self.k = int(reference["k"])

        def forward(self, x):
            pooled = self.features(x)
            similarity = torch.nn.functional.normalize(pooled, dim=1) @ self.reference
            values, rows = similarity.topk(self.k, dim=1)
            return self.head(pooled), values[:, -1], self.reference_labels[rows[:, -1]]

    return Scoring().eval()
