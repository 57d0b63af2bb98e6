"""Cross-fitting: a prediction for every training photo from a model that never trained on it.

The val split exists only for classes with enough photos (and not at all in a train/test layout),
so a temperature, an UNKNOWN threshold or a conformal quantile fitted on val learns from the large
classes only. Cross-fitting splits the training photos into K stratified folds; the model of fold
k runs the recipe on the other folds and predicts fold k's un-augmented photos. Every training
photo thus gets out-of-fold (OOF) logits, in the final model's class order.

The folds reuse what the final run already computed: its cached frozen-part activations and phase
1's pooled features. Each fold starts from the same pretrained weights and fresh head as the final
model and replays the epochs it is given of the final run's kept path (same learning-rate schedule),
without looking at val or at its held-out photos. ``train(folds=K)`` replays phase 1 only: a head
on the pretrained last block, a few seconds in all. Replaying phase 2 too (``cross_fit`` with
the kept epochs of both phases) is the recipe itself, but costs about K - 1 times phase 2.
Phase-1 folds are a weaker model than the final one (benchmarks/bench_calibration.py measures it); their
temperature matched the final model's on test only because label smoothing sets the scale of
both models' logits: without label smoothing it did not (benchmarks/bench_calibration.py).

A class with fewer photos than folds has each photo in a different fold, so each is predicted by a
model that trained on the class's other photos. A class with a single photo is predicted by a
model that never saw the class: its head column is there, in the same place, but untrained, so
that row stands for "a type the model barely knows" rather than for the final model's mistake.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from meterlib.errors import SettingsError
from meterlib.model import network
from meterlib.train import cache, phases
from meterlib.train.prepare import Prepared


@dataclass
class OutOfFold:
    """Out-of-fold predictions of the training photos, one row per photo in training-table order."""

    logits: np.ndarray  # (photos, classes) float32, columns in ``class_names`` order
    labels: np.ndarray  # each photo's class index
    index: np.ndarray  # each photo's index in the training table
    fold: np.ndarray  # the fold that held each photo out
    class_names: list[str]
    epochs: tuple[int, int]  # epochs of phase 1 and of phase 2 that each fold model trained
    history: pd.DataFrame  # per fold and epoch: training scores and scores on the held-out photos
    seconds: float
    feature_probs: np.ndarray | None = None  # (photos, classes): see ``feature_out_of_fold``

    def checkpoint_field(self, photos: list[str]) -> dict:
        """The checkpoint's ``out_of_fold`` field; ``photos``: each row's path as in splits.csv."""
        import torch

        field = {"logits": torch.from_numpy(self.logits), "labels": torch.from_numpy(self.labels.astype(np.int64)),
                 "photos": list(photos), "fold": torch.from_numpy(self.fold.astype(np.int64)),
                 "method": f"{self.fold.max() + 1}-fold cross-fitting, phase 1 replayed for {self.epochs[0]} "
                           "epochs per fold"}
        if self.feature_probs is not None:
            field["feature_probs"] = torch.from_numpy(self.feature_probs)
        return field


def assign_folds(labels, folds: int, *, seed: int) -> np.ndarray:
    """Stratified fold of each photo: every class spread evenly, shuffled by ``seed``, folds of equal size."""
    labels = np.asarray(labels)
    if folds < 2 or folds > len(labels):
        raise SettingsError(f"folds must lie in 2..{len(labels)} (the training photos), got {folds}")
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), dtype=np.int64)
    start = 0  # each class continues where the last one stopped, so the folds fill evenly
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        fold[members] = (start + np.arange(len(members))) % folds
        start += len(members)
    return fold


class Rows:
    """Rows of a tensor, indexed like the tensor itself, without copying them all."""

    def __init__(self, tensor, rows):
        self.tensor, self.rows = tensor, rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, key):
        return self.tensor[self.rows[key]]


def out_of_fold(fit: phases.Fit, *, start_state: dict, clean_acts, epochs: tuple[int | None, int | None],
                index, class_names: list[str], folds: int = 5, progress: bool = False) -> OutOfFold:
    """OOF logits of every training photo of ``fit``: K fold models, each the recipe replayed for ``epochs``.

    ``start_state``: the model's weights before training; ``clean_acts``: frozen-part activations of
    the un-augmented training photos; ``epochs``: how many epochs of phase 1 and phase 2 to run
    (those the final model kept; None: the whole phase); ``index``: the photos' rows in the training
    table. The folds are drawn with ``fit.seed``.
    """
    import torch
    from tqdm.auto import trange

    started = time.perf_counter()
    labels = fit.train_labels.numpy()
    fold = assign_folds(labels, folds, seed=fit.seed)
    logits = np.zeros((len(labels), len(class_names)), dtype=np.float32)
    model, histories = copy.deepcopy(fit.model), []
    for k in trange(folds, desc="cross-fitting", disable=not progress, leave=False):
        held, rest = (torch.from_numpy(np.flatnonzero(rows)) for rows in (fold == k, fold != k))
        model.load_state_dict(start_state)
        fold_fit = _fold_fit(fit, model, rest=rest, held_acts=Rows(clean_acts, held))
        _, ran = phases.run_recipe(fold_fit, stop_after=epochs)
        model.eval()  # its last epoch is the state to keep
        logits[held.numpy()] = network.batched(network.tail(model), fold_fit.val_acts, batch_size=128,
                                               device=fit.device).numpy()
        histories.append(pd.DataFrame(fold_fit.tracker.rows).assign(fold=k))
    return OutOfFold(logits=logits, labels=labels, index=np.asarray(index), fold=fold,
                     class_names=list(class_names), epochs=ran,
                     history=pd.concat(histories, ignore_index=True), seconds=time.perf_counter() - started)


def _fold_fit(fit: phases.Fit, model, *, rest, held_acts: Rows) -> phases.Fit:
    """``fit`` narrowed to the photos ``rest``; the held-out photos take val's place, for the history only."""
    labels = fit.train_labels[rest]
    return dataclasses.replace(
        fit, model=model, train_views=[Rows(view, rest) for view in fit.train_views], train_labels=labels,
        val_acts=held_acts, val_labels=fit.train_labels[held_acts.rows],
        loss_fn=phases.loss_function(labels, model.head.out_features, cfg=fit.cfg, device=fit.device),
        # The kept epochs are replayed: choosing on the held-out photos would flatter their scores.
        tracker=phases.Tracker(use_val=False),
        pooled=None if fit.pooled is None else [Rows(view, rest) for view in fit.pooled])


def feature_out_of_fold(features: np.ndarray, labels: np.ndarray, fold: np.ndarray, *, classes: int,
                        seed: int) -> np.ndarray:
    """OOF probabilities of a logistic regression on ``features`` (photos, dims), in the folds ``fold``.

    A class missing from a fold's training photos gets probability 0 for that fold's photos.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probs = np.zeros((len(labels), classes))
    for k in np.unique(fold):
        held, rest = np.flatnonzero(fold == k), np.flatnonzero(fold != k)
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
        clf.fit(features[rest], labels[rest])
        probs[np.ix_(held, clf.classes_)] = clf.predict_proba(features[held])
    return probs


def cross_fit(run: Prepared, *, epochs: tuple[int | None, int | None], folds: int = 5, progress: bool = False,
              workers: int = 0) -> OutOfFold:
    """Out-of-fold predictions of ``run``'s training photos; each fold replays ``epochs`` of ``run.fit``'s recipe.

    The folds predict the un-augmented photos: the cached clean view, or (a recipe without one) one
    more pass of the training photos through the frozen part. ``feature_probs`` (for the suspect
    labels) comes from the final model's features of the same photos, in the same folds.
    """
    fit = run.fit
    clean = fit.train_views[0] if fit.cfg.clean_view else cache.clean_activations(
        fit.model.frozen_part, run.images["train"], cfg=fit.cfg, mean=run.mean, std=run.std, device=fit.device,
        workers=workers)
    oof = out_of_fold(fit, start_state=run.start_state, clean_acts=clean, epochs=epochs, index=run.index,
                      class_names=run.class_names, folds=folds, progress=progress)
    tick = time.perf_counter()
    features = network.batched(network.pooled(fit.model), clean, batch_size=128, device=fit.device).numpy()
    oof.feature_probs = feature_out_of_fold(features, oof.labels, oof.fold, classes=len(run.class_names),
                                            seed=fit.seed)
    oof.seconds += time.perf_counter() - tick
    return oof
