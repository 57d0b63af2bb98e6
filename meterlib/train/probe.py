"""The linear-probe baseline: logistic regression on the pretrained backbone's frozen features.

The features are computed in float32 on every CPU, so the baseline means the same everywhere:
activations cached by a bfloat16 run are not reused (see ``frozen_features``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from meterlib.model import backbones, inference, network, transforms
from meterlib.train import cache

PRECISION = "float32"  # of the frozen part's pass; bfloat16 would make the baseline differ by CPU


@dataclass
class ProbeResult:
    """A fitted probe and its scores."""

    classifier: object
    C: float
    val_accuracy: float
    test_accuracy: float


def frozen_features(model, images: Sequence, *, image_size: int, mean, std, device=None,
                    batch_size: int = 64, activations=None) -> np.ndarray:
    """Pooled features of the (not fine-tuned) backbone for PIL images, no augmentation, in float32.

    ``activations``: the frozen part's output for these images when already at hand; float32 ones
    skip that pass, others (bfloat16) are computed again in float32.
    """
    import torch

    device = torch.device(device) if device is not None else inference.default_device()
    if not len(images):
        return np.zeros((0, model.head.in_features), dtype=np.float32)
    model = model.to(device).eval()
    if activations is None or activations.dtype != getattr(torch, PRECISION):
        activations = cache.frozen_activations(model.frozen_part, images, transforms.eval_transform(
            image_size=image_size, mean=mean, std=std), batch_size=batch_size, device=device,
            precision=PRECISION)
    return network.batched(network.pooled(model), activations, batch_size=batch_size, device=device).numpy()


def fit(train_x: np.ndarray, train_y: Sequence[str], *, val_x: np.ndarray | None = None,
        val_y: Sequence[str] | None = None, Cs: Sequence[float] = (0.01, 0.1, 1.0, 10.0),
        seed: int = 0):
    """Standardised logistic regression; C picked on val when there is one (else C=1). Returns (clf, C)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def make(C):
        return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))

    if val_x is None or not len(val_x):
        return make(1.0).fit(train_x, train_y), 1.0
    scored = []
    for C in Cs:
        clf = make(C).fit(train_x, train_y)
        scored.append((clf.score(val_x, val_y), -C, clf))  # ties: the stronger regularisation
    best = max(scored, key=lambda item: item[:2])
    return best[2], -best[1]


def run(backbone: str, images: dict, classes: dict, *, image_size: int, seed: int = 0,
        device=None, weights_path=None, activations: dict | None = None) -> ProbeResult:
    """Fit and score the probe on ``images``/``classes`` dicts keyed by split (train, val, test).

    ``activations``: the pretrained frozen part's output for the un-augmented photos of some splits
    (``TrainResult.clean_activations``); the other splits, and all of them when those are not
    float32, go through the frozen part.
    """
    model = backbones.build_classifier(backbone, 1, weights_path=weights_path)
    mean, std = backbones.normalisation(backbone)
    given = activations or {}
    feats = {split: frozen_features(model, images.get(split, []), image_size=image_size, mean=mean,
                                    std=std, device=device, activations=given.get(split))
             for split in ("train", "val", "test")}
    clf, C = fit(feats["train"], classes["train"], val_x=feats["val"], val_y=classes.get("val"), seed=seed)

    def score(split):
        return float(clf.score(feats[split], classes[split])) if len(feats[split]) else float("nan")

    return ProbeResult(classifier=clf, C=C, val_accuracy=score("val"), test_accuracy=score("test"))
