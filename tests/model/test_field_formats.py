"""The class-dependent checkpoint fields: each malformation at its boundary, with its exact message."""

import math

import pytest
import torch

from meterlib.model import field_formats

N_CLASSES = 4
KEYS_MESSAGE = "must be a dict with the keys logits, labels, photos, fold, method (optionally feature_probs)"


def _out_of_fold(rows: int = 6) -> dict:
    return {"logits": torch.zeros(rows, N_CLASSES), "labels": torch.arange(rows, dtype=torch.int64) % N_CLASSES,
            "photos": [f"p{i}.jpg" for i in range(rows)], "fold": torch.arange(rows, dtype=torch.int64) % 2,
            "method": "2-fold cross-fitting"}


def _problem(value) -> str:
    return field_formats.out_of_fold_problem(value, n_classes=N_CLASSES)


@pytest.mark.parametrize("value", [None, _out_of_fold(), _out_of_fold(0),
                                   {**_out_of_fold(), "feature_probs": torch.full((6, N_CLASSES), 0.25)},
                                   {**_out_of_fold(), "labels": torch.tensor([0, 3, 3, 3, 3, 0])},
                                   {**_out_of_fold(), "labels": torch.full((6,), 2, dtype=torch.int64)}])
def test_a_well_formed_or_absent_out_of_fold_has_no_problem(value):
    assert _problem(value) == ""


@pytest.mark.parametrize("change", [
    lambda f: list(f.items()),
    lambda f: {k: v for k, v in f.items() if k != "fold"},
    lambda f: {k: v for k, v in f.items() if k != "method"},
    lambda f: {**f, "extra": 1},
])
def test_the_keys_must_be_exactly_the_known_ones(change):
    assert _problem(change(_out_of_fold())) == KEYS_MESSAGE


@pytest.mark.parametrize("key, value", [
    ("logits", [[0.0] * N_CLASSES] * 6),
    ("logits", torch.zeros(6, N_CLASSES, dtype=torch.int64)),
    ("logits", torch.zeros(6, N_CLASSES + 1)),
    ("feature_probs", torch.zeros(5, N_CLASSES)),
    ("feature_probs", torch.zeros(6, N_CLASSES - 1)),
    ("feature_probs", torch.zeros(6, N_CLASSES, dtype=torch.int64)),
    ("feature_probs", [[0.25] * N_CLASSES] * 6),
])
def test_scores_must_be_float_tensors_with_a_row_per_photo_and_a_column_per_class(key, value):
    assert _problem({**_out_of_fold(), key: value}) == f"needs '{key}' as a float tensor of shape (photos, 4)"


@pytest.mark.parametrize("key", ["labels", "fold"])
@pytest.mark.parametrize("value", [torch.zeros(6, dtype=torch.int32), torch.zeros(5, dtype=torch.int64),
                                   torch.zeros(6, 1, dtype=torch.int64), [0] * 6])
def test_labels_and_folds_must_be_one_int64_per_row(key, value):
    expected = f"needs '{key}' as an int64 tensor of 6 entries, one per logits row"
    assert _problem({**_out_of_fold(), key: value}) == expected


@pytest.mark.parametrize("labels", [[0, 1, 2, 3, 4, 0], [-1, 0, 1, 2, 3, 0]])
def test_labels_must_index_the_class_names(labels):
    value = {**_out_of_fold(), "labels": torch.tensor(labels, dtype=torch.int64)}
    assert _problem(value) == "has 'labels' outside 0 to 3 (indices into class_names)"


@pytest.mark.parametrize("photos", [tuple(f"p{i}.jpg" for i in range(6)), [f"p{i}.jpg" for i in range(5)],
                                    ["p0.jpg", "p1.jpg", 2, "p3.jpg", "p4.jpg", "p5.jpg"]])
def test_photos_must_be_a_list_of_one_path_per_row(photos):
    assert _problem({**_out_of_fold(), "photos": photos}) == "needs 'photos' as a list of 6 paths, one per logits row"


def test_the_method_must_be_a_string():
    assert _problem({**_out_of_fold(), "method": 5}) == "needs 'method' as a string"


def test_a_logits_entry_that_is_no_tensor_is_named_before_the_other_fields():
    value = {**_out_of_fold(), "logits": None, "labels": None}
    assert _problem(value) == "needs 'logits' as a float tensor of shape (photos, 4)"


@pytest.mark.parametrize("value, expected", [
    (None, ""), ([0.0, 0.5, math.inf, 1.0], ""), ([0.5] * 3, "must be a list of 4 numbers, one per class"),
    ((0.5,) * 4, "must be a list of 4 numbers, one per class"),
    ([0.5, -1e-9, 0.5, 0.5], "must hold numbers >= 0 (inf allowed)"),
    ([0.5, math.nan, 0.5, 0.5], "must hold numbers >= 0 (inf allowed)"),
    ([0.5, "0.5", 0.5, 0.5], "must hold numbers >= 0 (inf allowed)"),
    ([0.5, True, 0.5, 0.5], "must hold numbers >= 0 (inf allowed)"),
])
def test_class_thresholds_are_one_non_negative_number_per_class(value, expected):
    assert field_formats.thresholds_problem(value, n_classes=N_CLASSES) == expected


def test_problems_lists_every_malformed_field_in_order_and_nothing_else():
    fine = {"class_names": list("abcd"), "out_of_fold": _out_of_fold(), "conformal_u": 1.0,
            "conformal_class_thresholds": [0.0] * N_CLASSES}
    assert list(field_formats.problems(fine)) == []
    broken = {**fine, "out_of_fold": {"logits": 1}, "conformal_u": 1.5, "conformal_class_thresholds": [0.1]}
    assert list(field_formats.problems(broken)) == [
        ("out_of_fold", KEYS_MESSAGE), ("conformal_u", "must be a number from 0 to 1"),
        ("conformal_class_thresholds", "must be a list of 4 numbers, one per class")]
    assert [field for field, _ in field_formats.problems({**fine, "conformal_u": -0.01})] == ["conformal_u"]
    assert [field for field, _ in field_formats.problems({**fine, "gallery": "x"})] == ["gallery"]


@pytest.mark.parametrize(("state", "expected"), [
    ({"head.weight": torch.zeros(N_CLASSES, 8)}, ""),
    ({"head.weight": torch.zeros(N_CLASSES + 1, 8)}, f"lists {N_CLASSES} names but the weights give {N_CLASSES + 1} outputs"),
    ({"head.weight": torch.zeros(N_CLASSES - 1, 8)}, f"lists {N_CLASSES} names but the weights give {N_CLASSES - 1} outputs"),
    ({"other.weight": torch.zeros(9, 8)}, ""),  # no head to compare with: build_model names the misfit
    ({"head.weight": torch.zeros(9)}, ""),
    (None, ""),  # an ONNX model's metadata: no weights
])
def test_the_head_must_give_one_output_per_class_name(state, expected):
    assert field_formats.head_problem(state, n_classes=N_CLASSES) == expected


def test_class_names_that_miss_the_head_are_blamed_before_the_fields_sized_by_them():
    # The out-of-fold logits fit the weights' 5 outputs; the 4 names are what is wrong.
    content = {"class_names": list("abcd"), "state_dict": {"head.weight": torch.zeros(5, 8)},
               "out_of_fold": {**_out_of_fold(), "logits": torch.zeros(6, 5)}, "gallery": "x"}
    assert next(field_formats.problems(content)) == (
        "class_names", "lists 4 names but the weights give 5 outputs")


def test_every_weight_must_be_finite_and_the_first_bad_tensor_is_named():
    fine = {"conv.weight": torch.zeros(2, 3), "norm.num_batches_tracked": torch.tensor(7), "on": torch.ones(2).bool()}
    assert field_formats.weights_problem(fine) == "" and field_formats.weights_problem(None) == ""
    for value in (math.nan, math.inf, -math.inf):
        broken = {**fine, "head.weight": torch.tensor([0.5, value]), "head.bias": torch.tensor([math.nan])}
        assert field_formats.weights_problem(broken) == (
            "holds NaN or inf values in 'head.weight'; the weights are broken (retrain with notebook 02)")


def test_the_field_table_says_which_fields_checkpoints_and_the_onnx_metadata_need():
    names = [field.name for field in field_formats.FIELDS]
    assert len(names) == len(set(names))  # each field described once
    assert set(field_formats.CALIBRATION) <= set(field_formats.IN_ONNX)
    assert field_formats.REQUIRED == ("format_version", "state_dict", "backbone", "class_names", "image_size",
                                      "mean", "std")
    assert field_formats.REQUIRED_IN_ONNX == ("backbone", "class_names", "image_size", "mean", "std",
                                              "temperature", "unknown_threshold")
    assert set(field_formats.IN_ONNX) == {*field_formats.REQUIRED_IN_ONNX, "conformal_quantile", "conformal_u",
                                          "conformal_class_thresholds", "unseen_type", "photo_limits",
                                          "splits_sha256", "versions", "lineage"}
