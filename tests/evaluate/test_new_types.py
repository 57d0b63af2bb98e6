"""Judging a model with added types: old and new types apart, missing types wrong, ECE after val's temperature."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from meterlib.evaluate import new_types

COLOURS = {"blue": (0, 0, 255), "green": (0, 255, 0), "red": (255, 0, 0)}
SIZE = 8


class ByColour(torch.nn.Module):
    """Logits = ``scale`` x the photo's mean red, green, blue (after normalising with mean 0, std 1)."""

    def __init__(self, order, scale=1.0):
        super().__init__()
        self.order, self.scale = order, scale

    def forward(self, x):
        return self.scale * x.mean(dim=(2, 3))[:, self.order]


def photos(classes):
    return new_types.Judged([Image.new("RGB", (SIZE, SIZE), COLOURS[c]) for c in classes], list(classes))


def judge(model, names, *, val, test):
    return new_types.judge(model, names, val=val, test=test, new=["green"], image_size=SIZE,
                           mean=(0, 0, 0), std=(1, 1, 1))


def test_old_and_new_types_are_counted_apart():
    model = ByColour([2, 1, 0], scale=5.0)  # blue, green, red
    test = photos(["blue", "red", "green", "green"])
    found = judge(model, ["blue", "green", "red"], val=photos(["blue", "green", "red"] * 4), test=test)
    assert found["old types"] == 1.0 and found["new types"] == 1.0
    wrong_red = ByColour([2, 1, 2], scale=5.0)  # "red" outputs blue's logit: red photos tie, argmax picks blue
    found = judge(wrong_red, ["blue", "green", "red"], val=photos(["blue", "green"] * 4), test=test)
    assert found["old types"] == 0.5 and found["new types"] == 1.0


def test_a_model_without_the_new_type_gets_its_photos_wrong_and_no_val_keeps_temperature_one():
    parent = ByColour([2, 0], scale=5.0)  # blue, red only
    found = judge(parent, ["blue", "red"], val=new_types.Judged([], []), test=photos(["blue", "red", "green"]))
    assert found["old types"] == 1.0 and found["new types"] == 0.0
    probs = torch.softmax(torch.tensor([5.0, 0.0]), 0).max().item()  # each known photo's confidence at T = 1
    assert found["test ECE"] == pytest.approx(1 - probs, abs=1e-6)


def test_a_group_without_test_photos_is_nan():
    found = judge(ByColour([2, 1, 0]), ["blue", "green", "red"], val=new_types.Judged([], []),
                  test=photos(["blue", "red"]))
    assert math.isnan(found["new types"]) and found["old types"] == 1.0
    assert set(found) == set(new_types.COLUMNS)
