"""Parameter checks at the door: every notebook parameter has a type and, if numeric, a range."""

import dataclasses
import math

import pytest

from meterlib import train
from meterlib.errors import SettingsError
from meterlib.run import parameters, paths, runner


@pytest.fixture(scope="module")
def declared():
    return {name: info for nb in runner.discover_notebooks()
            for name, info in runner.declared_parameters(nb).items()}


def test_every_numeric_parameter_has_a_range(declared):
    numeric = {name for name, info in declared.items()
               if parameters.base_type(info["inferred_type_name"])[0] in ("int", "float")}
    rules = runner.door()
    assert {name for name in numeric if name not in rules or rules[name].range is None} == set()
    assert set(rules) - set(declared) == set(), "rules of parameters no notebook declares"


def test_a_training_setting_has_one_rule_and_no_table_entry():
    settings = {**parameters.rules(train.TrainConfig), **parameters.rules(train.Augment)}
    assert set(settings) & (set(parameters.RANGES) | set(parameters.CHOICES)) == set()
    assert {name: runner.door()[name] for name in settings} == settings


def test_02_declares_each_training_setting_as_its_field_says():
    """Type, None for the preset's value and the help line: the parameter line follows the field."""
    declared = runner.declared_parameters(paths.notebooks_dir() / "02_train.ipynb")
    for kind in (train.TrainConfig, train.Augment):
        helps = parameters.rules(kind)
        for field in dataclasses.fields(kind):
            if field.name in helps:
                line = declared[field.name]
                assert (line["inferred_type_name"], line["default"], line["help"]) == (
                    f"Optional[{field.type}]", "None", f"{helps[field.name].help}; None: the preset's"), field.name
    presets_decide = {name for name, line in declared.items() if line["help"].endswith("None: the preset's")}
    assert presets_decide == {*parameters.rules(train.TrainConfig), *parameters.rules(train.Augment)}


def test_every_default_passes_its_own_check(declared):
    for plan in runner.plan(runner.discover_notebooks(), {}):
        for name, value in plan.defaults.items():
            hint = declared[name]["inferred_type_name"]
            assert parameters.check(name, value, hint, door=runner.door()) == value


@pytest.mark.parametrize("value, hint, expected", [
    (3, "int", 3), (3, "float", 3.0), (None, "Optional[int]", None), (2024, "str", "2024"),
    (True, "bool", True), (["a"], "list", ["a"]), ("cosine", "Optional[str]", "cosine"),
])
def test_lossless_values_pass(value, hint, expected):
    result = parameters.check("x", value, hint, door=runner.door())
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize("value, hint", [
    (True, "int"), (1.0, "int"), ("3", "int"), (math.inf, "float"), (math.nan, "float"),
    (1, "bool"), ("yes", "bool"), (None, "int"), ([1], "str"), ("a,b", "list"), (False, "Optional[float]"),
])
def test_lossy_or_wrong_values_are_refused(value, hint):
    with pytest.raises(SettingsError, match="parameter x: "):
        parameters.check("x", value, hint, door=runner.door())


@pytest.mark.parametrize("name, inside, outside", [
    ("epochs_head", 0, -1), ("views", 1, 0), ("lr_head", 1e-6, 0.0), ("test_fraction", 0.99, 1.0),
    ("val_fraction", 0.0, 1.0), ("near_duplicate_distance", -1, -2), ("hue", 0.5, 0.51),
    ("conformal_alpha", 0.5, 0.0), ("target_accuracy", 1.0, 0.0), ("set_confidence", 0.99, 1.0),
])
def test_range_ends_are_where_the_table_says(name, inside, outside):
    hint = "int" if isinstance(inside, int) else "float"
    assert parameters.check(name, inside, hint, door=runner.door()) == inside
    with pytest.raises(SettingsError, match=f"parameter {name}: .* out of range"):
        parameters.check(name, outside, hint, door=runner.door())


def test_choices_are_the_stages_own_lists():
    from meterlib.model import backbones

    assert parameters.CHOICES["preset"] == tuple(train.PRESETS)
    assert parameters.CHOICES["backbone"] == backbones.CHOICES
    assert runner.door()["frozen_precision"].choices == train.PRECISIONS


@pytest.mark.parametrize("name, typo", [("preset", "orignal"), ("backbone", "resnet50"),
                                        ("lr_schedule", "cosin"), ("frozen_precision", "fp16")])
def test_a_misspelt_choice_is_refused_by_name(name, typo):
    with pytest.raises(SettingsError, match=f"parameter {name}: '{typo}' is not one of"):
        parameters.check(name, typo, "Optional[str]", door=runner.door())
    first = runner.door()[name].choices[0]
    assert parameters.check(name, first, "Optional[str]", door=runner.door()) == first
