"""Parameter checks at the door: every notebook parameter has a type and, if numeric, a range."""

import math

import pytest

from meterlib.run import parameters, runner


@pytest.fixture(scope="module")
def declared():
    return {name: info for nb in runner.discover_notebooks()
            for name, info in runner.declared_parameters(nb).items()}


def test_every_numeric_parameter_has_a_range(declared):
    numeric = {name for name, info in declared.items()
               if parameters.base_type(info["inferred_type_name"])[0] in ("int", "float")}
    assert numeric - set(parameters.RANGES) == set()
    assert set(parameters.RANGES) - set(declared) == set(), "ranges of parameters no notebook declares"


def test_every_default_passes_its_own_check(declared):
    for plan in runner.plan(runner.discover_notebooks(), {}):
        for name, value in plan.defaults.items():
            assert parameters.check(name, value, declared[name]["inferred_type_name"]) == value


@pytest.mark.parametrize("value, hint, expected", [
    (3, "int", 3), (3, "float", 3.0), (None, "Optional[int]", None), (2024, "str", "2024"),
    (True, "bool", True), (["a"], "list", ["a"]), ("cosine", "Optional[str]", "cosine"),
])
def test_lossless_values_pass(value, hint, expected):
    result = parameters.check("x", value, hint)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize("value, hint", [
    (True, "int"), (1.0, "int"), ("3", "int"), (math.inf, "float"), (math.nan, "float"),
    (1, "bool"), ("yes", "bool"), (None, "int"), ([1], "str"), ("a,b", "list"), (False, "Optional[float]"),
])
def test_lossy_or_wrong_values_are_refused(value, hint):
    with pytest.raises(parameters.ParameterError, match="parameter x: "):
        parameters.check("x", value, hint)


@pytest.mark.parametrize("name, inside, outside", [
    ("epochs_head", 0, -1), ("views", 1, 0), ("lr_head", 1e-6, 0.0), ("test_fraction", 0.99, 1.0),
    ("val_fraction", 0.0, 1.0), ("near_duplicate_distance", -1, -2), ("hue", 0.5, 0.51),
    ("conformal_alpha", 0.5, 0.0), ("target_accuracy", 1.0, 0.0), ("set_confidence", 0.99, 1.0),
])
def test_range_ends_are_where_the_table_says(name, inside, outside):
    hint = "int" if isinstance(inside, int) else "float"
    assert parameters.check(name, inside, hint) == inside
    with pytest.raises(parameters.ParameterError, match=f"parameter {name}: .* out of range"):
        parameters.check(name, outside, hint)


def test_choices_are_the_stages_own_lists():
    from meterlib.model import backbones
    from meterlib.train import recipe

    assert set(parameters.CHOICES["preset"]) == {*recipe.PRESETS, *recipe.DEPRECATED_PRESETS}
    assert parameters.CHOICES["backbone"] == backbones.CHOICES
    assert parameters.CHOICES["frozen_precision"] == recipe.PRECISIONS
    for name, values in (("finetune_bn", ("train", "frozen")), ("lr_schedule", ("constant", "cosine"))):
        for value in values:  # each listed value is one the recipe accepts
            recipe.config("default", **{name: value})
        with pytest.raises(ValueError):
            recipe.config("default", **{name: "other"})


@pytest.mark.parametrize("name, typo", [("preset", "orignal"), ("backbone", "resnet50"),
                                        ("lr_schedule", "cosin"), ("frozen_precision", "fp16")])
def test_a_misspelt_choice_is_refused_by_name(name, typo):
    with pytest.raises(parameters.ParameterError, match=f"parameter {name}: '{typo}' is not one of"):
        parameters.check(name, typo, "Optional[str]")
    assert parameters.check(name, parameters.CHOICES[name][0], "Optional[str]") == parameters.CHOICES[name][0]
