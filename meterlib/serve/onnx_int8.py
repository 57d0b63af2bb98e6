"""INT8 static quantisation of a float32 export with ONNX Runtime, calibrated on training photos.

QDQ format with per-channel weights, which ONNX Runtime turns into fused integer kernels
(QLinearConv with its activation, QLinearAdd, QGemm). Activations are uint8 and weights int8; on
CPUs without VNNI (AVX2) the uint8 x int8 kernels can saturate, so weights keep 7 bits
(``reduce_range``): with 8 bits the demo model lost about 7 points of accuracy, with 7 none.
Dynamic quantisation was measured to give no speed-up for convolutions on such a CPU.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from meterlib.model import inference
from meterlib.serve import onnx_check, onnx_export, onnx_format

CALIBRATION_PHOTOS = 128  # enough for stable activation ranges; calibration time grows with it
CALIBRATION_BATCH = 8


class CalibrationPhotos:
    """ONNX Runtime's calibration data reader: preprocessed photos, a batch per ``get_next`` call."""

    def __init__(self, pictures: Sequence, *, image_size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self._batches = inference.input_batches(pictures, image_size=image_size, mean=mean, std=std,
                                                batch_size=CALIBRATION_BATCH)

    def get_next(self) -> dict | None:
        batch = next(self._batches, None)
        return None if batch is None else {onnx_format.INPUT_NAME: np.ascontiguousarray(batch)}


def calibration_sample(paths: Sequence[Path], *, count: int = CALIBRATION_PHOTOS) -> list[Path]:
    """At most ``count`` photos spread evenly over ``paths`` (a manifest lists them class by class)."""
    if len(paths) <= count:
        return list(paths)
    return [paths[int(index)] for index in np.linspace(0, len(paths) - 1, count).round()]


def calibration_pictures(splits_csv: Path, content: dict, *, count: int = CALIBRATION_PHOTOS) -> list:
    """Decoded calibration photos: a spread of the model's training split, never a test photo."""
    train = onnx_check.split_photos(splits_csv, content, split="train")
    return inference.load_resized(calibration_sample(train.paths, count=count), image_size=int(content["image_size"]))


def quantize(float32_path: Path, path: str | os.PathLike, *, pictures: Sequence, fields: dict) -> Path:
    """Write the INT8 model of a float32 export to ``path``, calibrated on ``pictures`` (training photos only)."""
    onnx_format.require("onnxruntime")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    reader = CalibrationPhotos(pictures, image_size=fields["image_size"], mean=fields["mean"], std=fields["std"])
    with tempfile.TemporaryDirectory(prefix="meterlib-int8-") as work:
        prepared, quantized = Path(work, "prepared.onnx"), Path(work, "int8.onnx")
        # Shape inference and graph clean-up first, as ONNX Runtime advises for static quantisation.
        quant_pre_process(str(float32_path), str(prepared))
        quantize_static(str(prepared), str(quantized), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        return onnx_export.write_with_metadata(str(quantized), path, {**fields, "precision": "int8"})
