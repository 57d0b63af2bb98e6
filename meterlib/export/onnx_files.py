"""Writing a checkpoint's network as an ONNX model that carries the checkpoint's calibration (needs the onnx extra).

Float32, batch norms folded; and INT8, by static quantisation of the float32 model with ONNX
Runtime, calibrated on training photos. The INT8 model is in QDQ format with per-channel weights,
which ONNX Runtime turns into fused integer kernels (QLinearConv with its activation, QLinearAdd, QGemm). Activations are uint8 and weights int8; on
CPUs without VNNI (AVX2) the uint8 x int8 kernels can saturate, so weights keep 7 bits
(``reduce_range``): with 8 bits the demo model lost about 7 points of accuracy, with 7 none.
Dynamic quantisation was measured to give no speed-up for convolutions on such a CPU.
A checkpoint with reference features is exported as ``model.reference``'s scoring module, whose
graph also gives the unseen-type similarity and nearest class; INT8 keeps that part (normalise,
product with the reference features, TopK, Gather) in float32, reading the quantised features.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from meterlib.export import check
from meterlib.model import checkpoint, folding, inference, onnx_metadata, reference

OPSET = 18  # ONNX Runtime >= 1.14 runs it; quantisation wants >= 13 (per-channel QDQ)
CALIBRATION_PHOTOS = 128  # enough for stable activation ranges; calibration time grows with it
CALIBRATION_BATCH = 8


def write_float32(content: dict, path: str | os.PathLike, *, source: str | os.PathLike = "checkpoint") -> Path:
    """Write a loaded checkpoint's network, batch norms folded, as a float32 ONNX model with its metadata.

    With ``reference_features`` the graph gives ``onnx_metadata.OUTPUT_NAMES`` (logits, similarity,
    nearest class: ``reference.scoring``), else the logits alone.
    """
    import torch

    onnx_metadata.require("onnx")
    onnx_metadata.require("onnxscript")  # the exporter's graph builder
    model = folding.fold_batch_norms(checkpoint.build_model(content, source=source)).eval()
    outputs = [onnx_metadata.OUTPUT_NAME]
    if content.get("reference_features") is not None:
        model, outputs = reference.scoring(model, content["reference_features"]), list(onnx_metadata.OUTPUT_NAMES)
    size = int(content["image_size"])
    # A batch of 2: with 1, torch.export would fix the batch size instead of leaving it free.
    example = torch.zeros(2, 3, size, size)
    # The exporter reports each step on stdout and warns about its own internals; neither concerns a user.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example,), input_names=[onnx_metadata.INPUT_NAME],
                                    output_names=outputs,
                                    dynamic_shapes=({0: torch.export.Dim("batch")},),
                                    opset_version=OPSET, dynamo=True)
    fields = onnx_metadata.fields_from_checkpoint(content, precision="float32")
    return write_with_metadata(program.model_proto, path, fields)


def write_with_metadata(proto, path: str | os.PathLike, fields: dict) -> Path:
    """Save an ONNX ModelProto (or the model at a path) with ``fields`` as its meterlib metadata."""
    import onnx

    import meterlib

    if isinstance(proto, (str, os.PathLike)):
        proto = onnx.load(proto)
    del proto.metadata_props[:]
    proto.metadata_props.add(key=onnx_metadata.METADATA_KEY, value=onnx_metadata.encode(fields))
    proto.producer_name, proto.producer_version = "meterlib", meterlib.__version__
    proto.doc_string = (f"meterlib {fields['backbone']} classifier of {len(fields['class_names'])} meter types "
                        f"({fields['precision']}); preprocessing and calibration in the '{onnx_metadata.METADATA_KEY}' "
                        "metadata entry")
    onnx.save_model(proto, os.fspath(path))
    return Path(path)


class CalibrationPhotos:
    """ONNX Runtime's calibration data reader: preprocessed photos, a batch per ``get_next`` call."""

    def __init__(self, pictures: Sequence, *, image_size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self._batches = inference.input_batches(pictures, image_size=image_size, mean=mean, std=std,
                                                batch_size=CALIBRATION_BATCH)

    def get_next(self) -> dict | None:
        batch = next(self._batches, None)
        return None if batch is None else {onnx_metadata.INPUT_NAME: np.ascontiguousarray(batch)}


def calibration_sample(paths: Sequence[Path], *, count: int = CALIBRATION_PHOTOS) -> list[Path]:
    """At most ``count`` photos spread evenly over ``paths`` (a manifest lists them class by class)."""
    if len(paths) <= count:
        return list(paths)
    return [paths[int(index)] for index in np.linspace(0, len(paths) - 1, count).round()]


def calibration_pictures(splits_csv: Path, content: dict, *, count: int = CALIBRATION_PHOTOS) -> list:
    """Decoded calibration photos: a spread of the model's training split, never a test photo."""
    train = check.split_photos(splits_csv, content, split="train")
    return inference.load_resized(calibration_sample(train.paths, count=count), image_size=int(content["image_size"]))


def quantize(float32_path: Path, path: str | os.PathLike, *, pictures: Sequence, fields: dict) -> Path:
    """Write the INT8 model of a float32 export to ``path``, calibrated on ``pictures`` (training photos only)."""
    onnx_metadata.require("onnxruntime")
    onnx = onnx_metadata.require("onnx")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    reader = CalibrationPhotos(pictures, image_size=fields["image_size"], mean=fields["mean"], std=fields["std"])
    with tempfile.TemporaryDirectory(prefix="meterlib-int8-") as work:
        prepared, quantized = Path(work, "prepared.onnx"), Path(work, "int8.onnx")
        # Shape inference and graph clean-up first, as ONNX Runtime advises for static quantisation. ONNX's
        # own shape inference: ONNX Runtime's symbolic one fails on the Expand of normalize (the similarity),
        # and for the network alone both give the same INT8 model.
        quant_pre_process(str(float32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(quantized), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_exclude=similarity_nodes(onnx.load(str(prepared)).graph))
        return write_with_metadata(str(quantized), path, {**fields, "precision": "int8"})


def similarity_nodes(graph) -> list[str]:
    """The names of the nodes of an ONNX graph that only its similarity outputs need (none without them)."""
    nodes = list(graph.node)
    made_by = {name: index for index, node in enumerate(nodes) for name in node.output}
    for_logits, pending = set(), [onnx_metadata.OUTPUT_NAME]
    while pending:  # every node the logits depend on
        index = made_by.get(pending.pop())
        if index is not None and index not in for_logits:
            for_logits.add(index)
            pending.extend(nodes[index].input)
    return [node.name for index, node in enumerate(nodes) if index not in for_logits]
