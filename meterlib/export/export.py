"""The export step: a checkpoint as an ONNX model, written only when the check after export passes.

Both the float32 export and its INT8 quantisation are compared with the checkpoint on the test
split of the manifest the model was trained on; the INT8 model is calibrated on training photos.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from meterlib.export import check, onnx_files
from meterlib.model import checkpoint, inference, onnx_metadata
from meterlib.run import atomic, output_path
from meterlib.serve.predictor import Predictor


def default_output(checkpoint_path: str | os.PathLike, *, int8: bool) -> Path:
    """Beside the checkpoint: ``meterlib_checkpoint.onnx``, or ``meterlib_checkpoint.int8.onnx``."""
    return Path(checkpoint_path).with_suffix(".int8.onnx" if int8 else ".onnx")


def export_model(checkpoint_path: str | os.PathLike, *, splits_csv: str | os.PathLike,
                 out: str | os.PathLike | None = None, int8: bool = False, force: bool = False,
                 overwrite: bool = False, progress: bool | None = None) -> str:
    """Export, check on the test split of ``splits_csv`` and write ``out``; what was written, in a few lines.

    ``out`` is checked before any work (``output_path.check``; ``overwrite`` replaces a file meterlib
    did not write). ``progress`` (default: on a terminal) tells each step on standard error.
    """
    shown = out or default_output(checkpoint_path, int8=int8)
    target = output_path.check(shown, inputs=[checkpoint_path, splits_csv], ours=_is_export, overwrite=overwrite)
    for package in ("onnx", "onnxscript", "onnxruntime"):  # before minutes of work, not after
        onnx_metadata.require(package)
    step = _steps(sys.stderr.isatty() if progress is None else progress)
    content = checkpoint.load(checkpoint_path)
    test = check.split_photos(Path(splits_csv), content, split="test")
    reference = Predictor.from_checkpoint(checkpoint_path, device="cpu")
    step(f"reading {len(test.paths)} test photos for the check")
    pictures = inference.load_resized(test.paths, image_size=reference.image_size)
    with tempfile.TemporaryDirectory(prefix="meterlib-export-") as work:
        step("exporting the float32 network")
        float32 = onnx_files.write_float32(content, Path(work, "float32.onnx"), source=checkpoint_path)
        step("checking float32 against PyTorch on the test photos")
        comparison = check.compare(reference, Predictor.from_onnx(float32), pictures, test.labels)
        check.refuse_float32_difference(comparison, source=str(checkpoint_path))
        fields = onnx_metadata.fields_from_checkpoint(content, precision="float32",
                                                    checks={"float32_vs_pytorch": comparison.as_fields()})
        lines = ["float32 " + check.summary(comparison, against="PyTorch")]
        with atomic.atomic_path(target) as tmp:
            if int8:
                calibration = onnx_files.calibration_pictures(Path(splits_csv), content)
                step(f"quantising to INT8 (calibrated on {len(calibration)} training photos) and checking it")
                comparison = _write_int8(float32, tmp, fields=fields, calibration=calibration,
                                    test=(reference, pictures, test.labels))
                check.refuse_int8_loss(comparison, source=str(shown), force=force)
                lines.append(f"int8 (calibrated on {len(calibration)} training photos) "
                             + check.summary(comparison, against="PyTorch"))
            else:
                onnx_files.write_with_metadata(float32, tmp, fields)
    size = target.stat().st_size / 2**20
    return "\n".join([*lines, f"wrote {shown} ({'int8' if int8 else 'float32'}, {size:.1f} MB)"])


def _is_export(path: Path) -> bool:
    """Whether ``path`` is an ONNX model that meterlib exported (it carries meterlib's metadata)."""
    onnx = onnx_metadata.require("onnx")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # not an ONNX file at all: protobuf raises its own DecodeError, among others
        return False
    return any(entry.key == onnx_metadata.METADATA_KEY for entry in model.metadata_props)


def _steps(show: bool):
    """A function that prints one step of the export, with the seconds since the start, when ``show``."""
    start = time.perf_counter()

    def step(text: str) -> None:
        if show:
            print(f"export [{time.perf_counter() - start:5.1f} s] {text} ...", file=sys.stderr, flush=True)
    return step


def _write_int8(float32: Path, path: Path, *, fields: dict, calibration: list,
                test: tuple) -> check.Comparison:
    """Quantise ``float32`` into ``path``, compare it on the test photos and record the comparison."""
    reference, pictures, labels = test
    onnx_files.quantize(float32, path, pictures=calibration, fields=fields)
    comparison = check.compare(reference, Predictor.from_onnx(path), pictures, labels)
    checks = {**fields["checks"], "int8_vs_pytorch": comparison.as_fields(), "calibration_photos": len(calibration)}
    onnx_files.write_with_metadata(path, path, {**fields, "precision": "int8", "checks": checks})
    return comparison
