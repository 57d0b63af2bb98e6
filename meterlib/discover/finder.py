"""One call from photos to candidate new types: their features under a model, clustered with its training photos."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from meterlib.discover import clustering, inputs
from meterlib.errors import ModelFileError
from meterlib.serve.predictor import Predictor


@dataclass(frozen=True)
class Found:
    """The photos' features (the unreadable ones apart) and where clustering put each read one."""

    features: inputs.Features
    clusters: clustering.Clusters


def find_new_types(predictor: Predictor, files: Sequence[Path], *, source: str | os.PathLike = "the model",
                   batch_size: int = 32, progress: bool = False,
                   settings: clustering.Settings = clustering.DEFAULT_SETTINGS) -> Found:
    """Cluster ``files`` with ``predictor``'s training photos (its ``reference_features``, from ``source``)."""
    reference = predictor.reference
    if reference is None:
        raise ModelFileError(f"{source}: has no reference_features, the training photos' features that discovery "
                             "clusters with (an older model file); discovery needs a model trained by this "
                             "version's notebook 02")
    features = inputs.features(predictor, files, batch_size=batch_size, progress=progress)
    clusters = clustering.find_clusters(features.values, reference["features"].float().numpy(),
                                        reference["labels"].numpy(), settings=settings)
    return Found(features, clusters)
