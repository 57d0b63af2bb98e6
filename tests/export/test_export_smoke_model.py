"""``python -m meterlib export`` on the smoke model: checked on its test split, INT8 calibrated on training photos."""

import json

import pytest

from meterlib.cli.main import main
from meterlib.data import splits
from meterlib.export import onnx_files
from meterlib.model import checkpoint, onnx_metadata
from meterlib.serve import Predictor

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _export(smoke_run, out, *options, capsys):
    code = main(["export", "--checkpoint", str(smoke_run.checkpoint), "--dataset", str(smoke_run.dataset_dir),
                 "--out", str(out), *options])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _checks(path) -> dict:
    entries = {entry.key: entry.value for entry in onnx.load(path).metadata_props}
    return json.loads(entries[onnx_metadata.METADATA_KEY])


@pytest.mark.slow
def test_float32_export_answers_the_test_split_as_pytorch(smoke_run, tmp_path, capsys):
    code, out, err = _export(smoke_run, tmp_path / "model.onnx", capsys=capsys)
    assert (code, err) == (0, "")
    size = (tmp_path / "model.onnx").stat().st_size / 2**20
    assert "same top-1 on 100.0%" in out and out.rstrip().endswith(f"wrote {tmp_path / 'model.onnx'} "
                                                                   f"(float32, {size:.1f} MB)")
    fields = _checks(tmp_path / "model.onnx")
    check = fields["checks"]["float32_vs_pytorch"]
    assert check["agreement"] == 1.0 and check["max_probability_difference"] <= 1e-4
    assert fields["splits_sha256"] == checkpoint.file_sha256(smoke_run.splits_csv)
    assert Predictor.load(tmp_path / "model.onnx").class_names == Predictor.load(smoke_run.checkpoint).class_names
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.onnx"]  # no temporary file left


@pytest.mark.slow
def test_int8_export_records_its_accuracy_change(smoke_run, tmp_path, capsys):
    code, out, err = _export(smoke_run, tmp_path / "model.int8.onnx", "--int8", "--force", capsys=capsys)
    assert (code, err) == (0, "")
    assert "int8 (calibrated on " in out and "(int8, " in out
    fields = _checks(tmp_path / "model.int8.onnx")
    assert fields["precision"] == "int8" and {"float32_vs_pytorch", "int8_vs_pytorch"} <= set(fields["checks"])
    assert Predictor.load(tmp_path / "model.int8.onnx").predict(smoke_run.dataset_dir / _a_test_photo(smoke_run))


def _a_test_photo(smoke_run) -> str:
    manifest = splits.read_manifest(smoke_run.splits_csv)
    return manifest.loc[manifest["split"] == "test", "path"].iloc[0]


@pytest.mark.slow
def test_int8_calibration_never_sees_a_test_photo(smoke_run, monkeypatch):
    seen = []
    monkeypatch.setattr(onnx_files.inference, "load_resized", lambda paths, **_: seen.extend(paths) or [])
    onnx_files.calibration_pictures(smoke_run.splits_csv, checkpoint.load(smoke_run.checkpoint))
    manifest = splits.read_manifest(smoke_run.splits_csv)
    train = {smoke_run.dataset_dir / path for path in manifest.loc[manifest["split"] == "train", "path"]}
    assert seen and set(seen) <= train


@pytest.mark.slow
def test_export_refuses_another_datasets_manifest(smoke_run, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "splits.csv").write_text(smoke_run.splits_csv.read_text() + "\n")
    # A repeated option: the last one wins.
    code, out, err = _export(smoke_run, tmp_path / "model.onnx", "--dataset", str(other), capsys=capsys)
    assert code == 1 and "not the manifest the model was trained on" in err
    assert not (tmp_path / "model.onnx").exists()
