"""The headless runner: parameters, failures, atomic results."""

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from meterlib.errors import RunError, SettingsError
from meterlib.run import runner


def _notebook(folder, name, body, params='x: int = 1  # a number'):
    nb = new_notebook(cells=[new_code_cell(params, metadata={"tags": ["parameters"]}),
                             new_code_cell(body)],
                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                               "language": "python"}})
    path = folder / name
    nbformat.write(nb, path)
    return path


def test_parse_assignment_reads_yaml_scalars():
    assert runner.parse_assignment("epochs=3") == ("epochs", 3)
    assert runner.parse_assignment("lr=1e-3") == ("lr", 1e-3)
    assert runner.parse_assignment("flag=true") == ("flag", True)
    assert runner.parse_assignment("dataset=my photos") == ("dataset", "my photos")
    with pytest.raises(SettingsError, match="name=value"):
        runner.parse_assignment("novalue")


def test_plan_gives_each_notebook_only_its_parameters(tmp_path):
    a = _notebook(tmp_path, "01_a.ipynb", "pass", params="x: int = 1  # a\ny: int = 2  # b")
    b = _notebook(tmp_path, "02_b.ipynb", "pass", params="y: int = 2  # b")
    planned = runner.plan([a, b], {"x": 5, "y": 6})
    assert [item.parameters for item in planned] == [{"x": 5, "y": 6}, {"y": 6}]


def test_plan_rejects_unknown_parameter(tmp_path):
    nb = _notebook(tmp_path, "01_a.ipynb", "pass")
    with pytest.raises(SettingsError, match="not_a_param"):
        runner.plan([nb], {"not_a_param": 1})


def test_plan_rejects_notebook_without_parameters_cell(tmp_path):
    nb = _notebook(tmp_path, "01_a.ipynb", "pass", params="x = 1")
    nb_node = nbformat.read(nb, as_version=4)
    nb_node.cells[0].metadata = {}
    nbformat.write(nb_node, nb)
    with pytest.raises(RunError, match="no cell tagged 'parameters'"):
        runner.plan([nb], {})


def test_discover_keeps_numbered_notebooks_in_order(tmp_path):
    for name in ["02_b.ipynb", "01_a.ipynb", "scratch.ipynb"]:
        _notebook(tmp_path, name, "pass")
    assert [p.name for p in runner.discover_notebooks(tmp_path)] == ["01_a.ipynb", "02_b.ipynb"]
    assert [p.name for p in runner.discover_notebooks(tmp_path, only=["02"])] == ["02_b.ipynb"]
    with pytest.raises(SettingsError, match="no notebook matches"):
        runner.discover_notebooks(tmp_path, only=["09"])


def test_unknown_profile_is_named():
    with pytest.raises(SettingsError, match="unknown profile 'huge'"):
        runner.load_profile("huge")


def test_bundled_profiles_only_set_declared_parameters():
    notebooks = runner.discover_notebooks()
    for name in runner.available_profiles():
        runner.plan(notebooks, runner.load_profile(name))


def test_parameter_file_must_be_a_mapping(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(SettingsError, match="p.yaml must hold a mapping"):
        runner.load_parameter_file(bad)


def test_execute_writes_ipynb_and_html(tmp_path):
    nb = _notebook(tmp_path, "01_ok.ipynb", "print(x * 2)")
    out = runner.execute(runner.plan([nb], {"x": 21})[0], tmp_path / "out")
    executed = nbformat.read(out, as_version=4)
    assert executed.cells[-1].outputs[0]["text"] == "42\n"
    assert out.with_suffix(".html").read_text().count("42") >= 1


def test_failure_names_notebook_and_cell_and_keeps_last_good_result(tmp_path):
    nb = _notebook(tmp_path, "01_flaky.ipynb", "assert x == 1, 'x must be 1'")
    out_dir = tmp_path / "out"
    good = runner.execute(runner.plan([nb], {"x": 1})[0], out_dir)
    before = good.read_bytes()
    with pytest.raises(RunError) as err:
        runner.execute(runner.plan([nb], {"x": 2})[0], out_dir)
    message = str(err.value)
    assert "01_flaky.ipynb" in message and "cell" in message and "x must be 1" in message
    assert good.read_bytes() == before
    assert (out_dir / "01_flaky.failed.ipynb").is_file()


def test_cli_rejects_unknown_parameter_before_running(tmp_path):
    # Every folder a run could write is a scratch one, and the timeout is far below a pipeline run:
    # were the check gone, this fails in seconds and writes nothing into the project.
    result = subprocess.run([sys.executable, "-m", "meterlib", "run", "-p", "not_a_param=1",
                             "--data-dir", str(tmp_path / "data"), "--reports-dir", str(tmp_path / "reports")],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    assert "not_a_param" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_run_only_accepts_profile_parameters_of_other_notebooks(tmp_path, monkeypatch):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    out = '\nreports_dir: str = ""  # results'
    _notebook(notebooks, "01_a.ipynb", "print(x)", params="x: int = 1  # a" + out)
    _notebook(notebooks, "02_b.ipynb", "print(y)", params="y: int = 2  # b" + out)
    monkeypatch.setattr(runner.paths, "notebooks_dir", lambda: notebooks)
    monkeypatch.setattr(runner, "load_profile", lambda name: {"x": 5, "y": 7})
    done = runner.run(profile="any", only=["02"],
                      reports_dir=str(tmp_path / "reports"), echo=lambda _: None)
    assert [p.name for p in done] == ["02_b.ipynb"]
    assert nbformat.read(done[0], as_version=4).cells[-1].outputs[0]["text"] == "7\n"


def test_kernels_talk_over_private_sockets_without_the_tcp_warning(tmp_path, capfd):
    # ipykernel warns on every start over TCP ("running over TCP without encryption"); over IPC it need not.
    nb = _notebook(tmp_path, "01_kernel.ipynb", "from ipykernel.kernelapp import IPKernelApp\n"
                                                "app = IPKernelApp.instance()\nprint(app.transport, app.ip)")
    out = runner.execute(runner.plan([nb], {})[0], tmp_path / "out")
    transport, sockets = nbformat.read(out, as_version=4).cells[-1].outputs[0]["text"].split()
    assert transport == "ipc"
    assert "without encryption" not in capfd.readouterr().err
    # The sockets live in a private scratch folder (removed after the run), not beside the notebook
    # where concurrent runs would share their names.
    sockets = Path(sockets)
    assert sockets.is_absolute() and tmp_path not in sockets.parents and not sockets.parent.exists()
