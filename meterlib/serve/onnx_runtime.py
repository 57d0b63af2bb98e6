"""Running an exported model with ONNX Runtime: the session, its options, and its checked metadata."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from meterlib.errors import ModelFileError
from meterlib.model import checkpoint, inference, onnx_metadata
from meterlib.run import machine


@dataclass(frozen=True)
class OnnxModel:
    """An exported classifier in an ONNX Runtime session (CPU)."""

    session: Any
    n_classes: int

    @property
    def has_similarity(self) -> bool:
        """Whether the graph also gives the unseen-type similarity and nearest class (``OUTPUT_NAMES``)."""
        return len(self.session.get_outputs()) == len(onnx_metadata.OUTPUT_NAMES)

    def logits(self, pictures: Sequence, *, image_size: int, mean: Sequence[float], std: Sequence[float],
               batch_size: int = 32) -> np.ndarray:
        """Logits (n, classes) for squashed PIL images, with the same preprocessing as PyTorch."""
        return self.outputs(pictures, image_size=image_size, mean=mean, std=std, batch_size=batch_size)[0]

    def outputs(self, pictures: Sequence, *, image_size: int, mean: Sequence[float], std: Sequence[float],
                batch_size: int = 32) -> list[np.ndarray]:
        """Every output of the graph for squashed PIL images: logits (n, classes), then, when it has them,
        the similarity (n,) and nearest class (n,) of ``onnx_metadata.OUTPUT_NAMES``."""
        batches = inference.input_batches(pictures, image_size=image_size, mean=mean, std=std,
                                          batch_size=batch_size)
        parts = [self.session.run(None, {onnx_metadata.INPUT_NAME: np.ascontiguousarray(batch)})
                 for batch in batches]
        if parts:
            return [np.concatenate(column) for column in zip(*parts)]
        empty = [np.empty((0, self.n_classes), dtype=np.float32), np.empty(0, dtype=np.float32),
                 np.empty(0, dtype=np.int64)]
        return empty[:len(self.session.get_outputs())]


def session_options(ort, *, threads: int | None = None):
    """Options for the fastest CPU inference: every graph optimisation, one operator at a time, no spinning."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # A classifier is one chain of operators: running them in parallel only adds scheduling.
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or machine.usable_cpus()
    options.inter_op_num_threads = 1
    # Idle threads sleep instead of spinning, as the PyTorch path does (OMP_WAIT_POLICY=PASSIVE): on a
    # busy machine spinning threads made single photos about twice as slow.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def load(path: str | os.PathLike, *, threads: int | None = None) -> tuple[dict, OnnxModel]:
    """The checked metadata fields and the runnable model of an exported ``.onnx`` file."""
    path = Path(path)
    ort = onnx_metadata.require("onnxruntime")
    data = checkpoint.read_model_file(path, missing="ONNX model not found")
    try:
        session = ort.InferenceSession(data, session_options(ort, threads=threads),
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types for every kind of broken file
        if checkpoint.is_torch_file(data):
            raise ModelFileError(f"{path}: this is a PyTorch checkpoint: give it a .pt name") from None
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: not a usable ONNX model ({reason})") from None
    if bad := _first_non_finite_initializer(data):
        raise ModelFileError(f"{path}: the weights hold NaN or inf values in {bad!r}; "
                             "the model is broken (export it again from a good checkpoint)")
    fields = onnx_metadata.decode(session.get_modelmeta().custom_metadata_map.get(onnx_metadata.METADATA_KEY),
                                  source=path)
    _check_signature(session, fields, source=path)
    return fields, OnnxModel(session, len(fields["class_names"]))


def _first_non_finite_initializer(data: bytes) -> str:
    """The name of the first float initializer of a serialized model with a NaN or inf in it; '' when none has."""
    onnx = onnx_metadata.require("onnx")
    from onnx import numpy_helper

    for tensor in onnx.load_model_from_string(data).graph.initializer:
        values = numpy_helper.to_array(tensor)
        if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
            return tensor.name
    return ""


def _check_signature(session, fields: dict, *, source: Path) -> None:
    """ModelFileError unless the network takes the metadata's input size and gives one logit per class,
    alone or with the similarity and nearest class of ``onnx_metadata.OUTPUT_NAMES``."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    size, classes = fields["image_size"], len(fields["class_names"])
    if [item.name for item in inputs] != [onnx_metadata.INPUT_NAME] or list(inputs[0].shape[1:]) != [3, size, size]:
        shown = [(item.name, item.shape) for item in inputs]
        raise ModelFileError(f"{source}: the network's input {shown} is not "
                             f"{onnx_metadata.INPUT_NAME!r} of shape (batch, 3, {size}, {size})")
    if len(outputs) not in (1, len(onnx_metadata.OUTPUT_NAMES)) or outputs[0].shape[1:] != [classes]:
        shown = [(item.name, item.shape) for item in outputs]
        raise ModelFileError(f"{source}: the network's output {shown} is not one logit for "
                             f"each of the {classes} classes")
    batch = outputs[0].shape[:1]
    expected = [(onnx_metadata.SIMILARITY_NAME, "tensor(float)", batch),
                (onnx_metadata.NEAREST_CLASS_NAME, "tensor(int64)", batch)]
    if len(outputs) > 1 and [(item.name, item.type, item.shape) for item in outputs[1:]] != expected:
        shown = [(item.name, item.type, item.shape) for item in outputs]
        raise ModelFileError(f"{source}: the network's outputs {shown} are not the logits, "
                             f"{onnx_metadata.SIMILARITY_NAME!r} (float32, one per photo) and "
                             f"{onnx_metadata.NEAREST_CLASS_NAME!r} (int64, one per photo)")
