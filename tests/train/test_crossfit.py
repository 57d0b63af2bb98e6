"""Cross-fitting: one out-of-fold row per training photo, from a model that never trained on it."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from meterlib import train
from meterlib.model import backbones
from meterlib.train import crossfit, phases

SIZE = 32
# Training photos per class: two ordinary classes, one with fewer photos than folds, one with a single photo.
TRAIN_COUNTS = {"amber": 8, "blue": 6, "cyan": 2, "dusk": 1}


def _table(tmp_path, *, with_val: bool) -> pd.DataFrame:
    """Flat-coloured noisy photos; two test photos per class and, if asked, two val photos."""
    rng = np.random.default_rng(0)
    rows = []
    for c, (name, n_train) in enumerate(TRAIN_COUNTS.items()):
        colour = np.array([60 * c + 30, 200 - 50 * c, 40 + 60 * (c % 2)])
        splits = ["train"] * n_train + ["test"] * 2 + (["val"] * 2 if with_val else [])
        for i, split in enumerate(splits):
            file = tmp_path / name / f"{i}.png"
            file.parent.mkdir(exist_ok=True)
            pixels = np.clip(colour + rng.normal(0, 15, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(file)
            rows.append({"path": f"{name}/{i}.png", "class": name, "split": split})
    return train.training_table(pd.DataFrame(rows), tmp_path)


CFG = dict(image_size=SIZE, epochs_head=2, epochs_finetune=1, views=2, min_val_images=4,
           batch_size=32)  # one batch per epoch: the last block's optimizer steps are what tests pay for


@pytest.fixture(scope="module")
def spied_run(tmp_path_factory):
    """A run with 3 folds and no val split, and, per fold, the photos it held out and those it trained on."""
    held_per_fold, trained_on = [], []
    fold_fit, epoch = crossfit._fold_fit, phases._epoch

    def spy_fold_fit(fit, model, *, rest, held_acts):
        held_per_fold.append(set(held_acts.rows.tolist()))
        return fold_fit(fit, model, rest=rest, held_acts=held_acts)

    def spy_epoch(forward, optimizer, inputs, labels, loss_fn, **kwargs):
        if isinstance(inputs, crossfit.Rows):  # a fold's epoch (the final model trains on whole tensors)
            trained_on.append((len(held_per_fold) - 1, set(inputs.rows.tolist())))
        return epoch(forward, optimizer, inputs, labels, loss_fn, **kwargs)

    table = _table(tmp_path_factory.mktemp("photos"), with_val=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(crossfit, "_fold_fit", spy_fold_fit)
        patch.setattr(phases, "_epoch", spy_epoch)
        result = train.train(table, cfg=train.config("default", **CFG), backbone="random", progress=False,
                             folds=3, options=train.RunOptions(deterministic=True))
    return table, result, held_per_fold, trained_on


def test_folds_are_stratified_even_and_seeded():
    labels = np.repeat([0, 1, 2, 3], [12, 7, 3, 1])
    fold = train.assign_folds(labels, 5, seed=0)
    assert np.ptp(np.bincount(fold, minlength=5)) <= 1
    for label in range(4):
        per_fold = np.bincount(fold[labels == label], minlength=5)
        assert np.ptp(per_fold) <= 1  # a class with fewer photos than folds: one photo per fold at most
    assert np.array_equal(fold, train.assign_folds(labels, 5, seed=0))
    assert not np.array_equal(fold, train.assign_folds(labels, 5, seed=1))
    with pytest.raises(ValueError, match="folds"):
        train.assign_folds(labels, 1, seed=0)


def test_rows_index_like_the_tensor_they_view():
    tensor = torch.arange(20).reshape(10, 2)
    rows = crossfit.Rows(tensor, torch.tensor([7, 2, 5]))
    assert len(rows) == 3
    assert torch.equal(rows[1:3], tensor[[2, 5]]) and torch.equal(rows[torch.tensor([2, 0])], tensor[[5, 7]])


def test_every_training_photo_gets_one_row_in_the_final_models_class_order(spied_run):
    table, result, _, _ = spied_run
    oof = result.out_of_fold
    assert oof.logits.shape == (sum(TRAIN_COUNTS.values()), len(result.class_names))
    assert np.isfinite(oof.logits).all()
    assert oof.class_names == result.class_names == sorted(TRAIN_COUNTS)
    train_rows = table[table["split"] == "train"]
    assert list(oof.index) == list(train_rows.index)
    assert list(np.asarray(oof.class_names)[oof.labels]) == list(train_rows["class"])
    assert "crossfit" in result.timings and oof.seconds > 0


def test_no_fold_model_trains_on_a_photo_it_predicts(spied_run):
    _, result, held_per_fold, trained_on = spied_run
    oof, n_train = result.out_of_fold, sum(TRAIN_COUNTS.values())
    # Each photo is held out by exactly one fold, and that fold's training epochs never include it.
    assert sum(map(len, held_per_fold)) == n_train and set().union(*held_per_fold) == set(range(n_train))
    assert all(set(np.flatnonzero(oof.fold == k)) == held for k, held in enumerate(held_per_fold))
    # Folds replay phase 1 only: every epoch of each fold is one of its head epochs.
    assert len(trained_on) == 3 * CFG["epochs_head"] and all(not rows & held_per_fold[k] for k, rows in trained_on)
    # A class with fewer photos than folds: one photo per fold, predicted by a model that saw the others.
    cyan = np.flatnonzero(oof.labels == oof.class_names.index("cyan"))
    assert len(set(oof.fold[cyan])) == len(cyan)
    assert all(set(cyan) - held_per_fold[k] <= rows for k, rows in trained_on if set(cyan) & held_per_fold[k])
    # The class with one photo: the model that predicts that photo never saw the class.
    dusk = int(np.flatnonzero(oof.labels == oof.class_names.index("dusk"))[0])
    assert all(not (oof.labels[list(rows)] == oof.labels[dusk]).any() for k, rows in trained_on
               if k == oof.fold[dusk])


def test_without_val_the_folds_of_train_replay_all_of_phase_1(spied_run):
    _, result, _, _ = spied_run
    oof = result.out_of_fold
    assert result.selection.startswith("last epoch") and oof.epochs == (2, 0)
    assert oof.history.groupby("fold")["phase"].apply(list).tolist() == [[1, 1]] * 3


def test_cross_fitting_repeats_with_the_seed_and_replays_the_kept_epochs(tmp_path):
    table = _table(tmp_path, with_val=True)
    # Without a clean view among the cached ones, the un-augmented training photos take one more pass.
    run = train.prepare(table, cfg=train.config("default", **CFG, clean_view=False), backbone="random",
                        weights_path=None, images=None, progress=False, options=train.RunOptions())
    _, kept = phases.run_recipe(run.fit)
    first, again = (crossfit.cross_fit(run, epochs=kept, folds=3) for _ in range(2))
    assert np.array_equal(first.logits, again.logits) and np.array_equal(first.fold, again.fold)
    assert run.selection.startswith("best val")
    head, finetune = kept
    phase1_epochs = sum(row["phase"] == 1 for row in run.fit.tracker.rows)
    assert run.fit.tracker.best_epoch == (phase1_epochs + finetune if finetune else head) <= 3
    assert head <= phase1_epochs
    per_fold = first.history.groupby("fold")["phase"].apply(list).tolist()
    assert per_fold == [[1] * head + [2] * finetune] * 3


def _fit(*, lr: float, patience: int, epochs=(3, 2)) -> phases.Fit:
    torch.manual_seed(0)
    model = backbones.build_classifier("random", 3, pretrained=False).eval()
    with torch.no_grad():
        views = [model.frozen_part(torch.randn(12, 3, SIZE, SIZE)) for _ in range(2)]
        val = model.frozen_part(torch.randn(6, 3, SIZE, SIZE))
    cfg = dataclasses.replace(train.config("default", epochs_head=epochs[0], epochs_finetune=epochs[1]),
                              lr_head=lr, lr_finetune=lr, patience=patience, batch_size=12)
    return phases.Fit(model=model, cfg=cfg, train_views=views, train_labels=torch.arange(12) % 3, val_acts=val,
                      val_labels=torch.arange(6) % 3, loss_fn=torch.nn.CrossEntropyLoss(),
                      device=torch.device("cpu"), tracker=phases.Tracker(use_val=True), seed=0)


def test_folds_on_bfloat16_activations_are_folds_on_them_widened():
    # A bfloat16 run caches bfloat16 activations; the folds must compute on them as on float32 copies.
    stored, widened = _fit(lr=1e-3, patience=0), _fit(lr=1e-3, patience=0)
    stored.train_views = [view.bfloat16() for view in stored.train_views]
    widened.train_views = [view.float() for view in stored.train_views]
    oof = [crossfit.out_of_fold(fit, start_state=fit.model.state_dict(), clean_acts=fit.train_views[0],
                                epochs=(1, 1), index=np.arange(12), class_names=["a", "b", "c"], folds=3)
           for fit in (stored, widened)]
    assert oof[0].epochs == (1, 1) and np.array_equal(oof[0].logits, oof[1].logits)
    pd.testing.assert_frame_equal(oof[0].history, oof[1].history)


def test_run_recipe_names_the_epochs_on_the_way_to_the_kept_state():
    # Learning rate 0: the first epoch stays the best, phase 2 never improves on it.
    fit = _fit(lr=0.0, patience=1)
    seconds, kept = phases.run_recipe(fit)
    assert kept == (1, 0) and set(seconds) == {"phase1", "phase2"}
    assert [row["phase"] for row in fit.tracker.rows] == [1, 1, 2]


def test_stopping_a_phase_early_keeps_its_learning_rate_schedule():
    full, cut = _fit(lr=1e-3, patience=0), _fit(lr=1e-3, patience=0)
    phases.run_recipe(full)
    phases.run_recipe(cut, stop_after=(2, 1))  # each phase one epoch short of its schedule
    rows = pd.DataFrame(cut.tracker.rows)
    assert list(rows["phase"]) == [1, 1, 2]
    expected = pd.DataFrame(full.tracker.rows).groupby("phase")["lr"].apply(lambda lr: list(lr)[:2])
    assert list(rows["lr"]) == expected[1] + expected[2][:1]


def test_feature_folds_see_through_a_wrong_label_they_did_not_train_on():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    features = np.eye(3)[labels] * 4 + rng.normal(0, 0.5, (60, 3))
    noisy = labels.copy()
    noisy[[0, 25, 50]] = [1, 2, 0]  # three photos given another class's label
    fold = crossfit.assign_folds(noisy, 5, seed=0)
    probs = crossfit.feature_out_of_fold(features, noisy, fold, classes=4, seed=0)
    assert probs.shape == (60, 4) and np.allclose(probs.sum(axis=1), 1)
    assert (probs[:, 3] == 0).all()  # a class no photo has gets nothing
    assert (probs.argmax(axis=1) == labels).all()  # the swapped photos too: their own label was held out
    assert (probs[[0, 25, 50], noisy[[0, 25, 50]]] < 0.2).all()


def test_the_checkpoint_field_holds_every_row_and_the_suspect_probabilities(spied_run):
    from meterlib.model import field_formats

    oof = spied_run[1].out_of_fold
    field = oof.checkpoint_field([f"p{i}.png" for i in range(len(oof.labels))])
    assert field["method"] == f"3-fold cross-fitting, phase 1 replayed for {oof.epochs[0]} epochs per fold"
    assert field["feature_probs"].shape == field["logits"].shape == (len(oof.labels), len(oof.class_names))
    assert field_formats.out_of_fold_problem(field, n_classes=len(oof.class_names)) == ""
    field["feature_probs"] = field["feature_probs"][:, :2]
    assert "feature_probs" in field_formats.out_of_fold_problem(field, n_classes=len(oof.class_names))
