"""Fault injection at the runner's door: parameters, dataset paths, reports folder, the lock."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from PIL import Image

from meterlib import train
from meterlib.cli import main as cli
from meterlib.errors import DataError, RunError, SettingsError
from meterlib.run import paths, runner


@pytest.fixture()
def workspace(tmp_path, monkeypatch):
    """A scratch working directory with an empty data folder; notebooks never execute."""
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)

    def reached_execution(*_, **__):
        raise AssertionError("the run got past the door")

    monkeypatch.setattr(runner, "execute", reached_execution)
    return tmp_path


def _cli(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(["run", "--data-dir", "data", "--reports-dir", "reports", *argv])
    return code, capsys.readouterr().err


# (id, command-line arguments, the name the message must hold, the problem it must state)
DOOR_CASES = [
    ("epochs_head-text", ["-p", "epochs_head=abc"], "epochs_head", r"expected an int, got 'abc'"),
    ("views-text", ["-p", "views=abc"], "views", r"expected an int"),
    ("seed-fraction", ["-p", "seed=1.5"], "seed", r"expected an int, got 1\.5"),
    ("seed-negative", ["-p", "seed=-1"], "seed", r"out of range.*\[0, inf\]"),
    ("views-zero", ["-p", "views=0"], "views", r"out of range.*\[1, inf\]"),
    ("batch_size-negative", ["-p", "batch_size=-3"], "batch_size", "out of range"),
    ("epochs_finetune-negative", ["-p", "epochs_finetune=-1"], "epochs_finetune", "out of range"),
    ("lr_head-zero", ["-p", "lr_head=0"], "lr_head", r"out of range.*\(0, inf\]"),
    ("lr_finetune-text", ["-p", "lr_finetune=fast"], "lr_finetune", "expected a float"),
    ("test_fraction-above-one", ["-p", "test_fraction=1.5"], "test_fraction", r"\(0, 1\)"),
    ("conformal_alpha-zero", ["-p", "conformal_alpha=0"], "conformal_alpha", "out of range"),
    ("target_accuracy-nan", ["-p", "target_accuracy=.nan"], "target_accuracy", "expected a float"),
    ("deterministic-word", ["-p", "deterministic=maybe"], "deterministic", "expected a bool"),
    ("deterministic-number", ["-p", "deterministic=1"], "deterministic", "expected a bool"),
    ("image_size-too-small", ["-p", "image_size=16"], "image_size", r"\[32, 2048\]"),
    ("near_duplicate_distance-65", ["-p", "near_duplicate_distance=65"], "near_duplicate_distance",
     r"\[-1, 64\]"),
    ("nuisance_columns-text", ["-p", "nuisance_columns=blur"], "nuisance_columns", "expected a list"),
    ("photos-text", ["-p", "photos=meter.jpg"], "photos", "expected a list, got 'meter.jpg'"),
    ("dataset-null", ["-p", "dataset=null"], "dataset", "a value is required"),
    ("typo-in-name", ["-p", "epoch_head=3"], "epoch_head", "no notebook declares"),
    ("typo-in-preset", ["-p", "preset=orignal"], "preset", "'orignal' is not one of original, default"),
    ("typo-in-backbone", ["-p", "backbone=resnet"], "backbone", "is not one of resnet18, efficientnet_lite0"),
    ("no-equals-sign", ["-p", "epochs_head"], "epochs_head", "name=value"),
    ("dataset-typo-absolute", ["-p", "dataset=/no/such/meters"], "/no/such/meters", "dataset not found"),
    ("dataset-typo-name", ["-p", "dataset=my_meterz"], "my_meterz", "dataset not found"),
    ("dataset-missing-for-02", ["--only", "02", "-p", "dataset=gone"], "gone", "dataset not found"),
    ("demo-missing-for-02", ["--only", "02", "03"], "demo", "dataset not found"),
    ("only-no-match", ["--only", "09"], "09", "no notebook matches"),
    ("params-file-missing", ["-f", "nowhere.yaml"], "nowhere.yaml", "cannot read parameter file"),
]


@pytest.mark.parametrize("argv, names, problem", [case[1:] for case in DOOR_CASES],
                         ids=[case[0] for case in DOOR_CASES])
def test_bad_command_is_one_clear_line_before_any_work(workspace, capsys, robust, argv, names, problem):
    robust.entry = "runner (CLI)"
    with robust.untouched(workspace):
        code, err = _cli(capsys, *argv)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    robust.error(err, names=names, problem=problem)


# (id, file content, the name the message must hold, the problem it must state)
FILE_CASES = [
    ("params-file-list", "- 1\n- 2\n", "params.yaml", "must hold a mapping"),
    ("params-file-bad-yaml", "epochs_head: [1,\n", "params.yaml", "cannot read parameter file"),
    ("params-file-bad-value", "epochs_head: many\n", "epochs_head", "expected an int, got 'many'"),
]


@pytest.mark.parametrize("text, names, problem", [case[1:] for case in FILE_CASES],
                         ids=[case[0] for case in FILE_CASES])
def test_bad_parameter_file_is_named(workspace, capsys, robust, text, names, problem):
    robust.entry = "runner (-f YAML)"
    (workspace / "params.yaml").write_text(text)
    with robust.untouched(workspace):
        code, err = _cli(capsys, "-f", "params.yaml")
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    robust.error(err, names=names, problem=problem)


def test_relative_paths_resolve_against_the_working_directory(workspace, robust):
    robust.entry = "runner (paths)"
    (workspace / "mine" / "raw" / "a").mkdir(parents=True)
    planned = runner.plan(runner.discover_notebooks(),
                          {"dataset": "mine", "data_dir": ".", "reports_dir": "out/rel",
                           "weights_path": "w/resnet.pth"})
    settings = planned[1].settings
    assert settings["data_dir"] == str(workspace)
    assert settings["reports_dir"] == str(workspace / "out" / "rel")
    assert settings["weights_path"] == str(workspace / "w" / "resnet.pth")
    assert settings["dataset"] == "mine"  # a bare name stays a name under data_dir
    nested = runner.plan(runner.discover_notebooks(), {"dataset": "data/x"})[0].settings
    assert nested["dataset"] == str(workspace / "data" / "x")
    robust.ok("resolved against the working directory, not notebooks/")


def test_photo_paths_resolve_against_the_working_directory(workspace, robust):
    robust.entry = "runner (paths)"
    name, value = runner.parse_assignment('photos=["my, meter.jpg", "sub/b.jpg", "/abs/c.jpg", "~/d.jpg"]')
    [panel] = [item for item in runner.plan(runner.discover_notebooks(), {name: value}) if item.name.startswith("04")]
    assert panel.parameters["photos"] == [str(workspace / "my, meter.jpg"), str(workspace / "sub" / "b.jpg"),
                                          "/abs/c.jpg", str(Path.home() / "d.jpg")]
    robust.ok("a list of paths, commas kept, resolved against the working directory")


def test_dataset_path_runs_from_any_directory(workspace, monkeypatch, robust):
    robust.entry = "runner (paths)"
    (workspace / "photos" / "raw" / "a").mkdir(parents=True)
    seen = []
    monkeypatch.setattr(runner, "execute", lambda item, out_dir, **_: seen.append((item, out_dir)) or out_dir)
    runner.run(overrides={"dataset": "./photos"}, only=["01"], reports_dir="rel", echo=lambda _: None)
    item, out_dir = seen[0]
    assert item.parameters["dataset"] == str(workspace / "photos")
    assert out_dir == workspace / "rel" / "notebooks"
    robust.ok("./photos and reports_dir=rel used from the working directory")


@pytest.mark.parametrize("name, generate, exists, expected", [
    ("demo", False, False, True), ("smoke", False, False, True), ("typo", True, False, True),
    ("typo", False, False, DataError), ("mine", False, True, False),
], ids=["demo-generated", "smoke-generated", "asked-explicitly", "typo-refused", "existing-used-as-is"])
def test_only_embedded_datasets_are_generated_unasked(tmp_path, robust, name, generate, exists, expected):
    robust.entry = "01 generation"
    folder = tmp_path / name
    if exists:
        (folder / "raw").mkdir(parents=True)
    if expected is DataError:
        with pytest.raises(DataError) as err:
            paths.needs_generation(name, folder, generate=generate)
        robust.error(str(err.value), names=folder, problem="dataset not found")
    else:
        assert paths.needs_generation(name, folder, generate=generate) is expected
        robust.ok("generated" if expected else "used as it is")
    assert folder.exists() == exists


def test_reports_folder_that_cannot_be_created_is_one_line(workspace, capsys, robust):
    robust.entry = "runner (reports folder)"
    (workspace / "data" / "mine" / "raw").mkdir(parents=True)
    (workspace / "blocker").write_text("a file where a folder should be")
    with robust.untouched(workspace):
        code = cli.main(["run", "--data-dir", "data", "-p", "dataset=mine", "--reports-dir", "blocker/reports"])
    err = capsys.readouterr().err
    assert code == 1
    robust.error(err, names=workspace / "blocker" / "reports", problem="cannot write to the reports folder")


def test_second_run_on_the_same_reports_folder_is_refused(workspace, capsys, robust):
    robust.entry = "runner (concurrent runs)"
    (workspace / "data" / "mine" / "raw").mkdir(parents=True)
    (workspace / "reports").mkdir()
    with open(workspace / "reports" / runner.LOCK_NAME, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another run holds the folder
        code, err = _cli(capsys, "-p", "dataset=mine")
    assert code == 1
    robust.error(err, names=workspace / "reports", problem="another meterlib run is writing")
    # Once the other run ends, the lock is free again.
    with runner.exclusive(workspace / "reports"):
        pass


def test_full_disk_mid_run_is_one_line(workspace, capsys, monkeypatch, robust):
    robust.entry = "runner (disk full)"
    (workspace / "data" / "mine" / "raw").mkdir(parents=True)

    def disk_full(item, out_dir, **_):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out_dir / "01_explore_split.ipynb"))

    monkeypatch.setattr(runner, "execute", disk_full)
    code, err = _cli(capsys, "-p", "dataset=mine", "--only", "01")
    assert code == 1 and len(err.strip().splitlines()) == 1
    robust.error(err, names="01_explore_split.ipynb", problem="No space left on device")


def _tiny_table(folder: Path, n_classes: int = 3):
    """Flat-coloured photos, 4 per class: enough for the training loop to run."""
    rows = []
    for c in range(n_classes):
        for i in range(4):
            path = folder / f"c{c}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (40, 30), (60 * c, 20 * i, 100)).save(path)
            rows.append({"path": f"c{c}/{i}.png", "class": f"c{c}", "split": "train"})
    return train.training_table(pd.DataFrame(rows), folder)


def test_epochs_head_zero_skips_phase_one(tmp_path, robust):
    robust.entry = "02 recipe"
    runner.plan(runner.discover_notebooks(only=["02"]), {"epochs_head": 0})  # accepted at the door
    cfg = train.config("default", image_size=32, epochs_head=0, epochs_finetune=1, views=1, batch_size=4)
    result = train.train(_tiny_table(tmp_path), cfg=cfg, backbone="random", progress=False)
    assert list(result.history["phase"]) == [2] and result.best_epoch == 1
    robust.ok("trained phase 2 only")


def test_no_epoch_at_all_is_refused(robust):
    robust.entry = "02 recipe"
    with pytest.raises(SettingsError) as err:
        train.config("default", epochs_head=0, epochs_finetune=0)
    robust.error(str(err.value), names="epochs_finetune", problem="at least one epoch")


def _lock_is_free(folder: Path) -> bool:
    with open(folder / runner.LOCK_NAME, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def test_failed_run_releases_the_lock(workspace, capsys, monkeypatch, robust):
    robust.entry = "runner (concurrent runs)"
    (workspace / "data" / "mine" / "raw").mkdir(parents=True)
    monkeypatch.setattr(runner, "execute", lambda *_, **__: (_ for _ in ()).throw(RunError("cell 3 failed")))
    code, err = _cli(capsys, "-p", "dataset=mine", "--only", "01")
    assert code == 1 and _lock_is_free(workspace / "reports")
    robust.error(err, names=None, problem="cell 3 failed")


def test_leakage_warnings_end_the_run(workspace, monkeypatch, robust):
    robust.entry = "runner (leaky split)"
    (workspace / "data" / "mine" / "processed" / "train").mkdir(parents=True)
    leak = "12 photos in 3 duplicate groups sit in several splits."

    def fake_03(item, out_dir, **_):
        (out_dir.parent / "metrics.json").write_text(json.dumps({"data_warnings": [leak]}))
        return out_dir / f"{item.name}.ipynb"

    monkeypatch.setattr(runner, "execute", fake_03)
    said = []
    runner.run(overrides={"dataset": "mine"}, only=["03"], data_dir="data", reports_dir="reports",
               echo=said.append)
    assert said[-1] == f"WARNING: {leak}"
    robust.ok("leakage repeated as the run's last line")


def test_old_metrics_do_not_repeat_their_warnings(tmp_path):
    old = tmp_path / "metrics.json"
    old.write_text(json.dumps({"data_warnings": ["stale"]}))
    assert runner.data_warnings(old, since=old.stat().st_mtime + 1) == []
    assert runner.data_warnings(old, since=old.stat().st_mtime - 1) == ["stale"]
    assert runner.data_warnings(tmp_path / "none.json", since=0) == []


def test_one_class_is_refused_before_training(tmp_path, robust):
    robust.entry = "02 training table"
    with pytest.raises(DataError) as err:
        _tiny_table(tmp_path, n_classes=1)
    robust.error(str(err.value), names="c0", problem="only 1 class has training photos.*at least 2")


@pytest.fixture()
def panel_run(tmp_path, monkeypatch):
    """Run notebook 04 for real through the CLI from a scratch folder: (exit code, stderr, its printed record)."""
    (tmp_path / "data" / "demo").mkdir(parents=True)  # the dataset must exist; 04 needs nothing in it
    monkeypatch.chdir(tmp_path)

    def run(capsys, *parameters: str) -> tuple[int, str, str]:
        argv = [arg for parameter in parameters for arg in ("-p", parameter)]
        code = cli.main(["run", "--only", "04", "--data-dir", "data", "--reports-dir", "reports", *argv])
        executed = tmp_path / "reports" / "notebooks" / "04_predict_panel.ipynb"
        record = ""
        if code == 0:
            [cell] = [c for c in nbformat.read(executed, as_version=4).cells if c.get("id") == "e4000008"]
            record = "".join(output.get("text", "") for output in cell.outputs)
        return code, capsys.readouterr().err, record

    return run


@pytest.mark.slow
def test_a_mistyped_checkpoint_fails_the_run(panel_run, tmp_path, capsys, robust):
    robust.entry = "runner (04 checkpoint)"
    code, err, _ = panel_run(capsys, "checkpoint=models/typo.pt")
    assert code == 1
    robust.error(err, names=tmp_path / "models" / "typo.pt",
                 problem="04_predict_panel.*parameter checkpoint: no model file")


@pytest.mark.slow
def test_no_trained_model_yet_is_a_notice_not_a_failure(panel_run, tmp_path, capsys, robust):
    robust.entry = "runner (04 checkpoint)"
    code, err, record = panel_run(capsys)
    assert code == 0, err
    assert record.startswith(f"no trained model at {tmp_path / 'reports' / 'model' / 'meterlib_checkpoint.pt'}: ")
    robust.ok("the panel says there is no model yet; the run succeeds")


@pytest.mark.slow
def test_photos_given_as_a_list_are_answered_and_a_missing_one_is_an_error_line(panel_run, tmp_path, capsys,
                                                                                random_checkpoint, robust):
    robust.entry = "runner (04 photos)"
    (tmp_path / "reports" / "model").mkdir(parents=True)
    shutil.copyfile(random_checkpoint, tmp_path / "reports" / "model" / "meterlib_checkpoint.pt")
    Image.new("RGB", (40, 60), (200, 30, 30)).save(tmp_path / "my, meter.png")
    code, err, record = panel_run(capsys, 'photos=["my, meter.png", "sub/gone.jpg"]', "neighbours=0")
    assert code == 0, err
    lines = record.splitlines()
    assert lines[0].startswith("model: 3 types") and len(lines) == 3, record
    assert lines[1].startswith("my, meter.png: ") and "top-3: " in lines[1]
    assert lines[2].startswith("gone.jpg: cannot be answered: ") and "file not found" in lines[2]
    robust.ok("a name with a comma answered, a missing photo an error line")
