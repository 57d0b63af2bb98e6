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
photos and ``--photos`` photos flagged. One model and its fixed holdout classes: the protocol that
chooses a method holds out rotating class triples and retrains (not done here).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_curve

from meterlib.confidence import selective
from meterlib.data import photos, splits
from meterlib.model import backbones, checkpoint, inference
from meterlib.run import paths

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="", help="default: reports/model/meterlib_checkpoint.pt")
    parser.add_argument("--dataset", default="demo")
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--photos", default="", help="a folder of photos of types the model has no class for")
    args = parser.parse_args()
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
