"""Checkpoint files: round trip with weights_only=True, atomic writes, mismatch errors."""

import dataclasses

import pytest
import torch

from meterlib.confidence import selective
from meterlib.model import backbones, checkpoint

CLASSES = ["brand_a", "brand_b", "brand_c"]
SPEC = checkpoint.ModelSpec(backbone="random", class_names=CLASSES, image_size=32,
                            mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return backbones.build_classifier("random", len(CLASSES), pretrained=False).eval()


@pytest.fixture()
def saved(tmp_path, model):
    path = tmp_path / "model" / "ckpt.pt"
    checkpoint.save(path, model=model, spec=SPEC,
                    training={"preset": "seed", "lr_head": 1e-3, "strengths": (0.7, 10)},
                    splits_sha256="ab" * 32, metrics={"val_accuracy": 0.5})
    return path


def test_round_trip_loads_with_weights_only_and_reproduces_logits(saved, model):
    raw = torch.load(saved, weights_only=True)
    assert raw["class_names"] == CLASSES and raw["backbone"] == "random"
    assert raw["temperature"] == 1.0 and raw["unknown_threshold"] == selective.DEFAULT_UNKNOWN_THRESHOLD
    assert raw["training"]["strengths"] == [0.7, 10]
    assert set(raw["versions"]) >= {"torch", "timm", "meterlib"}
    rebuilt = checkpoint.build_model(checkpoint.load(saved))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def test_the_model_spec_is_stored_as_plain_fields(saved):
    raw = torch.load(saved, weights_only=True)
    assert (raw["backbone"], raw["class_names"], raw["image_size"]) == ("random", CLASSES, 32)
    assert raw["mean"] == [0.5] * 3 and raw["std"] == [0.25] * 3
    assert all(isinstance(x, float) for x in raw["mean"] + raw["std"])


def test_update_fields_adds_calibration_and_keeps_the_rest(saved):
    checkpoint.update_fields(saved, temperature=1.7, conformal_quantile=0.9)
    content = checkpoint.load(saved)
    assert content["temperature"] == 1.7 and content["conformal_quantile"] == 0.9
    assert content["class_names"] == CLASSES
    with pytest.raises(checkpoint.CheckpointError, match="state_dict"):
        checkpoint.update_fields(saved, state_dict={})


def test_interrupted_write_leaves_the_old_file(saved, monkeypatch):
    before = saved.read_bytes()

    def broken_save(obj, target):
        with open(target, "wb") as handle:
            handle.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.update_fields(saved, temperature=2.0)
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]


def test_unstorable_values_are_rejected_with_their_location(tmp_path, model):
    with pytest.raises(checkpoint.CheckpointError, match=r"\['training'\]\['when'\]: cannot store"):
        checkpoint.save(tmp_path / "x.pt", model=model, spec=SPEC, training={"when": object()})


def test_mismatching_classes_or_backbone_give_clear_errors(saved):
    content = checkpoint.load(saved)
    checkpoint.check_matches(content, class_names=CLASSES, backbone="random")
    with pytest.raises(checkpoint.CheckpointError, match="unknown to the model: brand_z"):
        checkpoint.check_matches(content, class_names=[*CLASSES, "brand_z"])
    with pytest.raises(checkpoint.CheckpointError, match="different order"):
        checkpoint.check_matches(content, class_names=CLASSES[::-1])
    with pytest.raises(checkpoint.CheckpointError, match="backbone 'random'"):
        checkpoint.check_matches(content, backbone="efficientnet_lite0")


def test_missing_or_foreign_files_are_named(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="not found"):
        checkpoint.load(tmp_path / "absent.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(checkpoint.CheckpointError, match="not a meterlib checkpoint"):
        checkpoint.load(foreign)


def test_a_field_that_load_would_refuse_is_never_written(saved, tmp_path, model):
    before = saved.read_bytes()
    with pytest.raises(checkpoint.CheckpointError, match=r"field 'temperature' must be a finite number > 0"):
        checkpoint.update_fields(saved, temperature=-1.0)
    assert saved.read_bytes() == before
    with pytest.raises(checkpoint.CheckpointError, match=r"x\.pt: checkpoint field 'image_size' must be an int"):
        checkpoint.save(tmp_path / "x.pt", model=model, spec=dataclasses.replace(SPEC, image_size=8))
    assert not (tmp_path / "x.pt").exists()
