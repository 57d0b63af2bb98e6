"""The fast training path computes what the plain recipe computes, and train() behaves."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from meterlib import train
from meterlib.errors import SettingsError
from meterlib.model import backbones, checkpoint, folding, network, transforms
from meterlib.run import parameters, runner
from meterlib.train import cache, phases, probe

SIZE = 32
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return backbones.build_classifier("random", 3, pretrained=False)


def _photos(n, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)) for _ in range(n)]


def test_cached_phase1_matches_full_forward_and_gradients(model):
    images, labels = _photos(6), torch.tensor([0, 1, 2, 0, 1, 2])
    eval_tf = transforms.eval_transform(image_size=SIZE, mean=MEAN, std=STD)
    x = torch.stack([eval_tf(img) for img in images])
    model.eval()
    full = model(x)
    full_loss = torch.nn.functional.cross_entropy(full, labels)
    full_grad = torch.autograd.grad(full_loss, model.head.weight)[0]

    acts = train.frozen_activations(model.frozen_part, images, eval_tf, batch_size=4, device="cpu")
    features = network.batched(torch.nn.Sequential(model.last_block, model.pool), acts,
                               batch_size=4, device="cpu")
    cached = model.head(features)
    cached_grad = torch.autograd.grad(torch.nn.functional.cross_entropy(cached, labels),
                                      model.head.weight)[0]
    assert torch.allclose(cached, full, atol=1e-5)
    assert torch.allclose(cached_grad, full_grad, atol=1e-6)


@pytest.mark.parametrize("arch", ["random", "efficientnet_lite0"])
def test_folded_frozen_part_computes_the_same_and_leaves_the_model_alone(arch):
    torch.manual_seed(0)
    model = backbones.build_classifier(arch, 3, pretrained=False)
    for norm in model.frozen_part.modules():  # non-trivial statistics, so folding has work to do
        if isinstance(norm, torch.nn.BatchNorm2d):
            norm.running_mean.uniform_(-0.5, 0.5)
            norm.running_var.uniform_(0.5, 2.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = folding.fold_batch_norms(model.frozen_part)
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        expected, got = model.frozen_part(x), folded(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("bn", ["train", "frozen"])
def test_cached_phase2_matches_full_forward_and_gradients(model, bn):
    x = torch.randn(8, 3, SIZE, SIZE)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    params = list(model.last_block.parameters()) + list(model.head.parameters())
    train.set_finetune_mode(model, bn=bn)
    full_loss = torch.nn.functional.cross_entropy(model(x), labels)
    full_grads = torch.autograd.grad(full_loss, params)

    model.eval()
    with torch.no_grad():
        acts = model.frozen_part(x)  # what the cache holds: eval-mode frozen part
    train.set_finetune_mode(model, bn=bn)
    tail = torch.nn.Sequential(model.last_block, model.pool, model.head)
    cached_grads = torch.autograd.grad(torch.nn.functional.cross_entropy(tail(acts), labels), params)
    for full, cached in zip(full_grads, cached_grads):
        assert torch.allclose(cached, full, atol=1e-5, rtol=1e-4)


def test_frozen_part_stays_frozen_in_finetune_mode(model):
    train.set_finetune_mode(model, bn="frozen")
    assert not model.frozen_part.training
    assert model.last_block.training and model.head.training
    norms = [m for m in model.last_block.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)


def test_class_weights_are_smoothed_inverse_frequency():
    weights = train.class_weights(np.array([0] * 16 + [1] * 4), 3, power=0.5)
    assert weights[1] / weights[0] == pytest.approx(2.0)  # sqrt(16 / 4)
    assert weights[2] == 0
    assert (weights[0] * 16 + weights[1] * 4) / 20 == pytest.approx(1.0)


# Train labels 8, 2, 8: weights (1 / count) ** .5 scaled to mean 1 per photo are .9, 1.8, .9.
IMBALANCED_WEIGHTS = torch.tensor([0.9, 1.8, 0.9])


def _weighted_loss(logits, labels, weights, smoothing=0.0):
    return torch.nn.functional.cross_entropy(logits, labels, weight=weights, label_smoothing=smoothing)


@pytest.mark.parametrize("preset", ["original", "default"])
def test_loss_function_weights_rare_classes_and_smooths_as_the_recipe_says(preset):
    cfg = train.config(preset)
    labels = torch.tensor([0] * 8 + [1] * 2 + [2] * 8)
    loss_fn = phases.loss_function(labels, 3, cfg=cfg, device="cpu")
    torch.manual_seed(0)
    logits, targets = torch.randn(6, 3), torch.tensor([0, 1, 1, 2, 1, 0])
    expected = _weighted_loss(logits, targets, IMBALANCED_WEIGHTS, cfg.label_smoothing)
    assert float(loss_fn(logits, targets)) == pytest.approx(float(expected), rel=1e-5)
    assert float(loss_fn(logits, targets)) != pytest.approx(
        float(_weighted_loss(logits, targets, None, cfg.label_smoothing)), rel=1e-3)


def test_the_optimiser_minimises_the_class_weighted_loss(tmp_path, monkeypatch):
    table = _colour_table(tmp_path, with_val=False)
    rare_train = table.index[(table["class"] == "c1") & (table["split"] == "train")][2:]
    table = table.drop(rare_train)  # train photos per class: 8, 2, 8
    seen = []

    def spy(forward, optimizer, inputs, labels, loss_fn, **kwargs):
        seen.append(loss_fn)
        return epoch(forward, optimizer, inputs, labels, loss_fn, **kwargs)

    epoch = phases._epoch
    monkeypatch.setattr(phases, "_epoch", spy)
    cfg = train.config("original", image_size=SIZE, epochs_head=1, epochs_finetune=1, views=1, batch_size=8)
    train.train(table, cfg=cfg, backbone="random", progress=False)
    torch.manual_seed(0)
    logits, targets = torch.randn(6, 3), torch.tensor([0, 1, 1, 2, 1, 0])
    expected = float(_weighted_loss(logits, targets, IMBALANCED_WEIGHTS))
    assert len(seen) == 2 and all(float(fn(logits, targets)) == pytest.approx(expected, rel=1e-5) for fn in seen)


def test_config_rejects_unknown_names_and_keeps_augmentation_defaults():
    cfg = train.config("original", augment={"rotation_deg": 5.0})
    assert cfg.augment.rotation_deg == 5.0 and cfg.augment.blur_p == 0.3
    assert (cfg.epochs_head, cfg.epochs_finetune, cfg.lr_head, cfg.lr_finetune) == (6, 8, 1e-3, 1e-4)
    with pytest.raises(ValueError, match="epoch_head"):
        train.config("original", epoch_head=3)
    with pytest.raises(ValueError, match=r"augmentation parameter\(s\): rotation$"):
        train.config("original", augment={"rotation": 5.0})
    with pytest.raises(ValueError, match="unknown preset"):
        train.config("fastest")


@pytest.mark.parametrize("preset", ["original", "default"])
def test_none_means_the_presets_value(preset):
    """What notebook 02 passes when a parameter is left at None: the preset decides."""
    recipe = dict.fromkeys(["image_size", "epochs_head", "views", "lr_finetune", "finetune_bn"])
    augment = dict.fromkeys(["crop_scale_min", "rotation_deg", "hue", "blur_sigma_max"])
    cfg = train.config(preset, augment=augment, **recipe)
    assert cfg == train.PRESETS[preset]
    assert cfg.augment == train.PRESETS[preset].augment
    partly = train.config(preset, augment={**augment, "hue": 0.0}, **{**recipe, "views": 2})
    assert (partly.views, partly.augment.hue) == (2, 0.0)
    assert partly.augment.rotation_deg == train.PRESETS[preset].augment.rotation_deg


def _colour_table(tmp_path, *, with_val: bool):
    """Three classes of flat-coloured photos with a little noise: trivially learnable."""
    rng = np.random.default_rng(1)
    rows = []
    for c, colour in enumerate([(220, 30, 30), (30, 200, 40), (40, 60, 230)]):
        for i in range(14):
            pixels = np.clip(np.array(colour) + rng.normal(0, 20, (40, 30, 3)), 0, 255).astype(np.uint8)
            file = tmp_path / f"c{c}" / f"{i}.jpg"
            file.parent.mkdir(exist_ok=True)
            Image.fromarray(pixels).save(file)
            split = "train" if i < 8 else ("val" if i < 11 and with_val else "test")
            rows.append({"path": f"c{c}/{i}.jpg", "class": f"c{c}", "split": split})
    return train.training_table(pd.DataFrame(rows), tmp_path)


def test_train_learns_easy_classes_and_keeps_the_best_val_epoch(tmp_path):
    table = _colour_table(tmp_path, with_val=True)
    cfg = train.config("default", image_size=SIZE, epochs_head=3, epochs_finetune=2, views=2,
                       batch_size=8, min_val_images=5, patience=0)
    result = train.train(table, cfg=cfg, backbone="random", progress=False)
    history = result.history
    assert list(history["phase"]) == [1, 1, 1, 2, 2]
    best = history.loc[history["val_acc"].idxmax(), "epoch"]
    assert history.set_index("epoch").loc[result.best_epoch, "val_acc"] == history["val_acc"].max()
    assert result.best_epoch <= best or history["val_acc"].eq(history["val_acc"].max()).sum() > 1
    test = table[table["split"] == "test"]
    acc = train.accuracy(result.model, [Image.open(f) for f in test["file"]], result.class_names,
                            list(test["class"]), image_size=SIZE, mean=result.mean, std=result.std)
    assert acc >= 0.9


def test_train_without_val_keeps_the_last_epoch_and_saves_a_loadable_checkpoint(tmp_path):
    table = _colour_table(tmp_path, with_val=False)
    cfg = train.config("original", image_size=SIZE, epochs_head=2, epochs_finetune=1, views=1, batch_size=8)
    result = train.train(table, cfg=cfg, backbone="random", progress=False,
                         options=train.RunOptions(deterministic=True))
    assert result.best_epoch == 3 and result.selection.startswith("last epoch")
    spec = checkpoint.ModelSpec(backbone=result.backbone, class_names=result.class_names, image_size=SIZE,
                                mean=result.mean, std=result.std)
    path = checkpoint.save(tmp_path / "m.pt", model=result.model, spec=spec, training=cfg.as_dict())
    loaded = checkpoint.load(path)
    assert loaded["training"]["augment"]["rotation_deg"] == 10.0
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        rebuilt = checkpoint.build_model(loaded, device="cpu")
        assert torch.allclose(rebuilt(x), result.model.cpu()(x), atol=1e-5)


def _fit(model, *, lr: float, patience: int, epochs=(3, 2)):
    """A run's shared state on random frozen-part activations: 2 views of 12 photos, 6 val photos."""
    import dataclasses

    torch.manual_seed(1)
    model.eval()
    with torch.no_grad():
        views = [model.frozen_part(torch.randn(12, 3, SIZE, SIZE)) for _ in range(2)]
        val = model.frozen_part(torch.randn(6, 3, SIZE, SIZE))
    cfg = dataclasses.replace(train.config("default", epochs_head=epochs[0], epochs_finetune=epochs[1]),
                              lr_head=lr, lr_finetune=lr, patience=patience, batch_size=4)
    return phases.Fit(model=model, cfg=cfg, train_views=views, train_labels=torch.arange(12) % 3,
                      val_acts=val, val_labels=torch.arange(6) % 3,
                      loss_fn=torch.nn.CrossEntropyLoss(), device=torch.device("cpu"),
                      tracker=phases.Tracker(use_val=True), seed=0)


def test_one_phase_loop_runs_both_phases_and_numbers_their_rows_in_order(model):
    fit = _fit(model, lr=1e-3, patience=0)
    phases.run_phase(fit, phases.head_phase)
    head_after_phase1 = model.head.weight.detach().clone()
    layer_after_phase1 = next(model.last_block.parameters()).detach().clone()
    phases.run_phase(fit, phases.finetune_phase)
    rows = pd.DataFrame(fit.tracker.rows)
    assert list(rows["epoch"]) == [1, 2, 3, 4, 5] and list(rows["phase"]) == [1, 1, 1, 2, 2]
    assert list(rows.columns) == ["epoch", "phase", "train_loss", "train_acc", "val_loss", "val_acc", "lr"]
    assert rows[["train_loss", "val_loss"]].notna().all().all()
    # Phase 1 leaves the last block alone; phase 2 trains it.
    assert not torch.equal(next(model.last_block.parameters()), layer_after_phase1)
    assert not torch.equal(model.head.weight, head_after_phase1)


def test_early_stopping_counts_per_phase(model):
    # Learning rate 0: no epoch is ever better than the first, so each phase stops after
    # ``patience`` epochs without gain, and phase 2 still runs after phase 1 stopped.
    fit = _fit(model, lr=0.0, patience=2, epochs=(5, 5))
    phases.run_phase(fit, phases.head_phase)
    phases.run_phase(fit, phases.finetune_phase)
    assert [row["phase"] for row in fit.tracker.rows] == [1, 1, 1, 2, 2]
    assert fit.tracker.best_epoch == 1


def test_tracker_keeps_the_best_epoch_and_a_new_phase_starts_from_it(model):
    tracker = phases.Tracker(use_val=True)
    for epoch, (acc, loss) in enumerate([(0.5, 1.0), (0.8, 0.9), (0.8, 0.7), (0.6, 0.5)], start=1):
        with torch.no_grad():
            model.head.bias.fill_(epoch)
        tracker.record(model, dict(epoch=epoch, val_acc=acc, val_loss=loss))
    assert tracker.best_epoch == 3 and tracker.should_stop(1) and not tracker.should_stop(2)
    tracker.start_phase(model)
    assert torch.equal(model.head.bias, torch.full((3,), 3.0)) and not tracker.should_stop(1)


def test_epochs_head_zero_skips_phase_one(tmp_path):
    table = _colour_table(tmp_path, with_val=True)
    cfg = train.config("original", image_size=SIZE, epochs_head=0, epochs_finetune=2, views=1, batch_size=8)
    result = train.train(table, cfg=cfg, backbone="random", progress=False)
    assert list(result.history["phase"]) == [2, 2] and list(result.history["epoch"]) == [1, 2]
    assert set(result.timings) == {"decode", "frozen_part", "phase1", "phase2"}


def test_linear_probe_picks_C_on_val_and_scores_each_split():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (3, 5))
    def draw(n):
        y = np.repeat(np.arange(3), n)
        return centres[y] + rng.normal(0, 1, (3 * n, 5)), [f"k{i}" for i in y]
    (tx, ty), (vx, vy) = draw(20), draw(5)
    clf, C = probe.fit(tx, ty, val_x=vx, val_y=vy)
    assert C in (0.01, 0.1, 1.0, 10.0)
    assert clf.score(vx, vy) >= 0.9
    assert probe.fit(tx, ty)[1] == 1.0


@pytest.mark.parametrize("Cs", [(1e-4, 1.0, 10.0), (10.0, 1e-4, 1.0)])
def test_linear_probe_keeps_the_C_that_scores_best_on_val(Cs):
    # Few photos of k1: at C = 1e-4 the unpenalised intercept wins and every val photo is called k0.
    rng = np.random.default_rng(0)
    centres = np.array([[3.0, 0.0], [0.0, 3.0]])

    def draw(counts):
        y = np.repeat(np.arange(2), counts)
        return centres[y] + rng.normal(0, 1, (len(y), 2)), [f"k{i}" for i in y]

    (tx, ty), (vx, vy) = draw([60, 6]), draw([20, 20])
    assert probe.fit(tx, ty, val_x=vx, val_y=vy, Cs=(1e-4,))[0].score(vx, vy) == 0.5
    clf, C = probe.fit(tx, ty, val_x=vx, val_y=vy, Cs=Cs)
    assert C == 1.0  # C = 10 scores as well on val: the stronger regularisation is kept
    assert clf.score(vx, vy) == 1.0 and clf[-1].C == 1.0


def test_training_table_names_missing_training_classes(tmp_path):
    manifest = pd.DataFrame({"path": ["a.jpg", "b.jpg", "c.jpg", "d.jpg"], "class": ["x", "y", "y", "z"],
                             "split": ["train", "test", "excluded", "train"]})
    with pytest.raises(ValueError, match="without training photos: y"):
        train.training_table(manifest, tmp_path)


def test_folding_that_would_change_outputs_is_refused():
    class ConvOutputUsedTwice(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.norm = torch.nn.Conv2d(3, 3, 3), torch.nn.BatchNorm2d(3)

        def forward(self, x):
            y = self.conv(x)
            return self.norm(y) + y  # folding the norm into conv would change the second term

    torch.manual_seed(0)
    module = ConvOutputUsedTwice().eval()
    module.norm.running_var.fill_(4.0)
    with pytest.warns(UserWarning, match="unfolded"):
        kept = folding.fold_batch_norms(module)
    assert isinstance(kept.norm, torch.nn.BatchNorm2d)


# /proc/cpuinfo's flags line of each kind of CPU (shortened): native bfloat16, or only its emulation.
CPU_FLAGS = {
    "avx512_bf16": "fpu sse2 avx2 avx512f avx512bw avx512_vnni avx512_bf16 avx512_vbmi2",
    "amx_bf16": "fpu sse2 avx2 avx512f avx512bw avx512_vnni amx_bf16 amx_tile amx_int8",
    "avx512f_only": "fpu sse2 avx2 avx512f avx512bw avx512dq avx512_vnni",
    "avx2_only": "fpu sse2 avx avx2 fma",
}
NATIVE = {"avx512_bf16": True, "amx_bf16": True, "avx512f_only": False, "avx2_only": False}


def fake_cpu(monkeypatch, tmp_path, kind: str) -> None:
    """Make meterlib read the CPU flags of ``kind`` (two cores, as Linux lists them)."""
    cpuinfo = tmp_path / f"cpuinfo_{kind}"
    cpuinfo.write_text("".join(f"processor\t: {n}\nmodel name\t: fake\nflags\t\t: {CPU_FLAGS[kind]}\n\n"
                               for n in range(2)))
    monkeypatch.setattr(cache, "CPUINFO", cpuinfo)


def test_bfloat16_frozen_part_rounds_and_stores_half_the_bytes():
    torch.manual_seed(0)
    model = backbones.build_classifier("random", 3, pretrained=False)
    images = _photos(4)
    eval_tf = transforms.eval_transform(image_size=SIZE, mean=MEAN, std=STD)
    exact = train.frozen_activations(model.frozen_part, images, eval_tf, batch_size=4, device="cpu")
    rounded = train.frozen_activations(model.frozen_part, images, eval_tf, batch_size=4, device="cpu",
                                        precision="bfloat16")
    assert (exact.dtype, rounded.dtype) == (torch.float32, torch.bfloat16)
    assert rounded.element_size() * 2 == exact.element_size() and rounded.shape == exact.shape
    assert not torch.equal(rounded.float(), exact)
    assert float((rounded.float() - exact).norm() / exact.norm()) < 0.02


@pytest.mark.parametrize("kind", ["float32", "auto"])
def test_float32_frozen_part_is_the_plain_float32_pass(model, monkeypatch, tmp_path, kind):
    fake_cpu(monkeypatch, tmp_path, "avx512f_only")  # 'auto' too must keep float32 here
    images = _photos(4)
    eval_tf = transforms.eval_transform(image_size=SIZE, mean=MEAN, std=STD)
    x = torch.stack([eval_tf(img) for img in images]).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        plain = folding.fold_batch_norms(model.frozen_part)(x)
    acts = train.frozen_activations(model.frozen_part, images, eval_tf, batch_size=4, device="cpu", precision=kind)
    assert acts.dtype == torch.float32 and torch.equal(acts, plain)


@pytest.mark.parametrize("kind", list(CPU_FLAGS))
def test_auto_precision_uses_bfloat16_exactly_on_cpus_with_native_bfloat16(monkeypatch, tmp_path, kind):
    fake_cpu(monkeypatch, tmp_path, kind)
    assert cache.native_bfloat16() is NATIVE[kind]
    assert train.uses_bfloat16("auto", "cpu") is NATIVE[kind]
    assert train.uses_bfloat16("bfloat16", "cpu") and not train.uses_bfloat16("float32", "cpu")
    assert not train.uses_bfloat16("auto", "cuda")  # GPUs are fast enough in float32


def test_auto_precision_keeps_float32_where_the_cpu_flags_cannot_be_read(monkeypatch, tmp_path):
    monkeypatch.setattr(cache, "CPUINFO", tmp_path / "no_such_file")  # not Linux: no /proc/cpuinfo
    assert cache.native_bfloat16() is False and train.uses_bfloat16("auto", "cpu") is False
    with pytest.raises(ValueError, match="frozen_precision"):
        train.config("original", frozen_precision="float16")


def test_training_on_bfloat16_activations_is_training_on_them_widened(model):
    # The cache keeps bfloat16 activations as they are: the layers after the frozen part must see
    # the same float32 numbers as if they had been widened when cached.
    stored = _fit(model, lr=1e-3, patience=0)
    stored.train_views = [view.bfloat16() for view in stored.train_views]
    stored.val_acts = stored.val_acts.bfloat16()
    torch.manual_seed(0)
    other = backbones.build_classifier("random", 3, pretrained=False)
    widened = _fit(other, lr=1e-3, patience=0)
    widened.train_views = [view.float() for view in stored.train_views]
    widened.val_acts = stored.val_acts.float()
    for fit in (stored, widened):
        phases.run_recipe(fit)
    assert stored.tracker.rows == widened.tracker.rows
    assert all(torch.equal(tensor, other.state_dict()[name]) for name, tensor in model.state_dict().items())


ORIGINAL_RECIPE = {
    "image_size": 224, "epochs_head": 6, "epochs_finetune": 8, "lr_head": 1e-3, "lr_finetune": 1e-4,
    "weight_decay": 0.0, "batch_size": 32, "views": 7, "clean_view": False, "class_weight_power": 0.5,
    "label_smoothing": 0.0, "finetune_bn": "train", "lr_schedule": "constant", "patience": 0,
    "min_val_images": 10, "frozen_precision": "auto",
    "augment": {"crop_scale_min": 0.7, "rotation_deg": 10.0, "perspective": 0.2, "perspective_p": 0.5,
                "brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.02, "blur_p": 0.3,
                "blur_sigma_max": 1.5}}


def test_the_presets_are_the_original_recipe_and_its_documented_changes():
    assert train.config("original").as_dict() == ORIGINAL_RECIPE
    changes = dict(views=6, clean_view=True, epochs_head=10, epochs_finetune=15, lr_finetune=5e-4,
                   weight_decay=1e-4, label_smoothing=0.1, finetune_bn="frozen", lr_schedule="cosine", patience=5)
    assert train.config().as_dict() == {**ORIGINAL_RECIPE, **changes}  # 'default' unless named


@pytest.mark.parametrize(("change", "message"), [
    (dict(finetune_bn="all"), "parameter finetune_bn: 'all' is not one of train, frozen"),
    (dict(lr_schedule="step"), "parameter lr_schedule: 'step' is not one of constant, cosine"),
    (dict(frozen_precision="float16"), "parameter frozen_precision: 'float16' is not one of auto, float32, bfloat16"),
    (dict(views=0), r"parameter views: 0 is out of range; it must be in \[1, inf\]"),
    (dict(batch_size=0), r"parameter batch_size: 0 is out of range"),
    (dict(image_size=31), r"parameter image_size: 31 is out of range; it must be in \[32, 2048\]"),
    (dict(epochs_head=-1, epochs_finetune=3), r"parameter epochs_head: -1 is out of range"),
    (dict(epochs_head=3, epochs_finetune=-1), r"parameter epochs_finetune: -1 is out of range"),
    (dict(epochs_head=0, epochs_finetune=0), r"epochs_head \(0\) and epochs_finetune \(0\) must train at least one"),
    (dict(lr_head=0.0), r"parameter lr_head: 0\.0 is out of range; it must be in \(0, inf\]"),
    (dict(augment={"hue": 0.6}), r"parameter hue: 0\.6 is out of range; it must be in \[0, 0\.5\]"),
])
def test_a_recipe_the_loop_cannot_run_is_refused(change, message):
    with pytest.raises(ValueError, match=message):
        train.config("original", **change)


def test_the_recipe_and_the_door_refuse_by_the_same_rule():
    """One rule per setting: the door and the recipe accept and refuse the same values."""
    checked = 0
    settings = {**parameters.rules(train.TrainConfig), **parameters.rules(train.Augment)}
    for name, rule in settings.items():
        for value in rule.choices or ():
            assert getattr(train.config("original", **{name: value}), name) == value
        limits = rule.range or parameters.Range()
        below = limits.low if limits.open_low else limits.low - 1
        above = limits.high if limits.open_high else limits.high + 1
        for outside in (value for value in (below, above) if math.isfinite(value)):
            hint = "int" if isinstance(outside, int) else "float"
            given = {"augment": {name: outside}} if name in parameters.rules(train.Augment) else {name: outside}
            with pytest.raises(SettingsError) as by_recipe:
                train.config("original", **given)
            with pytest.raises(SettingsError) as at_door:
                parameters.check(name, outside, hint, door=runner.door())
            assert str(by_recipe.value) == str(at_door.value)
            checked += 1
    assert checked >= 20  # every numeric setting has a finite end


def test_the_smallest_runnable_recipe_is_accepted():
    for precision in ("auto", "float32", "bfloat16"):
        for bn, schedule in (("train", "constant"), ("frozen", "cosine")):
            cfg = train.config("original", views=1, batch_size=1, image_size=32, epochs_head=0, epochs_finetune=1,
                               frozen_precision=precision, finetune_bn=bn, lr_schedule=schedule)
            assert (cfg.views, cfg.batch_size, cfg.image_size, cfg.finetune_bn) == (1, 1, 32, bn)


def test_class_weights_power_zero_is_unweighted_and_no_photos_weigh_nothing():
    weights = train.class_weights(np.array([0] * 6 + [1] * 2), 3, power=0.0)
    assert weights.dtype == torch.float32 and weights.tolist() == [1.0, 1.0, 1.0]
    assert train.class_weights(np.array([], dtype=np.int64), 2, power=0.5).tolist() == [0.0, 0.0]


def test_a_class_of_one_photo_weighs_most_and_messages_name_the_kind_of_setting():
    weights = train.class_weights(np.array([0, 1, 1, 1, 1]), 3, power=0.5)  # raw 1, 1/2, 0; average photo 1
    assert weights.tolist() == pytest.approx([5 / 3, 5 / 6, 0.0])
    with pytest.raises(ValueError) as caught:
        train.config("original", epoch_head=3)
    assert str(caught.value) == "unknown training parameter(s): epoch_head"
    with pytest.raises(ValueError) as caught:
        train.config("fastest")
    assert str(caught.value) == f"unknown preset 'fastest'; choose one of {', '.join(train.PRESETS)}"


@pytest.mark.parametrize("kind", ["avx512_bf16", "avx512f_only"])
def test_the_probe_reuses_the_clean_activations_that_training_cached_in_float32(tmp_path, monkeypatch, kind):
    # The recipe's 'auto' precision caches bfloat16 activations on the first CPU, float32 on the other;
    # the probe is the float32 probe on both, so it reuses only float32 activations.
    fake_cpu(monkeypatch, tmp_path, kind)
    table = _colour_table(tmp_path, with_val=True)
    images = train.decode_splits(table, image_size=SIZE)
    classes = {split: list(table.loc[table["split"] == split, "class"]) for split in images}
    cfg = train.config("default", image_size=SIZE, epochs_head=1, epochs_finetune=1, views=2, batch_size=8,
                       min_val_images=5)
    result = train.train(table, cfg=cfg, backbone="efficientnet_lite0", images=images, progress=False)
    assert {split: len(acts) for split, acts in result.clean_activations.items()} == {"train": 24, "val": 9}
    assert {acts.dtype for acts in result.clean_activations.values()} == {
        torch.bfloat16 if NATIVE[kind] else torch.float32}
    fresh = probe.run("efficientnet_lite0", images, classes, image_size=SIZE)
    passes = []
    frozen_activations = cache.frozen_activations
    monkeypatch.setattr(cache, "frozen_activations",
                        lambda part, photos, *args, **kwargs: passes.append(len(photos))
                        or frozen_activations(part, photos, *args, **kwargs))
    reused = probe.run("efficientnet_lite0", images, classes, image_size=SIZE,
                       activations=result.clean_activations)
    assert passes == ([24, 9, 9] if NATIVE[kind] else [9])  # bfloat16 ones again in float32; else test only
    assert (reused.C, reused.val_accuracy, reused.test_accuracy) == (fresh.C, fresh.val_accuracy, fresh.test_accuracy)
    np.testing.assert_allclose(reused.classifier[-1].coef_, fresh.classifier[-1].coef_, rtol=1e-4, atol=1e-6)


def test_the_probe_computes_the_same_float32_features_on_every_cpu(model, monkeypatch, tmp_path):
    images = _photos(5)
    features = {}
    for kind in ("avx512_bf16", "avx2_only"):
        fake_cpu(monkeypatch, tmp_path, kind)
        features[kind] = probe.frozen_features(model, images, image_size=SIZE, mean=MEAN, std=STD, device="cpu")
    assert features["avx512_bf16"].dtype == np.float32
    assert np.array_equal(features["avx512_bf16"], features["avx2_only"])


def test_a_recipe_without_a_clean_view_leaves_the_probe_val_only(tmp_path):
    table = _colour_table(tmp_path, with_val=True)
    augmented_only = train.config("original", image_size=SIZE, epochs_head=1, epochs_finetune=1, views=1,
                                  batch_size=8)
    assert list(train.train(table, cfg=augmented_only, backbone="random", progress=False).clean_activations) == ["val"]
