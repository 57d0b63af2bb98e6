"""The core install predicts without the notebook stack (JupyterLab, papermill, matplotlib ...)."""

import shutil
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from meterlib.run import paths

# Import names of the analysis extra's packages and what they pull in.
ANALYSIS_MODULES = ["jupyterlab", "papermill", "nbconvert", "nbformat", "ipykernel", "ipywidgets",
                    "IPython", "matplotlib", "seaborn", "imagehash"]

PREDICT = textwrap.dedent("""
    import sys, tempfile, pathlib
    import numpy as np
    from PIL import Image
    from meterlib.serve import Predictor
    from meterlib.model import backbones, checkpoint
    folder = pathlib.Path(tempfile.mkdtemp())
    model = backbones.build_classifier("random", 2, pretrained=False)
    spec = checkpoint.ModelSpec("random", ["a", "b"], 32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    checkpoint.save(folder / "m.pt", model=model, spec=spec)
    Image.fromarray(np.zeros((40, 30, 3), np.uint8)).save(folder / "x.png")
    answer = Predictor.from_checkpoint(folder / "m.pt", device="cpu").predict(folder / "x.png")
    print(answer.top_classes[0] in ("a", "b"), sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
""")


def test_predicting_imports_nothing_of_the_analysis_extra():
    blocker = textwrap.dedent(f"""
        import sys
        BLOCKED = {ANALYSIS_MODULES!r}
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{{name}} is not part of the core install")
        sys.meta_path.insert(0, Block())
    """)
    result = subprocess.run([sys.executable, "-c", blocker + PREDICT], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "[]"]


def test_core_dependencies_leave_out_the_notebook_stack():
    project = tomllib.loads((paths.project_root() / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    assert not any(name in core for name in ("jupyterlab", "papermill", "nbconvert", "matplotlib"))
    assert {"jupyterlab", "papermill"} <= {r.split(">")[0] for r in project["optional-dependencies"]["analysis"]}


def _installed_closure(names: list[str]) -> list[metadata.Distribution]:
    """The installed distributions ``names`` and everything installed that they require, with the extras asked for."""
    found, seen, todo = {}, set(), [(name, "") for name in names]
    while todo:
        name, extra = todo.pop()
        name = canonicalize_name(name)
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        try:
            found[name] = metadata.distribution(name)
        except metadata.PackageNotFoundError:  # not installed here (another platform's need): pip installs it
            continue
        for req in map(Requirement, found[name].requires or []):
            if req.marker is None or req.marker.evaluate({"extra": extra}):
                todo += [(req.name, e) for e in ("", *req.extras)]
    return list(found.values())


def _link_torch(folder: Path) -> Path:
    """torch, torchvision and what they require, linked from this environment into ``folder``.

    Copying them into a fresh venv is most of the install's time (several GB of CUDA libraries);
    linked, pip counts them as installed and resolves and installs everything else itself.
    """
    folder.mkdir()
    tops = {}  # top-level name -> where it is; namespace folders such as nvidia/ are shared
    for dist in _installed_closure(["torch", "torchvision"]):
        if dist.name != "setuptools":  # the venv has its own
            tops.update((f.parts[0], dist.locate_file(f.parts[0])) for f in dist.files or [])
    for top, where in tops.items():
        if top not in ("..", "__pycache__") and not top.endswith(".pth"):
            (folder / top).symlink_to(where)
    return folder


@pytest.mark.slow
def test_core_install_in_a_fresh_venv_predicts(tmp_path):
    venv = tmp_path / "core"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    Path(site, "provided_torch.pth").write_text(f"{_link_torch(tmp_path / 'torch')}\n")
    # An editable install writes its egg-info beside pyproject.toml: install a copy, not the project.
    project = tmp_path / "project"
    shutil.copytree(paths.PACKAGE_DIR, project / "meterlib", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(paths.project_root() / name, project / name)
    # Without byte-compiling what it installs (pip's slowest step here; imports compile on the fly).
    install = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-compile", "-e", str(project)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    missing = subprocess.run([python, "-c", "import importlib.util as u; "
                              "print([m for m in ('jupyterlab', 'papermill') if u.find_spec(m)])"],
                             capture_output=True, text=True, timeout=300)
    assert missing.stdout.strip() == "[]", missing.stdout + missing.stderr
    result = subprocess.run([python, "-c", f"BLOCKED = {ANALYSIS_MODULES!r}\n" + PREDICT],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[0] == "True"
