"""Synthetic data: the camera model, the nuisance draw and one rendered photo."""

import numpy as np
import pytest

from meterlib.synth import nuisance, scene
from meterlib.synth.catalog import BY_NAME
from meterlib.synth.photo import image_rng, render_photo


def test_camera_without_tilt_maps_the_aim_point_to_the_image_centre_at_scale_one():
    h = scene.camera_matrix(width=100, height=200, rotation_deg=0, tilt_x_deg=0, tilt_y_deg=0, centre=(30, 40))
    back = scene.image_to_scene(h, np.array([[50.0, 100.0], [60.0, 100.0]]))
    assert np.allclose(back, [[30, 40], [40, 40]])


def test_tilt_makes_the_far_side_smaller():
    h = scene.camera_matrix(width=100, height=200, rotation_deg=0, tilt_x_deg=0, tilt_y_deg=15, centre=(0, 0))
    left, right = scene.image_to_scene(h, np.array([[0.0, 0.0], [0.0, 200.0]])), \
        scene.image_to_scene(h, np.array([[100.0, 0.0], [100.0, 200.0]]))
    assert abs(np.ptp(left[:, 1]) - np.ptp(right[:, 1])) > 5


def test_nuisance_values_stay_in_their_documented_ranges():
    draws = [nuisance.sample(np.random.default_rng(i), width=720) for i in range(300)]
    assert all(40 <= d["jpeg_quality"] <= 95 for d in draws)
    assert all(abs(d["tilt_x_deg"]) <= 20 and abs(d["tilt_y_deg"]) <= 20 for d in draws)
    assert {d["occlusion"] for d in draws} == set(nuisance.OCCLUSIONS)
    assert {d["light"] for d in draws} == {"normal", "low", "over"}
    assert 0.05 < np.mean([d["defocus_sigma"] > 0 for d in draws]) < 0.5


@pytest.mark.parametrize("size", [(96, 160), (200, 120)])
def test_a_photo_has_the_requested_size(size):
    photo, values = render_photo(BY_NAME["AMPEXA1"], image_rng(0, 0, 0), width=size[0], height=size[1])
    assert photo.size == size and photo.mode == "RGB"
    assert {"zoom", "dirt", "lcd_reading"} <= set(values)


def test_variants_differ_where_their_cue_is_with_everything_else_equal():
    a, _ = render_photo(BY_NAME["AMPEXA1"], image_rng(0, 0, 0), width=120, height=200)
    b, _ = render_photo(BY_NAME["AMPEXA3"], image_rng(0, 0, 0), width=120, height=200)  # blue backlight
    diff = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).sum(axis=2)
    assert 0 < (diff > 30).mean() < 0.2
