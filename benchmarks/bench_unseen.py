"""Which score tells a meter type the model never saw from a known one? Side by side on one trained model.

    python benchmarks/bench_unseen.py                    # reports/model checkpoint, demo splits
    python benchmarks/bench_unseen.py --checkpoint m.pt --dataset mydata --photos ../shared/reference/real_meter_photos

Known photos are the test split; unseen ones are the holdout classes that notebook 01 kept out of
training, and the photos of ``--photos`` (meters of types the model has no class for). Each score
is oriented so that higher means "unseen":

- logits: max-softmax and energy (at the checkpoint's temperature), ViM (logits plus the norm of the
  features outside the main subspace of the training features);
- features of the served model (the pooled features the head reads, L2-normalised): k-nearest-
  neighbour cosine distance to the training photos (Sun et al. 2022) and the relative Mahalanobis
  distance (class means, a Ledoit-Wolf shrunk covariance, minus the distance to the whole);
- the same with the pretrained backbone's features beside the fine-tuned ones (concatenated);
- fused: the smaller of two conformal p-values (a feature score and energy, each ranked among the
  val photos), doubled (Bonferroni), so that the threshold states its false-alarm rate.

Printed per score: AUROC known vs holdout with a 95 % bootstrap interval, FPR at 95 % TPR, and at
the operating point that flags 5 % of the val photos: the share of known test photos, holdout
photos and ``--photos`` photos flagged. One model and its fixed holdout classes.

With ``--rotations N`` (the protocol that chooses a method) it retrains instead, N times:

    python benchmarks/bench_unseen.py --rotations 10                       # demo: random class triples
    python benchmarks/bench_unseen.py --rotations 4 --dataset jomjol       # jomjol_digit11: one digit in turn
    python benchmarks/bench_unseen.py --rotations 2 --epochs-head 2 --epochs-finetune 1 --views 1 --image-size 96

Each rotation draws ``--drop`` classes (seeded; default 3, jomjol 1 digit) among those the split
trains on (the demo's own holdout classes stay out), trains on the rest and compares the known
test photos with every photo (train, val, test) of the dropped classes: AUROC with a 95 %
bootstrap interval and FPR at 95 % TPR of max-softmax and energy (at the fitted temperature), the
k = 1 cosine similarity to the rotation's training photos (``model.reference``) and the fused
p-value of ``confidence.unseen.fit_unseen_rule`` fitted on the rotation's val photos; at its
alpha (0.05) the share of known test photos falsely flagged ``unseen_type``, and the share of the
dropped photos flagged ``unseen_type`` or refused as unsure by the UNKNOWN threshold
(``confidence.fitted.fit_calibration`` on val, with notebook 03's default targets), answered by
``Predictor.predictions`` as served; per rotation and as mean +- sd over rotations.

Cheaper than N runs of notebook 02, and said so in the output: the frozen part's activations
(``train.prepare``: every augmented view of every training photo, and clean views of all photos)
are computed once and shared by the rotations, which narrow them to their photos as cross-fitting
folds do (``train.crossfit.Rows``); each rotation trains a fresh pretrained model with the recipe's
two phases on them. Every rotation's model is scored from the same cached clean activations
(frozen part in the recipe's precision, bfloat16 on CPUs built for it) rather than from photos;
the first rotation checks that against the served path (``reference.build`` and
``Predictor.evidence`` on a few photos) and prints the largest difference. ``--epochs-head``,
``--epochs-finetune`` and ``--views`` cut the default recipe to fit a time budget.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_curve

from meterlib import train
from meterlib.confidence import fitted, selective, unseen
from meterlib.data import photos, splits
from meterlib.model import backbones, checkpoint, field_formats, inference, network, reference
from meterlib.run import paths, seeding
from meterlib.serve.predictor import UNSEEN_TYPE, Evidence, Predictor
from meterlib.train import cache, crossfit, phases
from meterlib.train.prepare import _classifier, _selection

FALSE_ALARMS = 0.05  # of known photos flagged at the operating point
K_VALUES = (1, 5, 10)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def photo_sets(manifest, dataset_dir: Path, extra: Path | None) -> dict[str, list[Path]]:
    sets = {split: [dataset_dir / path for path in manifest.loc[manifest["split"] == split, "path"]]
            for split in ("train", "val", "test", splits.HOLDOUT)}
    if extra is not None:
        sets["photos"] = sorted(path for path in extra.iterdir() if photos.is_image_name(path))
    return sets


def embed(model, content: dict, sets: dict[str, list[Path]]) -> dict[str, dict[str, np.ndarray]]:
    """Per set: logits and the fine-tuned and pretrained features of every photo."""
    pretrained = backbones.build_classifier(content["backbone"], len(content["class_names"])).eval()
    preprocessing = dict(image_size=int(content["image_size"]), mean=content["mean"], std=content["std"])
    head_w, head_b = head_of(model)
    found = {}
    for name, files in sets.items():
        pictures = inference.load_resized(files, image_size=preprocessing["image_size"])
        with torch.no_grad():
            tuned = inference.features_for_images(model, pictures, **preprocessing).numpy()
            base = inference.features_for_images(pretrained, pictures, **preprocessing).numpy()
        found[name] = {"tuned": tuned, "base": base, "logits": tuned @ head_w.T + head_b}
        print(f"{name}: {len(files)} photos", flush=True)
    return found


def head_of(model) -> tuple[np.ndarray, np.ndarray]:
    return model.head.weight.detach().numpy(), model.head.bias.detach().numpy()


def scores(emb: dict, labels: np.ndarray, temperature: float, head) -> dict:
    """Score name -> function of one set's embeddings (higher: more likely unseen)."""
    train = emb["train"]
    banks = {"tuned": unit(train["tuned"]),
             "tuned+base": np.hstack([unit(train["tuned"]), unit(train["base"])]) / np.sqrt(2)}

    def view(e, key):
        return unit(e["tuned"]) if key == "tuned" else np.hstack([unit(e["tuned"]), unit(e["base"])]) / np.sqrt(2)

    def knn(key, k):
        return lambda e: -np.sort(view(e, key) @ banks[key].T, axis=1)[:, -k]

    def mahalanobis(key):
        x = view(train, key)
        means = np.stack([x[labels == c].mean(0) for c in np.unique(labels)])
        within = LedoitWolf().fit(x - means[np.searchsorted(np.unique(labels), labels)]).precision_
        whole, centre = LedoitWolf().fit(x).precision_, x.mean(0)

        def score(e):
            q = view(e, key)
            # (q - m) W (q - m) for every class mean m, without an n x classes x d array
            to_means = ((q @ within) * q).sum(1)[:, None] - 2 * q @ within @ means.T \
                + ((means @ within) * means).sum(1)[None]
            return to_means.min(1) - (((q - centre) @ whole) * (q - centre)).sum(1)
        return score

    weight, bias = head
    origin = -np.linalg.pinv(weight) @ bias
    centred = train["tuned"] - origin
    eigenvalues, vectors = np.linalg.eigh(np.cov(centred.T))
    residual = vectors[:, np.argsort(eigenvalues)[::-1][min(256, centred.shape[1] // 2):]]
    scale = train["logits"].max(1).mean() / np.linalg.norm(centred @ residual, axis=1).mean()

    found = {"max-softmax": lambda e: -selective.max_softmax_score(e["logits"], temperature=temperature),
             "energy": lambda e: -selective.energy_score(e["logits"], temperature=temperature),
             "ViM": lambda e: (scale * np.linalg.norm((e["tuned"] - origin) @ residual, axis=1)
                               - selective.energy_score(e["logits"]))}
    for key in banks:
        found.update({f"kNN k={k} ({key})": knn(key, k) for k in K_VALUES})
        found[f"rel. Mahalanobis ({key})"] = mahalanobis(key)
    return found


def p_values(calibration: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Conformal p-values: the share of calibration scores at least as high (counting the photo itself)."""
    ranked = np.sort(calibration)
    return (len(ranked) - np.searchsorted(ranked, values, side="left") + 1) / (len(ranked) + 1)


def auroc_interval(known: np.ndarray, unseen: np.ndarray, *, n_boot: int = 500, seed: int = 0) -> tuple:
    """AUROC of unseen over known, its 95 % percentile bootstrap interval, and the FPR at 95 % TPR."""
    rng = np.random.default_rng(seed)
    draws = [selective.separation_auroc(rng.choice(unseen, len(unseen)), rng.choice(known, len(known)))
             for _ in range(n_boot)]
    fpr, tpr, _ = roc_curve(np.r_[np.zeros(len(known)), np.ones(len(unseen))], np.r_[known, unseen])
    return (selective.separation_auroc(unseen, known), *np.quantile(draws, [0.025, 0.975]),
            float(fpr[np.searchsorted(tpr, 0.95)]))


def report(name: str, per_set: dict[str, np.ndarray], threshold: float) -> str:
    auroc, low, high, fpr95 = auroc_interval(per_set["test"], per_set[splits.HOLDOUT])
    flagged = "  ".join(f"{key} {np.mean(values > threshold):6.1%}" for key, values in per_set.items()
                        if key != "val")
    return f"{name:40s} {auroc:.3f} [{low:.3f}, {high:.3f}]  {fpr95:6.1%}   {flagged}"


# ---- rotations: retrain without a few classes, then score those classes as unseen ------------------

ROTATION_SCORES = ("max-softmax", "energy", "kNN k=1", "fused p-value", "fused (min)")
DIGITS = "jomjol"  # the dataset name whose rotations hold out one digit in turn (bench_training's jomjol)
SCORE_BATCH = 128  # cached activations per pass through the trained part


def notebook_defaults(name: str) -> dict:
    """The default values of a notebook's parameters (e.g. 03's calibration targets)."""
    import ast

    from meterlib.run import runner

    return {key: ast.literal_eval(value["default"])
            for key, value in runner.declared_parameters(paths.notebooks_dir() / name).items()}


@dataclass
class Shared:
    """What every rotation reuses: the full training table, its prepared run and clean activations per split."""

    table: pd.DataFrame  # train/val/test rows of every class the split trains on
    run: train.Prepared  # frozen-part activations of every view of every training photo, and of val
    clean: dict  # split -> clean frozen-part activations, in the table's row order within the split
    seconds: float


def share_activations(table: pd.DataFrame, *, cfg: train.TrainConfig, seed: int) -> Shared:
    """Decode every photo and run the frozen part once: augmented training views, clean views of all splits."""
    started = time.perf_counter()
    run = train.prepare(table, cfg=cfg, backbone=backbones.DEFAULT, weights_path=None, images=None,
                        progress=False, options=train.RunOptions(seed=seed))
    phases.head_phase(run.fit)  # phase 1's pooled features of the views (the pretrained last block), once
    fit = run.fit
    kwargs = dict(cfg=cfg, mean=run.mean, std=run.std, device=fit.device)
    clean = {"train": fit.train_views[0] if cfg.clean_view else cache.clean_activations(
                 fit.model.frozen_part, run.images["train"], **kwargs),
             "val": fit.val_acts, "test": cache.clean_activations(fit.model.frozen_part, run.images["test"], **kwargs)}
    return Shared(table=table, run=run, clean=clean, seconds=time.perf_counter() - started)


def draw_rotations(table: pd.DataFrame, *, dataset: str, rotations: int, drop: int, seed: int) -> list[list[str]]:
    """The classes each rotation drops: random draws of ``drop`` classes, or (jomjol) the digits in a random order."""
    classes = sorted(table.loc[table["split"] == "train", "class"].unique())
    rng = np.random.default_rng(seed)
    if dataset == DIGITS:
        digits = [name for name in classes if name.isdigit()]
        order = rng.permutation(digits)
        if rotations * drop > len(order):
            raise SystemExit(f"{rotations} rotations of {drop} digit(s) need more than {len(order)} digits")
        return [sorted(order[i * drop:(i + 1) * drop]) for i in range(rotations)]
    if drop >= len(classes) - 1:
        raise SystemExit(f"--drop {drop}: needs at least two classes left of {len(classes)}")
    return [sorted(rng.choice(classes, drop, replace=False)) for _ in range(rotations)]


def kept_rows(shared: Shared, dropped: Sequence[str]) -> dict[str, np.ndarray]:
    """Per split: whether each row (in the split's order) is of a class the rotation keeps."""
    return {split: ~shared.table.loc[shared.table["split"] == split, "class"].isin(dropped).to_numpy()
            for split in splits.SPLITS}


def train_rotation(shared: Shared, dropped: Sequence[str], kept: dict, *, seed: int):
    """A fresh pretrained model trained by the recipe on the kept classes' cached views: (model, class names, table)."""
    base = shared.run.fit
    table = shared.table[~shared.table["class"].isin(dropped)]
    seeding.seed_everything(seed)
    model, class_names, _, _ = _classifier(table, backbones.DEFAULT, None, base.device)
    index = {name: i for i, name in enumerate(class_names)}
    labels = {split: torch.tensor([index[c] for c in table.loc[table["split"] == split, "class"]], dtype=torch.long)
              for split in ("train", "val")}
    rows = {split: torch.from_numpy(np.flatnonzero(kept[split])) for split in ("train", "val")}
    val_acts = crossfit.Rows(base.val_acts, rows["val"]) if base.val_acts is not None and len(rows["val"]) else None
    use_val, _ = _selection(val_acts, base.cfg)
    fit = dataclasses.replace(
        base, model=model, train_views=[crossfit.Rows(view, rows["train"]) for view in base.train_views],
        train_labels=labels["train"], val_acts=val_acts, val_labels=labels["val"],
        loss_fn=phases.loss_function(labels["train"], len(class_names), cfg=base.cfg, device=base.device),
        tracker=phases.Tracker(use_val=use_val), seed=seed,
        pooled=[crossfit.Rows(view, rows["train"]) for view in base.pooled])
    phases.run_recipe(fit)
    model.load_state_dict(fit.tracker.best_state)
    return model.eval(), class_names, table


def on_activations(model):
    """The classifier with its frozen part replaced by the identity: cached activations in, as served after it."""
    return torch.nn.Sequential(torch.nn.Identity(), *network.tail(model))


def scored(scoring, acts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits, similarity, nearest class) of ``reference.scoring`` on cached activations, in batches."""
    parts = []
    with torch.no_grad():
        for start in range(0, len(acts), SCORE_BATCH):
            parts.append(scoring(network.to_device(acts[start:start + SCORE_BATCH], next(scoring.buffers()).device)))
    logits, similarity, nearest = (torch.cat(column).cpu().numpy() for column in zip(*parts))
    return logits.astype(np.float64), similarity.astype(np.float64), nearest


def reference_of(model, acts, labels: np.ndarray, *, device) -> dict:
    """``reference_features`` as ``reference.build`` makes them (unit pooled features, k = K), from activations."""
    pooled = network.batched(network.pooled(model), acts, batch_size=SCORE_BATCH, device=device)
    found = {"features": torch.nn.functional.normalize(pooled, dim=1).half(),
             "labels": torch.as_tensor(labels, dtype=torch.int64), "k": reference.K}
    problem = field_formats.reference_problem(found, n_classes=int(labels.max()) + 1)
    if problem:
        raise SystemExit(f"reference features: {problem}")
    return found


def served_difference(model, ref: dict, shared: Shared, kept: dict, class_names: list[str], *,
                      cached: dict, photos_checked: int = 12) -> str:
    """The served path (photos through ``reference.build`` and ``Predictor.evidence``) against the cached one."""
    cfg, run = shared.run.fit.cfg, shared.run
    spec = checkpoint.ModelSpec(backbone=run.backbone, class_names=class_names, image_size=cfg.image_size,
                                mean=run.mean, std=run.std)
    train_at = np.flatnonzero(kept["train"])[:photos_checked]
    test_at = np.flatnonzero(kept["test"])[:photos_checked]
    built = reference.build(model, [run.images["train"][i] for i in train_at],
                            ref["labels"][:len(train_at)].numpy(), spec=spec)
    feature_gap = float((built["features"].float() - ref["features"][:len(train_at)].float()).abs().max())
    predictor = Predictor(model=model, class_names=class_names, image_size=cfg.image_size, mean=list(run.mean),
                          std=list(run.std), reference=ref)
    evidence = predictor.evidence([run.images["test"][i] for i in test_at])
    logit_gap = float(np.abs(evidence.logits - cached["logits"][:len(test_at)]).max())
    similarity_gap = float(np.abs(evidence.similarity - cached["similarity"][:len(test_at)]).max())
    return (f"served path vs cached activations on {len(train_at)} + {len(test_at)} photos: largest difference "
            f"{feature_gap:.4f} in a reference feature, {logit_gap:.4f} in a logit, "
            f"{similarity_gap:.4f} in a similarity")


def evaluate_rotation(model, class_names: list[str], table: pd.DataFrame, shared: Shared, kept: dict, *,
                      calibration_settings: dict, n_boot: int, seed: int, check: bool) -> tuple[dict, str]:
    """One rotation's scores and rates (a row of the results), and the served-path check when asked."""
    device = shared.run.fit.device
    index = {name: i for i, name in enumerate(class_names)}
    labels = {split: np.array([index[c] for c in table.loc[table["split"] == split, "class"]], dtype=np.int64)
              for split in splits.SPLITS}
    clean = shared.clean
    ref = reference_of(model, crossfit.Rows(clean["train"], torch.from_numpy(np.flatnonzero(kept["train"]))),
                       labels["train"], device=device)
    scoring = reference.scoring(on_activations(model), ref).to(device)
    picked = lambda split, keep: crossfit.Rows(clean[split], torch.from_numpy(np.flatnonzero(keep)))  # noqa: E731
    found = {}
    for name, acts in (("val", picked("val", kept["val"])), ("test", picked("test", kept["test"])),
                       ("unseen", torch.cat([clean[split][torch.from_numpy(np.flatnonzero(~kept[split]))]
                                             for split in splits.SPLITS if (~kept[split]).any()]))):
        found[name] = dict(zip(("logits", "similarity", "nearest"), scored(scoring, acts)))
    note = served_difference(model, ref, shared, kept, class_names, cached=found["test"]) if check else ""

    s = calibration_settings
    data = fitted.calibration_data(found["val"]["logits"], labels["val"], out_of_fold=None,
                                   min_val=s["min_calibration_images"])
    groups = fitted.training_size_groups(table, class_names, small_below=s["group_small_below"],
                                         large_from=s["group_large_from"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a target not met is in the row (target_met)
        calibrated = fitted.fit_calibration(data.logits, data.labels, groups, min_samples=s["min_calibration_images"],
                                            target_accuracy=s["target_accuracy"], alpha=s["conformal_alpha"],
                                            confidence=s["set_confidence"])
    temperature = calibrated.calibration.temperature
    rule = unseen.fit_unseen_rule(found["val"]["logits"], found["val"]["similarity"], temperature=temperature,
                                  alpha=unseen.DEFAULT_ALPHA, min_photos=s["min_unseen_photos"])
    # The served fusion (unseen.DEFAULT_FUSION) beside the other, to choose between them on rotations.
    other = unseen.fit_unseen_rule(found["val"]["logits"], found["val"]["similarity"], temperature=temperature,
                                   alpha=unseen.DEFAULT_ALPHA, min_photos=s["min_unseen_photos"], fusion="min")
    served = Predictor(model=model, class_names=class_names, image_size=shared.run.fit.cfg.image_size,
                       mean=list(shared.run.mean), std=list(shared.run.std),
                       calibration=dataclasses.replace(calibrated.calibration, unseen_type=rule), reference=ref)

    def oriented(e):  # higher: more likely unseen
        return {"max-softmax": -selective.max_softmax_score(e["logits"], temperature=temperature),
                "energy": -selective.energy_score(e["logits"], temperature=temperature),
                "kNN k=1": -e["similarity"],
                **{name: (-fitted_rule.p_value(e["logits"], e["similarity"], temperature=temperature)
                          if fitted_rule is not None else np.full(len(e["logits"]), np.nan))
                   for name, fitted_rule in (("fused p-value", rule), ("fused (min)", other))}}

    known, new = oriented(found["test"]), oriented(found["unseen"])
    answers = {name: served.predictions(Evidence(e["logits"], e["similarity"], e["nearest"]))
               for name, e in (("test", found["test"]), ("unseen", found["unseen"]))}
    reasons = {name: np.array([a.reason or "" for a in answered]) for name, answered in answers.items()}
    row = {"known": len(found["test"]["logits"]), "unseen": len(found["unseen"]["logits"]),
           "test_accuracy": float(np.mean(found["test"]["logits"].argmax(1) == labels["test"])),
           "temperature": temperature, "unknown_threshold": calibrated.calibration.unknown_threshold,
           "target_met": calibrated.threshold.target_met, "val": len(labels["val"])}
    for name in ROTATION_SCORES:
        values = (known[name], new[name])
        row[name] = (auroc_interval(*values, n_boot=n_boot, seed=seed) if not np.isnan(values[0]).any()
                     else (np.nan,) * 4)
    row.update(false_unseen=float(np.mean(reasons["test"] == UNSEEN_TYPE)),
               known_refused=float(np.mean(reasons["test"] != "")),
               unseen_flagged=float(np.mean(reasons["unseen"] == UNSEEN_TYPE)),
               unseen_refused=float(np.mean(reasons["unseen"] != "")))
    return row, note


def markdown(rows: list[dict]) -> str:
    """Per rotation and as mean +- sd over rotations: each score's AUROC [95 %] / FPR@95 %TPR, then the rates."""
    rates = ("false_unseen", "known_refused", "unseen_flagged", "unseen_refused")
    head = ["rotation", "dropped", "known / unseen", "test acc",
            *(f"{s}: AUROC [95 %], FPR@95" for s in ROTATION_SCORES),
            "false unseen_type (known)", "refused (known)", "unseen_type (dropped)", "unseen_type or unsure (dropped)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [str(row["rotation"]), ", ".join(row["dropped"]), f"{row['known']} / {row['unseen']}",
                 f"{row['test_accuracy']:.3f}",
                 *(f"{row[s][0]:.3f} [{row[s][1]:.3f}, {row[s][2]:.3f}], {row[s][3]:.1%}" for s in ROTATION_SCORES),
                 *(f"{row[r]:.1%}" for r in rates)]
        lines.append("| " + " | ".join(cells) + " |")

    def spread(values, percent=False):
        values = np.asarray(values, dtype=np.float64)
        shown = (lambda x: f"{x:.1%}") if percent else (lambda x: f"{x:.3f}")  # noqa: E731
        return shown(values.mean()) + (f" ± {shown(values.std(ddof=1))}" if len(values) > 1 else "")

    cells = [f"mean ± sd ({len(rows)})", "", "", spread([r["test_accuracy"] for r in rows]),
             *(f"{spread([r[s][0] for r in rows])}, {spread([r[s][3] for r in rows], True)}" for s in ROTATION_SCORES),
             *(spread([r[k] for r in rows], True) for k in rates)]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rotations_main(args) -> None:
    import bench_training  # the datasets as 01 splits them (jomjol: a scratch raw/ copy), beside this script

    started = time.perf_counter()
    cfg = train.config(args.preset, epochs_head=args.epochs_head, epochs_finetune=args.epochs_finetune,
                       views=args.views, image_size=args.image_size, frozen_precision=args.frozen_precision)
    table = bench_training.dataset_table(args.dataset, data_dir=args.data_dir, seed=args.split_seed)
    drop = args.drop or (1 if args.dataset == DIGITS else 3)
    drawn = draw_rotations(table, dataset=args.dataset, rotations=args.rotations, drop=drop, seed=args.seed)
    print(f"{args.dataset}: {len(table)} photos of {table['class'].nunique()} classes "
          f"({', '.join(f'{s} {n}' for s, n in table['split'].value_counts().items())}); {args.rotations} rotations "
          f"dropping {drop}; recipe {args.preset!r} with views {cfg.views}, epochs {cfg.epochs_head} + "
          f"{cfg.epochs_finetune}, patience {cfg.patience}, {cfg.image_size} px, frozen part in "
          f"{'bfloat16' if cache.uses_bfloat16(cfg.frozen_precision, inference.default_device()) else 'float32'}",
          flush=True)
    shared = share_activations(table, cfg=cfg, seed=args.seed)
    print(f"shared activations: {shared.seconds:.0f} s", flush=True)
    calibration_settings = notebook_defaults("03_evaluate.ipynb")
    rows = []
    for number, dropped in enumerate(drawn, start=1):
        tick = time.perf_counter()
        kept = kept_rows(shared, dropped)
        model, class_names, kept_table = train_rotation(shared, dropped, kept, seed=args.seed + number)
        row, note = evaluate_rotation(model, class_names, kept_table, shared, kept,
                                      calibration_settings=calibration_settings, n_boot=args.bootstrap,
                                      seed=args.seed + number, check=number == 1)
        rows.append({"rotation": number, "dropped": dropped, **row, "seconds": time.perf_counter() - tick})
        if note:
            print(note)
        print(f"rotation {number}/{len(drawn)} dropped {', '.join(dropped)}: {row['known']} known, {row['unseen']} "
              f"unseen photos, test accuracy {row['test_accuracy']:.3f}, T {row['temperature']:.2f}, "
              + ", ".join(f"{s} {row[s][0]:.3f}" for s in ROTATION_SCORES)
              + f"; {rows[-1]['seconds']:.0f} s", flush=True)
    text = (f"\n{args.dataset}, seed {args.seed}: AUROC of unseen over known test photos [95 % bootstrap, "
            f"{args.bootstrap} resamples], FPR at 95 % TPR; rates at unseen alpha {unseen.DEFAULT_ALPHA} and 03's "
            f"UNKNOWN target {calibration_settings['target_accuracy']} (threshold fitted on val)\n\n" + markdown(rows)
            + f"\n\nUNKNOWN target met on val in {sum(r['target_met'] for r in rows)} of {len(rows)} rotations; "
            f"wall time {time.perf_counter() - started:.0f} s")
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text.lstrip() + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="", help="default: reports/model/meterlib_checkpoint.pt")
    parser.add_argument("--dataset", default="demo", help=f"a dataset folder or name; with --rotations also {DIGITS!r}")
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--photos", default="", help="a folder of photos of types the model has no class for")
    rotating = parser.add_argument_group("rotations (retrain without --drop classes, N times)")
    rotating.add_argument("--rotations", type=int, default=0, help="0: score one trained model (the checkpoint)")
    rotating.add_argument("--drop", type=int, default=0, help="classes dropped per rotation (0: 3, jomjol 1)")
    rotating.add_argument("--seed", type=int, default=0, help="seeds the draws, the training and the bootstrap")
    rotating.add_argument("--split-seed", type=int, default=0, help="seed of the jomjol split (as notebook 01's)")
    rotating.add_argument("--preset", default="default", help="the training recipe")
    rotating.add_argument("--epochs-head", type=int, default=None, help="phase 1 epochs (default: the preset's)")
    rotating.add_argument("--epochs-finetune", type=int, default=None, help="phase 2 epochs (default: the preset's)")
    rotating.add_argument("--views", type=int, default=None, help="augmented views (default: the preset's)")
    rotating.add_argument("--image-size", type=int, default=None, help="input side (default: the preset's)")
    rotating.add_argument("--frozen-precision", default=None, choices=train.PRECISIONS,
                          help="of the frozen part (default: the preset's)")
    rotating.add_argument("--bootstrap", type=int, default=1000, help="resamples for the AUROC intervals")
    rotating.add_argument("--markdown", default="", help="also write the results table to this file")
    args = parser.parse_args()
    if args.rotations:
        rotations_main(args)
        return
    where = paths.resolve(dataset=args.dataset, data_dir=args.data_dir)
    content = checkpoint.load(args.checkpoint or where.checkpoint)
    manifest = splits.read_manifest(where.splits_csv)
    if args.photos and not Path(args.photos).is_dir():
        raise SystemExit(f"--photos {args.photos}: not a folder")
    sets = photo_sets(manifest, where.dataset_dir, Path(args.photos) if args.photos else None)
    if not sets[splits.HOLDOUT] or not sets["val"]:
        raise SystemExit(f"{where.splits_csv}: needs val photos and holdout classes (notebook 01's holdout_classes)")
    model = checkpoint.build_model(content).eval()
    emb = embed(model, content, sets)
    names = content["class_names"]
    labels = np.array([names.index(c) for c in manifest.loc[manifest["split"] == "train", "class"]])
    functions = scores(emb, labels, float(content.get("temperature", 1.0)), head_of(model))
    computed = {name: {key: fn(e) for key, e in emb.items() if key != "train"} for name, fn in functions.items()}
    print(f"\n{'score':40s} AUROC [95 %]            FPR@95   flagged at {FALSE_ALARMS:.0%} of val flagged")
    for name, per_set in computed.items():
        print(report(name, per_set, np.quantile(per_set["val"], 1 - FALSE_ALARMS)))
    for feature in [name for name in computed if name.startswith(("kNN k=1 ", "rel."))]:
        fused = {key: -2 * np.minimum(p_values(computed[feature]["val"], values),
                                      p_values(computed["energy"]["val"], computed["energy"][key]))
                 for key, values in computed[feature].items()}
        print(report(f"fused: {feature} + energy", fused, -FALSE_ALARMS))


if __name__ == "__main__":
    main()
