"""Where should the temperature come from? Val vs out-of-fold (OOF) predictions of the training photos.

    python benchmarks/bench_calibration.py                          # demo data, default preset, 224 px
    python benchmarks/bench_calibration.py --finetune-epochs 1 3 --folds 5 --options b c
    python benchmarks/bench_calibration.py --label-smoothing 0      # the recipe without label smoothing

One final model is trained as 02 trains it (val chooses the epoch when val is large enough). Its
temperature is then fitted on each calibration source and judged by the final model's test ECE
(15 equal-width bins), by what the UNKNOWN threshold (97 % target accuracy) and the APS
quantile (alpha 0.1) fitted on the same source do on test, and by test NLL:

- val: the final model's val logits, as today (only the classes large enough to have val photos).
- oof-a: folds run the final model's recipe, replaying its kept epochs of both phases.
- oof-b: folds run phase 1 only (the head on the pretrained last block's features).
- oof-cN: folds run phase 1, then a short phase 2 of N epochs (``--finetune-epochs``; own cosine schedule).
- test (oracle): the temperature fitted on test itself, the floor of what temperature scaling can do.

Every source also gets vector scaling (per-class scale and bias fitted by NLL, L2-regularised
towards the source's temperature).
"extra s" is what each source costs on top of training the final model. All folds reuse the
final run's decoded photos and cached frozen-part activations.
The final model's test accuracy per epoch is printed beside the val and pooled OOF accuracy per
epoch, to judge whether the OOF score could choose the final model's epoch.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings

import numpy as np
import pandas as pd
import torch
from scipy import optimize

from bench_training import dataset_table
from meterlib import train
from meterlib.confidence import calibration, conformal, selective
from meterlib.model import backbones, inference, network
from meterlib.run import seeding
from meterlib.train import cache, phases

N_BINS = 15
TARGET_ACCURACY, ALPHA = 0.97, 0.1  # notebook 03's defaults: UNKNOWN threshold target, APS miss rate


class TestCurve(phases.Tracker):
    """The run's tracker, also noting the test accuracy of every epoch (its seconds are kept apart)."""

    def __init__(self, *, use_val: bool, test_acts, test_labels, device):
        super().__init__(use_val=use_val)
        self.test_acts, self.test_labels, self.device, self.seconds = test_acts, test_labels, device, 0.0

    def record(self, model, row: dict) -> None:
        tick = time.perf_counter()
        logits = network.batched(network.tail(model), self.test_acts, batch_size=128, device=self.device)
        row = {**row, "test_acc": float((logits.argmax(1) == self.test_labels).float().mean())}
        self.seconds += time.perf_counter() - tick
        super().record(model, row)


def vector_scaling(logits, labels, *, temperature: float, l2: float = 1e-2):
    """Per-class scale and bias by NLL + l2 * (|scale - 1/T|^2 + |bias|^2), from temperature scaling's 1/T."""
    z, y = np.asarray(logits, np.float64), np.asarray(labels)
    n, k = z.shape
    onehot = np.eye(k)[y]
    centre = np.concatenate([np.full(k, 1.0 / temperature), np.zeros(k)])

    def loss(params):
        scaled = z * params[:k] + params[k:]
        p = np.exp(scaled - scaled.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        nll = -np.log(np.clip(p[np.arange(n), y], 1e-12, 1)).mean()
        grad_scaled = (p - onehot) / n
        grad = np.concatenate([(grad_scaled * z).sum(0), grad_scaled.sum(0)]) + 2 * l2 * (params - centre)
        return nll + l2 * ((params - centre) ** 2).sum(), grad

    params = optimize.minimize(loss, centre, jac=True, method="L-BFGS-B").x
    return lambda new: calibration.softmax(np.asarray(new, np.float64) * params[:k] + params[k:])


def scores(probs, labels, small) -> dict:
    """Test ECE (all photos, and photos of classes without val photos), NLL and accuracy."""
    return {"ece %": 100 * calibration.expected_calibration_error(probs, labels, n_bins=N_BINS),
            "ece small %": 100 * calibration.expected_calibration_error(probs[small], labels[small], n_bins=N_BINS),
            "nll": calibration.negative_log_likelihood(probs, labels),
            "acc %": 100 * float((probs.argmax(1) == labels).mean())}


def decisions(source_probs, source_labels, test_probs, test_labels) -> dict:
    """The UNKNOWN threshold and the APS quantile fitted on a source, and what they do on test."""
    choice = selective.choose_threshold(source_probs.max(1), source_probs.argmax(1) == source_labels,
                                        target_accuracy=TARGET_ACCURACY)
    answered = test_probs.max(1) >= choice.threshold
    sets = conformal.aps_prediction_sets(test_probs, conformal.calibrate_aps(source_probs, source_labels,
                                                                             alpha=ALPHA))
    return {"answered %": 100 * answered.mean(),
            "answered acc %": 100 * float((test_probs.argmax(1) == test_labels)[answered].mean()),
            "aps cover %": 100 * conformal.empirical_coverage(sets, test_labels),
            "aps size": conformal.mean_set_size(sets)}


def ece_floor(probs, *, draws: int = 400, seed: int = 0) -> tuple[float, float, float]:
    """Test ECE that a perfectly calibrated model with these confidences would show: mean, 5th, 95th percentile.

    Each draw makes the top class right with probability equal to its confidence: what remains is
    the sampling noise of ECE on this many photos.
    """
    rng = np.random.default_rng(seed)
    confidence, top = probs.max(1), probs.argmax(1)
    eces = [100 * calibration.expected_calibration_error(
        probs, np.where(rng.random(len(top)) < confidence, top, (top + 1) % probs.shape[1]), n_bins=N_BINS)
        for _ in range(draws)]
    return float(np.mean(eces)), float(np.percentile(eces, 5)), float(np.percentile(eces, 95))


def judge(name: str, source_logits, source_labels, test: dict, *, seconds: float) -> list[dict]:
    """Temperature and vector scaling fitted on one source, judged on the final model's test logits."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", calibration.CalibrationWarning)  # the fallback shows in the note
        fit = calibration.fit_temperature(source_logits, source_labels)
    common = {"source": name, "photos": len(source_labels), "classes": len(np.unique(source_labels)),
              "extra s": seconds}
    vector = vector_scaling(source_logits, source_labels, temperature=fit.temperature)
    test_probs = calibration.softmax(test["logits"], temperature=fit.temperature)
    return [{**common, "calibrator": "temperature", "T": fit.temperature,
             **scores(test_probs, test["labels"], test["small"]),
             **decisions(calibration.softmax(source_logits, temperature=fit.temperature), np.asarray(source_labels),
                         test_probs, test["labels"]),
             "note": "" if fit.fitted else "fallback: " + fit.reason},
            {**common, "calibrator": "vector", "T": np.nan,
             **scores(vector(test["logits"]), test["labels"], test["small"]), "note": ""}]


def final_model(table, args):
    """Prepare the run, train the final model with the test curve noted; (run, kept epochs, test dict)."""
    cfg = train.config("default", image_size=args.image_size, label_smoothing=args.label_smoothing)
    seeding.seed_everything(args.seed)
    tick = time.perf_counter()
    run = train.prepare(table, cfg=cfg, backbone=args.backbone, weights_path=None, images=None, progress=False,
                        options=train.RunOptions(seed=args.seed))
    prepared = time.perf_counter() - tick
    index = {name: i for i, name in enumerate(run.class_names)}
    test_rows, test_images = table[table["split"] == "test"], run.images["test"]
    labels = np.array([index[c] for c in test_rows["class"]])
    fit = run.fit
    test_acts = cache.clean_activations(fit.model.frozen_part, test_images, cfg=cfg, mean=run.mean, std=run.std,
                                        device=fit.device)
    fit.tracker = TestCurve(use_val=fit.tracker.use_val, test_acts=test_acts, test_labels=torch.from_numpy(labels),
                            device=fit.device)
    seconds, kept = phases.run_recipe(fit)
    fit.model.load_state_dict(fit.tracker.best_state)
    fit.model.eval()
    logits = inference.logits_for_images(fit.model, test_images, image_size=cfg.image_size, mean=run.mean,
                                         std=run.std).numpy()
    val_classes = set(table.loc[table["split"] == "val", "class"])
    small = ~test_rows["class"].isin(val_classes).to_numpy()
    print(f"final model: {run.backbone}, {run.selection}, kept epoch {fit.tracker.best_epoch} of "
          f"{len(fit.tracker.rows)} (phase epochs {kept}); prepare {prepared:.0f} s, "
          + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
          + f" (test-curve probe {fit.tracker.seconds:.0f} s not counted in the options' costs)", flush=True)
    return run, kept, {"logits": logits, "labels": labels, "small": small}


def val_logits(run) -> tuple[np.ndarray, np.ndarray]:
    """The final model's logits and labels of the val photos."""
    fit = run.fit
    return network.batched(network.tail(fit.model), fit.val_acts, batch_size=128, device=fit.device).numpy(), fit.val_labels.numpy()


def options(run, kept, args) -> dict:
    """The OOF sources: name -> OutOfFold ('oof-c3': option c with 3 phase-2 epochs)."""
    plans = {"oof-a": (run, kept), "oof-b": (run, (kept[0], 0))}
    for epochs in args.finetune_epochs:
        cfg = dataclasses.replace(run.fit.cfg, epochs_finetune=epochs)
        plans[f"oof-c{epochs}"] = (dataclasses.replace(run, fit=dataclasses.replace(run.fit, cfg=cfg)),
                                   (kept[0], None if epochs else 0))
    found = {}
    for name in (name for option in args.options for name in plans if name.startswith(f"oof-{option}")):
        chosen, epochs = plans[name]
        found[name] = crossfit.cross_fit(chosen, epochs=epochs, folds=args.folds)
        print(f"{name}: {found[name].seconds:.0f} s, fold epochs {found[name].epochs}", flush=True)
    return found


def epoch_curves(run, found: dict) -> pd.DataFrame:
    """Per epoch: the final model's val and test accuracy, and each OOF source's pooled held-out accuracy.

    A fold's phase-2 epochs are numbered as the final model's phase-2 epochs (phase 2 starts after
    all of the final model's phase-1 epochs, also where a fold stopped phase 1 early).
    """
    curves = pd.DataFrame(run.fit.tracker.rows).set_index("epoch")[["phase", "val_acc", "test_acc"]]
    phase1_epochs = int(curves["phase"].eq(1).sum())
    for name, oof in found.items():
        history = oof.history.join(pd.Series(np.bincount(oof.fold), name="n"), on="fold")
        step = history.groupby("fold").cumcount() + 1 - oof.epochs[0]  # phase-2 epoch number in the fold
        epoch = np.where(history["phase"] == 1, history["epoch"], phase1_epochs + step)
        hits = (history["val_acc"] * history["n"]).groupby(epoch).sum()
        curves[f"{name} acc"] = hits / len(oof.fold)
    return curves


def compare(table, args) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train the final model and the OOF sources; (the calibration table, the accuracy per epoch)."""
    run, kept, test = final_model(table, args)
    found = options(run, kept, args)
    rows = [{"source": "none", "photos": 0, "classes": 0, "extra s": 0.0, "calibrator": "-", "T": 1.0,
             **scores(calibration.softmax(test["logits"]), test["labels"], test["small"]), "note": ""}]
    rows += judge("val", *val_logits(run), test, seconds=0.0)
    for name, oof in found.items():
        rows += judge(name, oof.logits, oof.labels, test, seconds=oof.seconds)
    rows += judge("test (oracle)", test["logits"], test["labels"], test, seconds=0.0)
    floor = ece_floor(calibration.softmax(test["logits"], temperature=rows[-2]["T"]))
    print("ECE noise floor: a perfectly calibrated model with the oracle's test confidences would show "
          f"{floor[0]:.2f} % (90 % of draws {floor[1]:.2f} to {floor[2]:.2f} %)")
    return pd.DataFrame(rows), epoch_curves(run, found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="demo")
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--backbone", default=backbones.DEFAULT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--finetune-epochs", type=int, nargs="+", default=[3], help="phase-2 epochs of option c")
    parser.add_argument("--label-smoothing", type=float, default=None, help="None: the preset's")
    parser.add_argument("--options", nargs="+", default=["b", "c", "a"], choices=["a", "b", "c"])
    args = parser.parse_args()

    table = dataset_table(args.dataset, data_dir=args.data_dir, seed=0)
    counts = table["split"].value_counts()
    print(f"{args.dataset}: {table['class'].nunique()} classes; " + ", ".join(f"{s} {n}" for s, n in counts.items())
          + f"; torch threads {torch.get_num_threads()}", flush=True)
    rows, curves = compare(table, args)
    pd.set_option("display.width", 200)
    print("\n" + rows.round(3).to_string(index=False))
    print("\naccuracy per epoch (the final model's val and test; OOF pooled over folds, up to each fold's last epoch)")
    print(curves.round(3).to_string())


if __name__ == "__main__":
    main()
