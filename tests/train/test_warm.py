"""A warm start keeps what its parent learnt, imprints new types, and records where it came from."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from meterlib import train
from meterlib.errors import ModelFileError, SettingsError
from meterlib.model import backbones, checkpoint
from meterlib.train import warm

SIZE = 32
SPEC = dict(image_size=SIZE, mean=(0.5,) * 3, std=(0.25,) * 3)
COLOURS = {"blue": (40, 60, 230), "green": (30, 200, 40), "red": (220, 30, 30)}


def _parent(tmp_path, names, *, seed=0, **fields):
    torch.manual_seed(seed)
    model = backbones.build_classifier("random", len(names), pretrained=False)
    path = tmp_path / f"parent{seed}.pt"
    checkpoint.save(path, model=model, spec=checkpoint.ModelSpec("random", names, **SPEC), **fields)
    return path, model.eval()


def test_old_types_keep_their_logits_in_their_new_places(tmp_path):
    path, old = _parent(tmp_path, ["blue", "red"])
    parent = warm.load_parent(path)
    names = ["blue", "green", "red"]  # the new type sorts between the old ones
    assert warm.check_parent(parent, backbone="random", image_size=SIZE, class_names=names) == ["green"]
    torch.manual_seed(5)
    model = backbones.build_classifier("random", 3, pretrained=False).eval()
    warm.start_from(model, parent, names)
    x = torch.randn(4, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.allclose(model(x)[:, [0, 2]], old(x), atol=1e-6)


def test_imprinting_points_the_row_at_the_type_and_scores_the_average_photo_as_the_others():
    torch.manual_seed(0)
    model = backbones.build_classifier("random", 3, pretrained=False)
    before = model.head.weight.detach().clone()
    features = torch.rand(30, before.shape[1]) + 2.0  # a large common part, as pooled features have
    labels = torch.tensor([0, 1, 2] * 10)
    features[labels == 1, :5] += 1.0  # what sets type 1 apart
    warm.imprint(model, features, labels, [1])
    with torch.no_grad():
        row = model.head.weight[1]
        unit = torch.nn.functional.normalize(features, dim=1)
        direction = unit[labels == 1].mean(0) - unit.mean(0)
        assert torch.allclose(row / row.norm(), direction / direction.norm(), atol=1e-5)
        assert row.norm().item() == pytest.approx(before[[0, 2]].norm(dim=1).mean().item(), rel=1e-5)
        average = model.head(features.mean(0, keepdim=True))[0]
        assert average[1].item() == pytest.approx(average[[0, 2]].mean().item(), abs=1e-4)
        assert torch.equal(model.head.weight[[0, 2]], before[[0, 2]])  # old rows untouched
        scores = model.head(features)
        assert (scores[labels == 1, 1] > scores[labels == 1][:, [0, 2]].mean(1)).all()


@pytest.mark.parametrize("change, message", [
    (dict(backbone="efficientnet_lite0"), "keeps the parent's backbone 'random'"),
    (dict(image_size=64), "keeps the parent's image size"),
    (dict(class_names=["blue", "green"]), "lack 1 of the parent's types .red."),
])
def test_a_run_that_cannot_start_from_the_parent_says_why(tmp_path, change, message):
    parent = warm.load_parent(_parent(tmp_path, ["blue", "red"])[0])
    asked = dict(backbone="random", image_size=SIZE, class_names=["blue", "red"]) | change
    with pytest.raises(SettingsError, match=message):
        warm.check_parent(parent, **asked)


def test_weights_of_another_architecture_are_refused_by_file(tmp_path):
    path, _ = _parent(tmp_path, ["blue", "red"])
    parent = warm.load_parent(path)
    parent.content["state_dict"] = {k: v for k, v in parent.content["state_dict"].items() if "last_block" not in k}
    with pytest.raises(ModelFileError, match=f"{path.name}: its weights do not fit"):
        warm.start_from(backbones.build_classifier("random", 3, pretrained=False), parent, ["blue", "green", "red"])


def _colour_table(tmp_path, colours):
    rng = np.random.default_rng(1)
    rows = []
    for name in colours:
        for i in range(14):
            pixels = np.clip(np.array(COLOURS[name]) + rng.normal(0, 20, (40, 30, 3)), 0, 255).astype(np.uint8)
            file = tmp_path / name / f"{i}.jpg"
            file.parent.mkdir(exist_ok=True)
            Image.fromarray(pixels).save(file)
            rows.append({"path": f"{name}/{i}.jpg", "class": name,
                         "split": "train" if i < 8 else ("val" if i < 11 else "test")})
    return train.training_table(pd.DataFrame(rows), tmp_path)


def test_a_warm_run_learns_the_new_type_and_records_its_lineage(tmp_path):
    cfg = train.config("warm", image_size=SIZE, epochs_head=3, epochs_finetune=1, batch_size=8, min_val_images=5)
    old_table = _colour_table(tmp_path, ["blue", "red"])
    first = train.train(old_table, cfg=cfg, backbone="random", progress=False)
    spec = checkpoint.ModelSpec("random", first.class_names, **SPEC)
    parent_path = checkpoint.save(tmp_path / "first.pt", model=first.model, spec=spec)

    table = _colour_table(tmp_path, ["blue", "green", "red"])
    result = train.train(table, cfg=cfg, backbone="random", progress=False, folds=3, warm_start=parent_path)
    assert result.out_of_fold is None  # its parent saw every old photo: no fold is out of sample
    assert result.lineage == {"parent_sha256": checkpoint.file_sha256(parent_path), "parent_classes": 2,
                              "types_added": ["green"], "training_photos": 24, "ancestors": []}
    test = table[table["split"] == "test"]
    acc = train.accuracy(result.model, [Image.open(f) for f in test["file"]], result.class_names,
                         list(test["class"]), image_size=SIZE, mean=result.mean, std=result.std)
    assert acc >= 0.9

    child = checkpoint.save(tmp_path / "child.pt", model=result.model,
                            spec=checkpoint.ModelSpec("random", result.class_names, **SPEC), lineage=result.lineage)
    grandchild = warm.lineage(warm.load_parent(child), added=[], photos=24)
    assert grandchild["parent_sha256"] == checkpoint.file_sha256(child)
    assert grandchild["ancestors"] == [checkpoint.file_sha256(parent_path)]


def test_a_warm_run_keeps_each_step_and_zero_epochs_stop_after_the_step_before(tmp_path):
    cfg = train.config("warm", image_size=SIZE, epochs_head=2, epochs_finetune=1, batch_size=8, min_val_images=5)
    first = train.train(_colour_table(tmp_path, ["blue", "red"]), cfg=cfg, backbone="random", progress=False)
    parent_path = checkpoint.save(tmp_path / "first.pt", model=first.model,
                                  spec=checkpoint.ModelSpec("random", first.class_names, **SPEC))
    table = _colour_table(tmp_path, ["blue", "green", "red"])
    result = train.train(table, cfg=cfg, backbone="random", progress=False, warm_start=parent_path)
    steps = result.warm_steps
    assert list(steps) == list(train.WARM_STEPS)
    head = "head.weight"
    assert torch.equal(steps["imprint"][head][[0, 2]], first.model.state_dict()[head])  # old rows as the parent's
    assert not torch.equal(steps["head"][head], steps["imprint"][head])  # phase 1 refit the head
    block = next(name for name in steps["head"] if "last_block" in name and steps["head"][name].is_floating_point())
    assert torch.equal(steps["head"][block], steps["imprint"][block])  # phase 1 leaves the block alone
    assert all(torch.equal(value, steps["finetune"][name]) for name, value in result.model.state_dict().items())
    imprinted, refit, finished = result.warm_step_seconds().values()
    assert 0 < imprinted < refit < finished == result.seconds

    imprint_only = train.train(table, cfg=dataclasses.replace(cfg, epochs_head=0, epochs_finetune=0),
                               backbone="random", progress=False, warm_start=parent_path)
    assert len(imprint_only.history) == 0
    assert all(torch.equal(value, steps["imprint"][name]) for name, value in imprint_only.model.state_dict().items())
    assert all(state is imprint_only.warm_steps["imprint"] for state in imprint_only.warm_steps.values())


def test_a_run_from_the_pretrained_backbone_keeps_no_steps(tmp_path):
    cfg = train.config("warm", image_size=SIZE, epochs_head=1, epochs_finetune=0, batch_size=8)
    assert train.train(_colour_table(tmp_path, ["blue", "red"]), cfg=cfg, backbone="random",
                       progress=False).warm_step_seconds() == {}


@pytest.mark.parametrize("broken", [
    {"parent_sha256": "abc"},
    {"types_added": [""]},
    {"ancestors": ["not a digest"]},
    {"extra": 1},
])
def test_a_malformed_lineage_is_refused_on_write(tmp_path, broken):
    good = {"parent_sha256": "0" * 64, "parent_classes": 2, "types_added": ["green"], "training_photos": 3,
            "ancestors": []}
    _parent(tmp_path, ["blue", "red"], seed=1, lineage=good)  # a valid one is written
    with pytest.raises(ModelFileError, match="lineage"):
        _parent(tmp_path, ["blue", "red"], seed=2, lineage=good | broken)


def test_the_parent_recipe_comes_back_from_its_file_and_the_warm_one_keeps_its_inputs(tmp_path):
    own = train.config("default", image_size=SIZE, batch_size=8, frozen_precision="float32",
                       augment={"brightness": 0.1})
    path, _ = _parent(tmp_path, ["blue", "red"], training={**own.as_dict(), "preset": "default", "seed": 3})
    parent = warm.load_parent(path)
    assert warm.parent_recipe(parent) == own
    warm_cfg = warm.warm_recipe(parent)
    assert (warm_cfg.image_size, warm_cfg.batch_size, warm_cfg.frozen_precision, warm_cfg.augment) == \
        (SIZE, 8, "float32", own.augment)
    assert (warm_cfg.epochs_head, warm_cfg.epochs_finetune, warm_cfg.views) == \
        (train.PRESETS["warm"].epochs_head, train.PRESETS["warm"].epochs_finetune, train.PRESETS["warm"].views)
    parent.content["training"] = {"views": 2, "augment": {"no_such_strength": 1}}
    with pytest.raises(ModelFileError, match="does not hold a recipe"):
        warm.parent_recipe(parent)
