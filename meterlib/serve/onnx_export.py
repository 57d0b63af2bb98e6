"""Writing a checkpoint's network as an ONNX model that carries the checkpoint's calibration (needs the onnx extra)."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

from meterlib.model import checkpoint, folding
from meterlib.serve import onnx_format

OPSET = 18  # ONNX Runtime >= 1.14 runs it; quantisation wants >= 13 (per-channel QDQ)


def write_float32(content: dict, path: str | os.PathLike, *, source: str | os.PathLike = "checkpoint") -> Path:
    """Write a loaded checkpoint's network, batch norms folded, as a float32 ONNX model with its metadata."""
    import torch

    onnx_format.require("onnx")
    onnx_format.require("onnxscript")  # the exporter's graph builder
    model = folding.fold_batch_norms(checkpoint.build_model(content, source=source)).eval()
    size = int(content["image_size"])
    # A batch of 2: with 1, torch.export would fix the batch size instead of leaving it free.
    example = torch.zeros(2, 3, size, size)
    # The exporter reports each step on stdout and warns about its own internals; neither concerns a user.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example,), input_names=[onnx_format.INPUT_NAME],
                                    output_names=[onnx_format.OUTPUT_NAME],
                                    dynamic_shapes=({0: torch.export.Dim("batch")},),
                                    opset_version=OPSET, dynamo=True)
    fields = onnx_format.fields_from_checkpoint(content, precision="float32")
    return write_with_metadata(program.model_proto, path, fields)


def write_with_metadata(proto, path: str | os.PathLike, fields: dict) -> Path:
    """Save an ONNX ModelProto (or the model at a path) with ``fields`` as its meterlib metadata."""
    import onnx

    import meterlib

    if isinstance(proto, (str, os.PathLike)):
        proto = onnx.load(proto)
    del proto.metadata_props[:]
    proto.metadata_props.add(key=onnx_format.METADATA_KEY, value=onnx_format.encode(fields))
    proto.producer_name, proto.producer_version = "meterlib", meterlib.__version__
    proto.doc_string = (f"meterlib {fields['backbone']} classifier of {len(fields['class_names'])} meter types "
                        f"({fields['precision']}); preprocessing and calibration in the '{onnx_format.METADATA_KEY}' "
                        "metadata entry")
    onnx.save_model(proto, os.fspath(path))
    return Path(path)
