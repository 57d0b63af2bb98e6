"""The training photos nearest to an upload, in the model's own feature space.

Notebook 02 stores a gallery in the checkpoint: for up to ``per_class`` training photos of each
class, the pooled features the head reads (``model[:3]``, L2-normalised, float16), the label, a
small JPEG thumbnail and the file name. Beside an answer the panel shows the stored photos of
the predicted class and the runner-up that look most like the upload to the model.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from meterlib.data import photos
from meterlib.errors import DataError, ModelFileError, SettingsError
from meterlib.model import checkpoint, inference

MAX_PHOTOS = 2000  # per_class shrinks for datasets with many classes, so the checkpoint stays small
JPEG_QUALITY = 85


@dataclass(frozen=True)
class Neighbour:
    """A stored training photo and how alike it and the upload are to the model."""

    class_name: str
    name: str  # the photo's path within its dataset, for display only
    similarity: float  # cosine similarity of the pooled features, -1 to 1
    thumbnail: Image.Image


def build(model, files: Sequence[str | os.PathLike], labels: Sequence[int], *, spec: checkpoint.ModelSpec,
          root: str | os.PathLike | None = None, per_class: int = 12, thumb_side: int = 96,
          seed: int = 0) -> dict:
    """A checkpoint's ``gallery`` from training photos and their class indices (into ``spec.class_names``).

    Up to ``per_class`` photos per class are drawn with ``seed`` (fewer when the classes would
    hold more than MAX_PHOTOS); names are paths relative to ``root`` (else file names).
    """
    import torch

    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(files) != len(labels) or not len(labels):
        raise DataError(f"need one label per photo and at least one photo, got {len(files)} photos "
                        f"and {len(labels)} labels")
    n_classes = len(spec.class_names)
    if labels.min() < 0 or labels.max() >= n_classes:
        raise DataError(f"labels must be class indices from 0 to {n_classes - 1}")
    per_class = min(inference.positive_int("per_class", per_class), max(1, MAX_PHOTOS // n_classes))
    thumb_side = inference.positive_int("thumb_side", thumb_side)
    chosen = _draw(labels, per_class=per_class, seed=seed)
    paths = [Path(files[i]) for i in chosen]
    pictures = inference.load_resized(paths, image_size=spec.image_size)
    return {"features": torch.from_numpy(unit_features(model, pictures, spec)).half(),
            "labels": torch.from_numpy(labels[chosen]),
            "thumbnails": [_jpeg(photos.load_thumbnail(path, max_side=thumb_side)) for path in paths],
            "names": [_display_name(path, root) for path in paths]}


def features(predictor, images) -> np.ndarray:
    """L2-normalised pooled features (n x d, float32) of one photo or a list, as ``predictor``'s model sees them."""
    sources = [images] if isinstance(images, photos.PHOTO_TYPES) else list(images)
    pictures = inference.load_resized(sources, image_size=predictor.image_size)
    return unit_features(predictor.model, pictures, predictor, device=predictor.device)


def nearest(predictor, image: photos.PhotoSource, classes: Sequence[str], *,
            k: int = 3) -> dict[str, list[Neighbour]]:
    """For each class named, its ``k`` stored training photos most like ``image`` (cosine similarity), best first."""
    gallery = predictor.gallery
    if gallery is None:
        raise ModelFileError("this checkpoint has no gallery of training photos; retrain with notebook 02 "
                             "to store one")
    k = inference.positive_int("k", k)
    classes = [classes] if isinstance(classes, str) else list(classes)
    unknown = [name for name in classes if name not in predictor.class_names]
    if unknown:
        raise SettingsError(f"unknown class {unknown[0]!r}: not one of the model's "
                            f"{len(predictor.class_names)} classes")
    stored = gallery["features"].float().numpy()
    query = features(predictor, [image])[0]
    if stored.shape[1] != len(query):
        raise ModelFileError(f"the gallery's features have {stored.shape[1]} values, the model's {len(query)}")
    similarity = stored @ query
    labels = gallery["labels"].numpy()
    found = {}
    for name in classes:
        rows = np.flatnonzero(labels == predictor.class_names.index(name))
        best = rows[np.argsort(-similarity[rows], kind="stable")[:k]]
        found[name] = [Neighbour(class_name=name, name=gallery["names"][i], similarity=float(similarity[i]),
                                 thumbnail=photos.load_rgb(gallery["thumbnails"][i].numpy().tobytes()))
                         for i in best]
    return found


def _draw(labels: np.ndarray, *, per_class: int, seed: int) -> np.ndarray:
    """Indices of up to ``per_class`` photos of each class, drawn at random with ``seed``, in input order."""
    rng = np.random.default_rng(seed)
    drawn = [rng.permutation(np.flatnonzero(labels == label))[:per_class] for label in np.unique(labels)]
    return np.sort(np.concatenate(drawn))


def unit_features(model, pictures: list, preprocessing, *, device=None) -> np.ndarray:
    """Pooled features of squashed photos, each scaled to length 1 (``preprocessing``: image_size, mean, std)."""
    import torch

    if device is None:  # stay where the model is (the training device in notebook 02)
        device = next(model.parameters()).device
    raw = inference.features_for_images(model, pictures, image_size=preprocessing.image_size,
                                        mean=preprocessing.mean, std=preprocessing.std, device=device)
    return torch.nn.functional.normalize(raw, dim=1).numpy()


def _jpeg(picture: Image.Image):
    """The picture as a JPEG file in a uint8 tensor."""
    import torch

    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def _display_name(path: Path, root: str | os.PathLike | None) -> str:
    if root is not None and path.is_relative_to(root):
        return path.relative_to(root).as_posix()
    return path.name
