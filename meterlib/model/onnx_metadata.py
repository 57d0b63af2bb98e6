"""The metadata an exported ONNX model carries: everything the Predictor needs besides the network.

One metadata entry, ``meterlib``, holds strict JSON (readable from any language) with the
checkpoint's fields under the same names and meanings (the ``onnx`` ones of ``model.field_formats.FIELDS``):

- ``format`` / ``format_version``: ``"meterlib-onnx"`` / 1
- ``class_names`` (output order), ``backbone``, ``image_size``, ``mean``, ``std``: the input
  ``pixels`` is float32, batch x 3 x image_size x image_size, RGB scaled to [0, 1], then
  normalised with mean and std; the output ``logits`` is batch x classes; a model exported with
  reference features (``model.reference``) also gives ``similarity`` (float32, batch: cosine to the
  k-th nearest training photo) and ``nearest_class`` (int64, batch: that photo's class index)
- ``temperature``, ``unknown_threshold``, ``conformal_quantile``, ``conformal_u``,
  ``conformal_class_thresholds``: the calibration; JSON has no infinity, so an infinite threshold
  is written as null (the class enters every prediction set); optionally ``unseen_type`` (the
  unseen-type rule, ``confidence.unseen``) and ``photo_limits`` (``confidence.photo_limits``)
- ``splits_sha256``, ``versions`` (libraries that trained the model), ``meterlib_version`` (that
  exported it), ``precision`` (``float32`` or ``int8``), ``checks`` (what the check after export found)
"""

from __future__ import annotations

import importlib
import json
import math
import os

from meterlib.errors import ModelFileError, UnavailableError
from meterlib.model import checkpoint, field_formats, reference
from meterlib.run import atomic

INSTALL_HINT = 'pip install "meterlib[onnx]"'
METADATA_KEY = "meterlib"
FORMAT, FORMAT_VERSION = "meterlib-onnx", 1
INPUT_NAME = "pixels"
# The graph's outputs: the logits alone, or all three, as model.reference's scoring module gives them.
OUTPUT_NAME, SIMILARITY_NAME, NEAREST_CLASS_NAME = OUTPUT_NAMES = reference.OUTPUTS
PRECISIONS = ("float32", "int8")
REQUIRED = (*field_formats.REQUIRED_IN_ONNX, "precision")


def require(module: str):
    """Import one of the optional ONNX packages, or say how to install them."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UnavailableError(f"{module} is not installed; exported models need the onnx extra: "
                               f"{INSTALL_HINT}") from None


def fields_from_checkpoint(content: dict, *, precision: str, checks: dict | None = None) -> dict:
    """The metadata fields of a loaded checkpoint's export."""
    import meterlib

    fields = {key: content[key] for key in field_formats.IN_ONNX if key in content}
    return {"format": FORMAT, "format_version": FORMAT_VERSION, **fields, "meterlib_version": meterlib.__version__,
            "precision": precision, "checks": dict(checks or {})}


def encode(fields: dict) -> str:
    """The fields as strict JSON text (infinities as null)."""
    return json.dumps(atomic.strict_json_value(fields), allow_nan=False, sort_keys=True)


def decode(text: str | None, *, source: str | os.PathLike) -> dict:
    """The checked fields of a model's metadata text; ModelFileError naming ``source`` when unusable."""
    if text is None:
        raise ModelFileError(f"{source}: an ONNX model without meterlib's metadata; export "
                             "models with `python -m meterlib export`")
    try:
        fields = json.loads(text)
    except ValueError as exc:
        raise ModelFileError(f"{source}: meterlib metadata is not valid JSON ({exc})") from None
    if not isinstance(fields, dict) or fields.get("format") != FORMAT:
        raise ModelFileError(f"{source}: meterlib metadata without format={FORMAT!r}")
    version = fields.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ModelFileError(f"{source}: meterlib metadata format {version!r} is not one this "
                             f"meterlib reads (1 to {FORMAT_VERSION}); upgrade meterlib")
    thresholds = fields.get("conformal_class_thresholds")
    if isinstance(thresholds, list):
        fields["conformal_class_thresholds"] = [math.inf if value is None else value for value in thresholds]
    checkpoint.check_fields({key: value for key, value in fields.items() if key != "format_version"},
                            source=source, required=REQUIRED, kind="metadata")
    if fields["precision"] not in PRECISIONS:
        raise ModelFileError(f"{source}: metadata field 'precision' must be one of "
                             f"{', '.join(PRECISIONS)}, got {fields['precision']!r}")
    return fields
