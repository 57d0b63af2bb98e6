"""Predict a meter type from photos with one model file: calibrated top-k, UNKNOWN flag, prediction set.

Everything comes from the checkpoint file or its ONNX export (weights, class names in order,
preprocessing, the training photos' reference features, and the ``Calibration``: temperature,
UNKNOWN threshold, conformal set thresholds, the unseen-type rule and the photo limits); nothing is
read from folder listings.
An answer that names no type says why (``Prediction.reason``): ``poor_photo`` (take it again),
``unseen_type`` (far from every known type) or ``unsure`` (below the UNKNOWN threshold), checked
in that order.
Notebook 03 evaluates this same code: it fits a calibration, applies it with
``with_calibration`` and scores the answers of ``predictions``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from meterlib.confidence.fitted import Calibration
from meterlib.data import photos
from meterlib.errors import DataError, ModelFileError
from meterlib.model import checkpoint, folding, inference, reference
from meterlib.serve import batch, onnx_runtime

UNKNOWN = "UNKNOWN"
# Why an answer names no type (Prediction.reason), in the order they are checked.
POOR_PHOTO, UNSEEN_TYPE, UNSURE = "poor_photo", "unseen_type", "unsure"
REASONS = (POOR_PHOTO, UNSEEN_TYPE, UNSURE)
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
    reason: str | None = None  # one of REASONS when the answer is UNKNOWN, else None
    detail: str = ""  # the reason in words, with its numbers (e.g. the two look-alikes an unsure photo is torn between)
    unseen_p: float | None = None  # unseen-type p-value (low: unlike every known type); None: not available


@dataclass(frozen=True)
class Evidence:
    """What the model gives for photos, before any calibration: logits, the unseen-type similarity, quality."""

    logits: np.ndarray  # (n, classes)
    similarity: np.ndarray | None = None  # (n,) cosine similarity to the k-th nearest training photo
    nearest_class: np.ndarray | None = None  # (n,) class index of that training photo
    quality: list[dict] | None = None  # per photo: data.quality's measures and short_side

    def __len__(self) -> int:
        return len(self.logits)

    def rows(self, keep) -> "Evidence":
        """The evidence of the photos selected by ``keep`` (a boolean mask or indices)."""
        keep = np.arange(len(self))[keep]
        pick = lambda values: None if values is None else np.asarray(values)[keep]  # noqa: E731
        return Evidence(self.logits[keep], pick(self.similarity), pick(self.nearest_class),
                        None if self.quality is None else [self.quality[i] for i in keep])


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
    gallery: dict | None = None  # training photos' features and thumbnails (see model.gallery)
    reference: dict | None = None  # training photos' features for the unseen-type score (see model.reference)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device=None, threads: int | None = None) -> "Predictor":
        """A Predictor from a model file: an ONNX export (``.onnx``, run by ONNX Runtime) or a checkpoint.

        ``device`` applies to a checkpoint (PyTorch); an ONNX model runs on the CPU, on ``threads``
        threads (default: ``machine.usable_cpus``).
        """
        if Path(path).suffix.lower() == ".onnx":
            return cls.from_onnx(path, threads=threads)
        return cls.from_checkpoint(path, device=device)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, device=None) -> "Predictor":
        """Load the model and its calibration from a meterlib checkpoint."""
        content = checkpoint.load(path)
        return cls._from_fields(content, model=checkpoint.build_model(content, device=device, source=path),
                                device=device, gallery=content.get("gallery"),
                                reference=content.get("reference_features"))

    @classmethod
    def from_onnx(cls, path: str | os.PathLike, *, threads: int | None = None) -> "Predictor":
        """Load an exported ONNX model and the calibration in its metadata (needs the onnx extra)."""
        fields, model = onnx_runtime.load(path, threads=threads)
        return cls._from_fields(fields, model=model)

    @classmethod
    def _from_fields(cls, fields: Mapping, *, model, device=None, gallery=None, reference=None) -> "Predictor":
        """A Predictor of ``model`` with the preprocessing and calibration of checked checkpoint fields.

        A calibrated model file without what the unseen-type score needs (one from before it) still
        predicts; a warning says once that ``unseen_type`` is unavailable.
        """
        predictor = cls(model=model, class_names=list(fields["class_names"]), image_size=int(fields["image_size"]),
                        mean=list(fields["mean"]), std=list(fields["std"]),
                        calibration=Calibration.from_fields(fields), device=device, gallery=gallery,
                        reference=reference)
        if fields.get("conformal_quantile") is not None and predictor.unseen_type_note:  # released by 03
            warnings.warn(predictor.unseen_type_note, stacklevel=3)
        return predictor

    @property
    def has_similarity(self) -> bool:
        """Whether the model gives the similarity to the nearest training photos (reference features)."""
        if isinstance(self.model, onnx_runtime.OnnxModel):
            return self.model.has_similarity
        return self.reference is not None

    @property
    def unseen_type_note(self) -> str:
        """Why this model cannot flag ``unseen_type`` (to say once); '' when it can."""
        if not self.has_similarity:
            return ("unseen_type is unavailable: this model file has no reference features of its training "
                    "photos (it predates them; retrain with notebook 02); new types are refused only when unsure")
        if self.calibration.unseen_type is None:
            return ("unseen_type is unavailable: this model file has no unseen-type calibration (notebook 03 fits "
                    "one on val photos); new types are refused only when unsure")
        return ""

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
        return self.evidence(images, batch_size=batch_size, progress=progress).logits

    def evidence(self, images: Photos, *, batch_size: int = 32, progress: bool = False) -> Evidence:
        """Logits, unseen-type similarity and photo quality for one photo or many; ``predictions`` answers from it."""
        batch_size = inference.positive_int("batch_size", batch_size)
        measured = inference.load_resized(_as_list(images), image_size=self.image_size, progress=progress,
                                          measure=True)
        return self._evidence_of(measured, batch_size=batch_size)

    def _evidence_of(self, measured: list, *, batch_size: int) -> Evidence:
        """The Evidence of decoded photos (``inference.Measured``)."""
        if not measured:
            empty = np.empty(0)
            return Evidence(np.empty((0, len(self.class_names))),
                            *((empty, empty.astype(np.int64)) if self.has_similarity else (None, None)), [])
        pictures = [item.picture for item in measured]
        preprocessing = dict(image_size=self.image_size, mean=self.mean, std=self.std, batch_size=batch_size)
        if isinstance(self.model, onnx_runtime.OnnxModel):
            outputs = self.model.outputs(pictures, **preprocessing)
        else:
            outputs = [part.numpy() for part in
                       inference.outputs_for_images(self._network, pictures, device=self.device, **preprocessing)]
        similarity, nearest = (outputs[1].astype(np.float64), outputs[2].astype(np.int64)) \
            if len(outputs) == len(reference.OUTPUTS) else (None, None)
        return Evidence(outputs[0].astype(np.float64), similarity, nearest, [item.quality for item in measured])

    @functools.cached_property
    def _network(self):
        """The PyTorch module to run: the classifier, wrapped to score against the reference features if any.

        Built once per Predictor (the wrapper holds a float32 copy of the features).
        """
        return reference.scoring(self.model, self.reference) if self.reference is not None else self.model

    def probabilities(self, images: Photos, *, batch_size: int = 32) -> np.ndarray:
        """Calibrated class probabilities (n, classes), columns in ``class_names`` order."""
        return self.calibration.probabilities(self.logits(images, batch_size=batch_size))

    def predict_many(self, images: Photos, *, top_k: int = 3, batch_size: int = 32) -> list[Prediction]:
        """Predictions for one photo or many, batched; ``top_k`` beyond the class count lists every class."""
        top_k = inference.positive_int("top_k", top_k)
        items = _as_list(images)
        evidence = self.evidence(items, batch_size=batch_size)
        _refuse_non_finite(evidence.logits, names=batch.display_names(items))
        return self.predictions(evidence, top_k=top_k)

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
        decoded = batch.decode_each(items, labels, image_size=self.image_size, measure=True)
        evidence = self._evidence_of([item for item in decoded if not isinstance(item, DataError)],
                                     batch_size=len(items))
        finite = _finite_rows(evidence.logits)
        answers = iter(self.predictions(evidence.rows(finite), top_k=top_k))
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
        """The answers for logits (n, classes) alone: calibrated, UNKNOWN-flagged, with sets, never ``unseen_type``."""
        return self.predictions(Evidence(np.asarray(logits, dtype=np.float64)), top_k=top_k)

    def predictions(self, evidence: Evidence, *, top_k: int = 3) -> list[Prediction]:
        """The answers for the model's evidence on photos: calibrated, with sets, and a reason on each UNKNOWN."""
        top_k = inference.positive_int("top_k", top_k)
        logits = np.asarray(evidence.logits, dtype=np.float64)
        if logits.ndim != 2 or logits.shape[1] != len(self.class_names):
            raise DataError(f"expected logits of shape (n, {len(self.class_names)}), got {logits.shape}")
        _refuse_non_finite(logits)
        calibration, names = self.calibration, self.class_names
        probs = calibration.probabilities(logits)
        sets = calibration.prediction_sets(probs)
        unsure = calibration.is_unknown(probs.max(axis=1))
        rule = calibration.unseen_type if evidence.similarity is not None else None
        unseen_p = None if rule is None else rule.p_value(logits, evidence.similarity,
                                                          temperature=calibration.temperature)
        predictions = []
        for i, (row, members) in enumerate(zip(probs, sets)):
            order = np.argsort(-row, kind="stable")
            top = order[:top_k]  # slicing clamps top_k to the class count
            p_value = None if unseen_p is None else float(unseen_p[i])
            reason, detail = self._reason(evidence, i, order=order, row=row, unsure=bool(unsure[i]), p_value=p_value)
            predictions.append(Prediction(
                label=UNKNOWN if reason else names[order[0]], unknown=reason is not None,
                confidence=float(row[order[0]]),
                top_classes=[names[i] for i in top], top_probabilities=[float(row[i]) for i in top],
                prediction_set=[names[i] for i in order if members[i]],
                reason=reason, detail=detail, unseen_p=p_value))
        return predictions

    def _reason(self, evidence: Evidence, i: int, *, order, row, unsure: bool,
                p_value: float | None) -> tuple[str | None, str]:
        """Why photo ``i`` gets no type (one of REASONS, and in words), or (None, '') when it is answered."""
        calibration, names = self.calibration, self.class_names
        limits = calibration.photo_limits
        poor = limits.problem(evidence.quality[i]) if limits is not None and evidence.quality is not None else ""
        if poor:
            return POOR_PHOTO, poor
        rule = calibration.unseen_type
        if p_value is not None and rule.is_unseen(p_value):
            nearest = names[int(evidence.nearest_class[i])]
            return UNSEEN_TYPE, (f"unlike every known type: p = {p_value:.3f}, below {rule.alpha:g} (nearest "
                                 f"training photo: {nearest}, similarity {evidence.similarity[i]:.2f})")
        if unsure:
            first, second = order[0], order[min(1, len(order) - 1)]
            return UNSURE, (f"torn between {names[first]} ({row[first]:.1%}) and {names[second]} "
                            f"({row[second]:.1%}); answers need {calibration.unknown_threshold:.1%}")
        return None, ""


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
