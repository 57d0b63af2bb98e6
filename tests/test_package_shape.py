"""The package's shape: every module in a layer, imports that only point down the stages, no cycles."""

import ast
from pathlib import Path

import pytest

from meterlib.run import paths

PACKAGE = paths.PACKAGE_DIR
# Low to high; a module may import its own layer's package and any lower layer, never a higher one.
# The runner plans and checks every stage's notebooks (their settings included), so it sits above
# them all, below the command line. Scale runs serve's predictions and discover's features on a cluster.
LAYERS = [("errors",), ("run",), ("confidence",), ("data", "synth"), ("model",), ("train",), ("serve",), ("discover",), ("scale",),
          ("export",), ("evaluate",), ("panel",), ("run.runner",), ("cli",), ("__main__",)]
LAYER_OF = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _type_only(tree: ast.Module) -> set[int]:
    """The ids of the nodes inside ``if TYPE_CHECKING:`` blocks: imports for type hints, never run."""
    return {id(node) for block in ast.walk(tree)
            if isinstance(block, ast.If) and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
            for statement in block.body for node in ast.walk(statement)}


def _imports(path: Path) -> set[str]:
    """Every meterlib module that ``path`` imports when it runs, at the top or inside a function."""
    found = set()
    tree = ast.parse(path.read_text())
    skipped = _type_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("meterlib"):
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("meterlib")}
    return found - {"meterlib"}


def _stage(module: str) -> str:
    parts = module.split(".")
    if ".".join(parts[1:]) in LAYER_OF:  # a module with a layer of its own
        return ".".join(parts[1:])
    return parts[1] if len(parts) > 1 else "errors"


def _layer(module: str) -> int:
    return LAYER_OF[_stage(module)]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_belongs_to_a_layer(module):
    assert _stage(module) in LAYER_OF or module == "meterlib"


def test_imports_only_point_down_the_stages():
    upward = [f"{module} imports {target}" for module, path in MODULES.items() if module != "meterlib"
              for target in _imports(path)
              if _layer(target) > _layer(module)
              or (_layer(target) == _layer(module) and _stage(target) != _stage(module))]
    assert upward == []


def test_no_import_cycles():
    graph = {module: _imports(path) & set(MODULES) for module, path in MODULES.items()}
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            assert state.get(target) != "open", " -> ".join(trail + [module, target])
            if target not in state:
                visit(target, trail + [module])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_the_checks_see_real_imports():
    # Guards the guards: the scan finds the imports it is meant to judge.
    assert "meterlib.run.paths" in _imports(MODULES["meterlib.run.runner"])
    assert "meterlib.data.audit" not in _imports(MODULES["meterlib.data.splits"])  # a type hint only
    assert _layer("meterlib.serve.predictor") > _layer("meterlib.model.checkpoint") > _layer("meterlib.run.paths")
    assert _layer("meterlib.run.runner") > _layer("meterlib.train.recipe") > _layer("meterlib.run.parameters")


def test_test_modules_have_names_unique_across_the_suite():
    # pytest imports test files by their basename (no packages under tests/): two alike stop collection.
    names = [path.name for path in (PACKAGE.parent / "tests").rglob("test_*.py")]
    assert len(names) > 50 and sorted(set(names)) == sorted(names)
