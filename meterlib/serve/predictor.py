"""Predict a meter type from photos with one model file: calibrated top-k, UNKNOWN flag, prediction set.

Everything comes from the checkpoint file or its ONNX export (weights, class names in order,
preprocessing, and the ``Calibration``: temperature, UNKNOWN threshold, conformal set thresholds);
nothing is read from folder listings.
Notebook 03 evaluates this same code: it fits a calibration, applies it with
``with_calibration`` and scores the answers of ``predictions_from_logits``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from meterlib.confidence.fitted import Calibration
from meterlib.data import photos
from meterlib.errors import DataError, ModelFileError
from meterlib.model import checkpoint, folding, inference
from meterlib.serve import batch, onnx_runtime

UNKNOWN = "UNKNOWN"
# One photo source (see photos.load_rgb) or an iterable of them.
Photos = Union[photos.PhotoSource, Iterable[photos.PhotoSource]]
NON_FINITE = "the model gave non-finite outputs (NaN or inf), so it has no answer for this photo"


@dataclass(frozen=True)
class Prediction:
    """One photo's answer: ``label`` is the top class, or UNKNOWN when confidence is below threshold."""

    label: str
    unknown: bool
    confidence: float  # calibrated probability of the top class
    top_classes: list[str]
    top_probabilities: list[float]  # calibrated
    prediction_set: list[str]  # classes that hold the true one with the calibrated coverage


@dataclass(frozen=True)
class Outcome:
    """One photo of a tolerant batch: its prediction, or why the photo could not be used."""

    source: str  # the photo's display name: the given name, else its path, else its place in the batch
    prediction: Prediction | None
    error: str | None  # the problem, e.g. "empty (0 bytes)"; None when predicted

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Predictor:
    """A trained classifier with its calibration, loaded from one checkpoint or its ONNX export.

    ``model`` is the PyTorch module of a checkpoint, or the ``onnx_runtime.OnnxModel`` of an export;
    both get the same preprocessing and give the same answers (see ``export.check``).
    """

    model: Any
    class_names: list[str]
    image_size: int
    mean: list[float]
    std: list[float]
    calibration: Calibration = Calibration()  # the default: uncalibrated
    device: Any = None
    gallery: dict | None = None  # training photos' features and thumbnails (see serve.gallery)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device=None) -> "Predictor":
        """A Predictor from a model file: an ONNX export (``.onnx``, run by ONNX Runtime) or a checkpoint.

        ``device`` applies to a checkpoint (PyTorch); an ONNX model runs on the CPU.
        """
        if Path(path).suffix.lower() == ".onnx":
            return cls.from_onnx(path)
        return cls.from_checkpoint(path, device=device)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, device=None) -> "Predictor":
        """Load the model and its calibration from a meterlib checkpoint."""
        content = checkpoint.load(path)
        return cls._from_fields(content, model=checkpoint.build_model(content, device=device, source=path),
                                device=device, gallery=content.get("gallery"))

    @classmethod
    def from_onnx(cls, path: str | os.PathLike, *, threads: int | None = None) -> "Predictor":
        """Load an exported ONNX model and the calibration in its metadata (needs the onnx extra)."""
        fields, model = onnx_runtime.load(path, threads=threads)
        return cls._from_fields(fields, model=model)

    @classmethod
    def _from_fields(cls, fields: Mapping, *, model, device=None, gallery=None) -> "Predictor":
        """A Predictor of ``model`` with the preprocessing and calibration of checked checkpoint fields."""
        return cls(model=model, class_names=list(fields["class_names"]), image_size=int(fields["image_size"]),
                   mean=list(fields["mean"]), std=list(fields["std"]),
                   calibration=Calibration.from_fields(fields), device=device, gallery=gallery)

    def with_calibration(self, calibration: Calibration) -> "Predictor":
        """The same model (shared, not copied) answering with another calibration."""
        return dataclasses.replace(self, calibration=calibration)

    def with_folded_batch_norms(self) -> "Predictor":
        """The same calibration on a copy of the model with its batch norms folded into the convolutions.

        Less CPU time per photo; the answers agree with the original's up to float rounding.
        An ONNX model is returned as it is: its batch norms were folded when it was exported.
        """
        if isinstance(self.model, onnx_runtime.OnnxModel):
            return self
        return dataclasses.replace(self, model=folding.fold_batch_norms(self.model))

    def logits(self, images: Photos, *, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Raw logits (n, classes) for one photo or many (paths, bytes, PIL images, arrays)."""
        batch_size = inference.positive_int("batch_size", batch_size)
        pictures = inference.load_resized(_as_list(images), image_size=self.image_size, progress=progress)
        return self._logits_of(pictures, batch_size=batch_size)

    def _logits_of(self, pictures: list, *, batch_size: int) -> np.ndarray:
        """Logits (n, classes) of decoded, squashed photos."""
        if isinstance(self.model, onnx_runtime.OnnxModel):
            return self.model.logits(pictures, image_size=self.image_size, mean=self.mean, std=self.std,
                                     batch_size=batch_size).astype(np.float64)
        result = inference.logits_for_images(self.model, pictures, image_size=self.image_size,
                                             mean=self.mean, std=self.std, batch_size=batch_size,
                                             device=self.device)
        return result.numpy().astype(np.float64)

    def probabilities(self, images: Photos, *, batch_size: int = 32) -> np.ndarray:
        """Calibrated class probabilities (n, classes), columns in ``class_names`` order."""
        return self.calibration.probabilities(self.logits(images, batch_size=batch_size))

    def predict_many(self, images: Photos, *, top_k: int = 3, batch_size: int = 32) -> list[Prediction]:
        """Predictions for one photo or many, batched; ``top_k`` beyond the class count lists every class."""
        top_k = inference.positive_int("top_k", top_k)
        items = _as_list(images)
        logits = self.logits(items, batch_size=batch_size)
        _refuse_non_finite(logits, names=batch.display_names(items))
        return self.predictions_from_logits(logits, top_k=top_k)

    def predict(self, image: photos.PhotoSource, *, top_k: int = 3) -> Prediction:
        """The prediction for one photo: a path, its bytes, a PIL image or an array."""
        return self.predict_many([image], top_k=top_k)[0]

    def predict_each(self, sources: Photos, *, names: Sequence[str] | None = None, top_k: int = 3,
                     batch_size: int = 32, progress: bool = False) -> list[Outcome]:
        """One Outcome per photo, in order: a photo that cannot be used gets its error, the others an answer.

        ``names`` (e.g. uploaded file names) label the photos in ``Outcome.source``. Photos are
        decoded and predicted ``batch_size`` at a time, so memory stays flat for any number of them.
        """
        from tqdm.auto import tqdm

        top_k = inference.positive_int("top_k", top_k)
        batch_size = inference.positive_int("batch_size", batch_size)
        items = _as_list(sources)
        labels = batch.display_names(items, names)
        outcomes: list[Outcome] = []
        with tqdm(total=len(items), desc="predict", unit="photo", disable=not progress) as bar:
            for start in range(0, len(items), batch_size):
                part = slice(start, start + batch_size)
                outcomes += self._outcomes(items[part], labels[part], top_k=top_k)
                bar.update(len(items[part]))
        return outcomes

    def _outcomes(self, items: list, labels: list[str], *, top_k: int) -> list[Outcome]:
        """Outcomes of one batch of photos."""
        decoded = batch.decode_each(items, labels, image_size=self.image_size)
        pictures = [picture for picture in decoded if not isinstance(picture, DataError)]
        logits = self._logits_of(pictures, batch_size=len(items))
        finite = _finite_rows(logits)
        answers = iter(self.predictions_from_logits(logits[finite], top_k=top_k))
        rows, outcomes = iter(finite), []
        for label, picture in zip(labels, decoded):
            if isinstance(picture, DataError):
                outcomes.append(Outcome(label, None, picture.problem))
            elif next(rows):
                outcomes.append(Outcome(label, next(answers), None))
            else:
                outcomes.append(Outcome(label, None, NON_FINITE))
        return outcomes

    def predictions_from_logits(self, logits, *, top_k: int = 3) -> list[Prediction]:
        """The answers for logits (n, classes) of this model: calibrated, UNKNOWN-flagged, with sets."""
        top_k = inference.positive_int("top_k", top_k)
        logits = np.asarray(logits, dtype=np.float64)
        if logits.ndim != 2 or logits.shape[1] != len(self.class_names):
            raise DataError(f"expected logits of shape (n, {len(self.class_names)}), got {logits.shape}")
        _refuse_non_finite(logits)
        probs = self.calibration.probabilities(logits)
        sets = self.calibration.prediction_sets(probs)
        unknowns = self.calibration.is_unknown(probs.max(axis=1))
        names = self.class_names
        predictions = []
        for row, members, unknown in zip(probs, sets, unknowns.tolist()):
            order = np.argsort(-row, kind="stable")
            top = order[:top_k]  # slicing clamps top_k to the class count
            predictions.append(Prediction(
                label=UNKNOWN if unknown else names[order[0]], unknown=unknown,
                confidence=float(row[order[0]]),
                top_classes=[names[i] for i in top], top_probabilities=[float(row[i]) for i in top],
                prediction_set=[names[i] for i in order if members[i]]))
        return predictions


def _finite_rows(logits: np.ndarray) -> np.ndarray:
    """One bool per row of logits (n, classes): whether all its values are finite."""
    return np.isfinite(logits).all(axis=1)


def _refuse_non_finite(logits: np.ndarray, *, names: Sequence[str] | None = None) -> None:
    """ModelFileError naming the first photo (``names``, else its logits row) whose logits are not finite."""
    bad = np.flatnonzero(~_finite_rows(logits))
    if bad.size:
        row = int(bad[0])
        raise ModelFileError(f"{names[row] if names is not None else f'logits row {row}'}: {NON_FINITE}")


def _as_list(images: Photos) -> list:
    """One photo source or an iterable of them, as a list."""
    # A dict is one (wrong) source, e.g. an ipywidgets upload entry, not a list of its keys.
    if isinstance(images, (*photos.PHOTO_TYPES, Mapping)) or not isinstance(images, Iterable):
        return [images]
    return list(images)
