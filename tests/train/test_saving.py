"""02's model file (``train.save_trained``): every field it writes, with the value it must hold."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from meterlib import train
from meterlib.model import checkpoint, gallery, inference, reference
from meterlib.train.probe import ProbeResult

SIZE = 32
CLASSES = ["red", "green", "blue"]
TRAIN_PER_CLASS = 14  # more than a gallery keeps per class (12): which photos it keeps depends on the seed
FIELDS = ["format", "format_version", "state_dict", "backbone", "class_names", "image_size", "mean", "std",
          "training", "splits_sha256", "versions", "metrics", "temperature", "unknown_threshold", "created",
          "history", "gallery", "reference_features", "out_of_fold"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small training run with out-of-fold predictions, on flat-coloured photos under ``root``."""
    root = tmp_path_factory.mktemp("mine")
    rng = np.random.default_rng(0)
    rows = []
    for c, colour in enumerate([(220, 30, 30), (30, 200, 40), (40, 60, 230)]):
        for i in range(TRAIN_PER_CLASS + 6):
            file = root / CLASSES[c] / f"{i}.png"
            file.parent.mkdir(exist_ok=True)
            Image.fromarray(np.clip(np.array(colour) + rng.normal(0, 20, (SIZE, SIZE, 3)), 0, 255)
                            .astype(np.uint8)).save(file)
            split = "train" if i < TRAIN_PER_CLASS else ("val" if i < TRAIN_PER_CLASS + 3 else "test")
            rows.append({"path": f"{CLASSES[c]}/{i}.png", "class": CLASSES[c], "split": split})
    table = train.training_table(pd.DataFrame(rows), root)
    cfg = train.config("original", image_size=SIZE, epochs_head=1, epochs_finetune=1, views=1, batch_size=16,
                       min_val_images=5)
    result = train.train(table, cfg=cfg, backbone="random", progress=False, folds=2,
                         options=train.RunOptions(seed=3, deterministic=True))
    return root, table, result


def _save(tmp_path, root, table, result, **options):
    path = train.save_trained(result, tmp_path / "model.pt", table=table, dataset_dir=root, splits_sha256="ab" * 32,
                              preset="original", scores={"val": 0.5, "test": 0.25}, **options)
    assert path == tmp_path / "model.pt"
    return checkpoint.load(path)


def test_the_trained_model_file_holds_every_field(trained, tmp_path):
    root, table, result = trained
    probe = ProbeResult(classifier=None, C=0.1, val_accuracy=0.75, test_accuracy=1.0)
    saved = _save(tmp_path, root, table, result, linear_probe=probe)
    assert list(saved) == FIELDS
    model_state = result.model.state_dict()
    assert list(saved["state_dict"]) == list(model_state)
    assert all(torch.equal(saved["state_dict"][name], tensor.cpu()) for name, tensor in model_state.items())
    assert (saved["backbone"], saved["class_names"], saved["image_size"]) == ("random", sorted(CLASSES), SIZE)
    assert (saved["mean"], saved["std"]) == (list(result.mean), list(result.std))
    assert saved["training"] == {**result.config.as_dict(), "preset": "original", "backbone_choice": "random",
                                 "backbone_reason": result.backbone_reason, "seed": 3, "deterministic": True,
                                 "dataset": root.name}
    assert saved["splits_sha256"] == "ab" * 32
    assert saved["metrics"] == {"best_epoch": result.best_epoch, "epochs_run": len(result.history),
                                "selection": result.selection, "val_accuracy": 0.5, "test_accuracy": 0.25,
                                "train_seconds": round(result.seconds, 1), "probe_C": 0.1,
                                "probe_val_accuracy": 0.75, "probe_test_accuracy": 1.0}
    assert saved["history"] == result.history.to_dict(orient="list")
    assert (saved["temperature"], saved["unknown_threshold"]) == (1.0, 0.5)  # uncalibrated until 03


def test_the_gallery_holds_training_photos_drawn_with_the_runs_seed(trained, tmp_path):
    root, table, result = trained
    stored = _save(tmp_path, root, table, result)["gallery"]
    train_rows = table[table["split"] == "train"]
    spec = checkpoint.ModelSpec(backbone=result.backbone, class_names=result.class_names, image_size=SIZE,
                                mean=result.mean, std=result.std)
    expected = gallery.build(result.model, list(train_rows["file"]),
                             [result.class_names.index(name) for name in train_rows["class"]], spec=spec, root=root,
                             seed=3)
    assert stored["names"] == expected["names"] and set(stored["names"]) <= set(train_rows["path"])
    assert len(stored["names"]) == 12 * len(CLASSES)
    other_seed = gallery.build(result.model, list(train_rows["file"]),
                               [result.class_names.index(name) for name in train_rows["class"]], spec=spec,
                               root=root, seed=0)
    assert stored["names"] != other_seed["names"]
    assert torch.equal(stored["labels"], expected["labels"]) and torch.equal(stored["features"], expected["features"])
    assert all(torch.equal(a, b) for a, b in zip(stored["thumbnails"], expected["thumbnails"]))


def test_the_out_of_fold_predictions_name_each_training_photo(trained, tmp_path):
    root, table, result = trained
    oof = result.out_of_fold
    stored = _save(tmp_path, root, table, result)["out_of_fold"]
    assert stored["photos"] == table.loc[oof.index, "path"].tolist()
    assert sorted(stored["photos"]) == sorted(table.loc[table["split"] == "train", "path"])
    np.testing.assert_array_equal(stored["logits"].numpy(), oof.logits)
    np.testing.assert_array_equal(stored["labels"].numpy(), oof.labels)
    np.testing.assert_array_equal(stored["fold"].numpy(), oof.fold)
    assert stored["method"].startswith("2-fold cross-fitting")


def test_without_folds_or_probe_those_fields_stay_empty(trained, tmp_path):
    root, table, result = trained
    saved = _save(tmp_path, root, table, dataclasses.replace(result, out_of_fold=None))
    assert saved["out_of_fold"] is None
    assert not any(name.startswith("probe_") for name in saved["metrics"])


def test_the_reference_features_hold_every_training_photo_as_the_model_sees_it(trained, tmp_path):
    root, table, result = trained
    stored = _save(tmp_path, root, table, result)["reference_features"]
    train_rows = table[table["split"] == "train"]
    labels = [result.class_names.index(name) for name in train_rows["class"]]
    pictures = inference.load_resized(list(train_rows["file"]), image_size=SIZE)
    spec = checkpoint.ModelSpec(backbone=result.backbone, class_names=result.class_names, image_size=SIZE,
                                mean=result.mean, std=result.std)
    assert stored["labels"].tolist() == labels and stored["k"] == reference.K
    expected = gallery.unit_features(result.model, pictures, spec)
    assert np.allclose(stored["features"].float().numpy(), expected, atol=2e-3)
