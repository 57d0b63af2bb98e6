"""The check after export: an exported model against the checkpoint on the photos of the model's own split.

Float32 must answer as PyTorch does (same top-1 and the same answer, reason included, on every test
photo; calibrated probabilities within ``FLOAT32_TOLERANCE``, unseen-type similarities within
``SIMILARITY_TOLERANCE``); INT8 may lose at most ``INT8_MAX_LOSS`` of test accuracy unless forced.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from meterlib.data import splits
from meterlib.errors import DataError, ExportError
from meterlib.model import checkpoint
from meterlib.serve.predictor import Predictor

FLOAT32_TOLERANCE = 1e-4  # largest difference of a calibrated probability from PyTorch's
SIMILARITY_TOLERANCE = 1e-4  # largest difference of an unseen-type similarity (a cosine) from PyTorch's
INT8_MAX_LOSS = 0.01  # one point of test accuracy


@dataclass(frozen=True)
class SplitPhotos:
    """The photos of one split whose class the model knows, with their class indices."""

    split: str
    paths: list[Path]
    labels: np.ndarray


def split_photos(splits_csv: Path, content: dict, *, split: str) -> SplitPhotos:
    """The ``split`` photos listed in ``splits_csv``, which must be the manifest the model was trained on."""
    expected = content.get("splits_sha256")
    if not splits_csv.is_file():
        raise DataError(f"{splits_csv}: not found; the check needs the model's data "
                        "(give it with --dataset / --data-dir)")
    if expected and checkpoint.file_sha256(splits_csv) != expected:
        raise DataError(f"{splits_csv}: not the manifest the model was trained on (its SHA-256 "
                        "differs from the checkpoint's splits_sha256); give the model's dataset")
    manifest = splits.read_manifest(splits_csv)
    names = list(content["class_names"])
    rows = manifest[(manifest["split"] == split) & manifest["class"].isin(names)]
    if rows.empty:
        raise DataError(f"{splits_csv}: no {split} photos of the model's classes")
    return SplitPhotos(split, [splits_csv.parent / path for path in rows["path"]],
                       np.array([names.index(name) for name in rows["class"]]))


@dataclass(frozen=True)
class Comparison:
    """How an exported model answers the test photos, beside the model it was made from."""

    photos: int
    reference_accuracy: float
    accuracy: float
    agreement: float  # share of photos with the same top-1 class
    max_probability_difference: float  # largest difference of a calibrated probability
    answer_agreement: float  # share of photos with the same answer: label and reason
    max_similarity_difference: float | None  # largest difference of an unseen-type similarity; None: no similarity

    @property
    def accuracy_change(self) -> float:
        return self.accuracy - self.reference_accuracy

    def as_fields(self) -> dict:
        """The comparison as plain numbers, for the exported model's metadata."""
        return {**asdict(self), "accuracy_change": self.accuracy_change}


def compare(reference: Predictor, candidate: Predictor, pictures: Sequence, labels: np.ndarray) -> Comparison:
    """Both predictors on the same decoded, squashed photos; ExportError when only one gives the similarity.

    The answers leave ``poor_photo`` out: it depends on the photo alone, and these are squashed copies.
    """
    if reference.has_similarity != candidate.has_similarity:
        raise ExportError(f"the exported model {'lacks' if reference.has_similarity else 'adds'} the unseen-type "
                          "similarity of the model it was made from")
    judged = [predictor.with_calibration(dataclasses.replace(predictor.calibration, photo_limits=None))
              for predictor in (reference, candidate)]
    evidence = [predictor.evidence(pictures) for predictor in judged]
    expected, got = (predictor.calibration.probabilities(item.logits) for predictor, item in zip(judged, evidence))
    answers = [[(answer.label, answer.reason) for answer in predictor.predictions(item)]
               for predictor, item in zip(judged, evidence)]
    similarity = (None if evidence[0].similarity is None
                  else float(np.abs(evidence[0].similarity - evidence[1].similarity).max(initial=0)))
    return Comparison(photos=len(labels), reference_accuracy=float(np.mean(expected.argmax(1) == labels)),
                      accuracy=float(np.mean(got.argmax(1) == labels)),
                      agreement=float(np.mean(expected.argmax(1) == got.argmax(1))),
                      max_probability_difference=float(np.abs(expected - got).max()),
                      answer_agreement=float(np.mean([a == b for a, b in zip(*answers)])),
                      max_similarity_difference=similarity)


def refuse_float32_difference(comparison: Comparison, *, source: str) -> None:
    """ExportError unless the float32 export answers every test photo as PyTorch does."""
    similarity = comparison.max_similarity_difference or 0.0
    if (comparison.agreement < 1 or comparison.answer_agreement < 1
            or comparison.max_probability_difference > FLOAT32_TOLERANCE or similarity > SIMILARITY_TOLERANCE):
        differ, answered = (round((1 - share) * comparison.photos)
                            for share in (comparison.agreement, comparison.answer_agreement))
        raise ExportError(
            f"{source}: the ONNX export does not answer as the checkpoint does on the {comparison.photos} test "
            f"photos ({differ} with another top-1 class, {answered} with another answer or reason, calibrated "
            f"probabilities up to {comparison.max_probability_difference:.2g} apart, allowed {FLOAT32_TOLERANCE:g}; "
            f"unseen-type similarities up to {similarity:.2g} apart, allowed {SIMILARITY_TOLERANCE:g}); "
            "nothing written")


def refuse_int8_loss(comparison: Comparison, *, source: str, force: bool) -> None:
    """ExportError when INT8 loses more than INT8_MAX_LOSS of test accuracy, unless ``force``."""
    if force or comparison.accuracy_change >= -INT8_MAX_LOSS:
        return
    raise ExportError(
        f"{source}: INT8 loses {-100 * comparison.accuracy_change:.1f} points of test accuracy "
        f"({comparison.reference_accuracy:.1%} -> {comparison.accuracy:.1%} on {comparison.photos} photos; at most "
        f"{100 * INT8_MAX_LOSS:g} allowed); nothing written (--force writes it anyway)")


def summary(comparison: Comparison, *, against: str) -> str:
    """One line: accuracy beside the reference's, top-1 and answer agreement, largest probability and
    similarity differences."""
    similarity = ("" if comparison.max_similarity_difference is None
                  else f", unseen-type similarities within {comparison.max_similarity_difference:.1g}")
    return (f"test split, {comparison.photos} photos: accuracy {comparison.accuracy:.1%} "
            f"({against} {comparison.reference_accuracy:.1%}, {100 * comparison.accuracy_change:+.1f} points), "
            f"same top-1 on {comparison.agreement:.1%}, same answer on {comparison.answer_agreement:.1%}, "
            f"calibrated probabilities within {comparison.max_probability_difference:.1g}{similarity}")
