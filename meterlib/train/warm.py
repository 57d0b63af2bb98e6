"""Warm start: a run that begins where a trained checkpoint (its parent) left off, with rows for the types it lacks.

The parent's weights are loaded whole; its head rows move to the same types' places, and each new
type's row is imprinted from the mean of its training photos' normalised pooled features (after Qi
et al. 2018, centred: ``imprint``). The recipe's two phases then refit the head on every training
photo (old ones rehearsed) and fine-tune the last block briefly; the ``warm`` preset says how long.
The new checkpoint's ``lineage`` names the parent by hash.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Sequence

from meterlib.errors import ModelFileError, SettingsError
from meterlib.model import checkpoint, field_formats
from meterlib.model.transforms import Augment
from meterlib.train.recipe import PRESETS, TrainConfig

HEAD = (field_formats.HEAD_WEIGHT, field_formats.HEAD_BIAS)


@dataclass(frozen=True)
class Parent:
    """The checkpoint a warm run starts from, as loaded, and where it came from."""

    content: dict
    source: str  # the path it was read from, for messages
    sha256: str

    @property
    def class_names(self) -> list[str]:
        return list(self.content["class_names"])


def load_parent(path: str | os.PathLike) -> Parent:
    """Read the checkpoint to start from; a missing or broken file names itself."""
    content = checkpoint.load(path)
    return Parent(content=content, source=str(path), sha256=checkpoint.file_sha256(path))


def parent_recipe(parent: Parent) -> TrainConfig:
    """The recipe the parent was trained with (its checkpoint's ``training`` field): what a full retrain replays."""
    stored = parent.content.get("training") or {}
    names = {field.name for field in dataclasses.fields(TrainConfig)} - {"augment"}
    try:
        return TrainConfig(**{name: stored[name] for name in names if name in stored},
                           augment=Augment(**stored.get("augment", dataclasses.asdict(TrainConfig().augment))))
    except TypeError as exc:
        raise ModelFileError(f"{parent.source}: its training field does not hold a recipe ({exc})") from None


def warm_recipe(parent: Parent) -> TrainConfig:
    """The ``warm`` preset on the parent's inputs: its image size, batch size, augmentation and precision."""
    own = parent_recipe(parent)
    return dataclasses.replace(PRESETS["warm"], image_size=own.image_size, batch_size=own.batch_size,
                               augment=own.augment, frozen_precision=own.frozen_precision)


def check_parent(parent: Parent, *, backbone: str, image_size: int, class_names: Sequence[str]) -> list[str]:
    """The types ``class_names`` adds to the parent's; a SettingsError when the run cannot start from it."""
    content, source = parent.content, parent.source
    if content["backbone"] != backbone:
        raise SettingsError(f"{source}: a warm start keeps the parent's backbone {content['backbone']!r}, "
                            f"but {backbone!r} was asked for")
    if content["image_size"] != image_size:
        raise SettingsError(f"{source}: a warm start keeps the parent's image size ({content['image_size']} px), "
                            f"but {image_size} px was asked for")
    dropped = sorted(set(parent.class_names) - set(class_names))
    if dropped:
        raise SettingsError(f"{source}: the training photos lack {len(dropped)} of the parent's types "
                            f"({', '.join(dropped[:5])}); a warm start adds types, it does not remove them")
    return [name for name in class_names if name not in parent.class_names]


def start_from(model, parent: Parent, class_names: Sequence[str]) -> None:
    """Load the parent's weights into ``model`` (a head for ``class_names``), its head rows moved to their types."""
    import torch

    state = dict(parent.content["state_dict"])
    old_weight, old_bias = (state.pop(name) for name in HEAD)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) != set(HEAD):
        wrong = sorted(set(missing) - set(HEAD)) + sorted(unexpected)
        raise ModelFileError(f"{parent.source}: its weights do not fit backbone {parent.content['backbone']!r} "
                             f"({', '.join(wrong[:3])} ...)")
    rows = torch.tensor([class_names.index(name) for name in parent.class_names])
    with torch.no_grad():
        model.head.weight[rows] = old_weight.to(model.head.weight)
        model.head.bias[rows] = old_bias.to(model.head.bias)


def imprint(model, features, labels, classes: Sequence[int]) -> None:
    """Imprint the head rows of ``classes`` from the pooled ``features`` (one row per training photo, all types)
    of their photos (``labels``).

    A row points from the mean normalised photo to the type's mean normalised photo, as long as the
    other rows on average; its bias makes the average photo score as the other types do on average.
    Pooled features share a large common part, so an uncentred mean would outscore every old type.
    """
    import torch

    if not len(classes):
        return
    weight, bias = model.head.weight, model.head.bias
    old = torch.ones(len(weight), dtype=torch.bool)
    old[list(classes)] = False
    with torch.no_grad():
        features = features.float().to(weight.device)
        unit = torch.nn.functional.normalize(features, dim=1)
        centre, average = unit.mean(0), features.mean(0)
        length, average_score = weight[old].norm(dim=1).mean(), (weight[old] @ average + bias[old]).mean()
        for c in classes:
            row = torch.nn.functional.normalize(unit[labels == c].mean(0) - centre, dim=0) * length
            weight[c], bias[c] = row, average_score - row @ average


def lineage(parent: Parent, *, added: Sequence[str], photos: int) -> dict:
    """The new checkpoint's ``lineage`` field: its parent by hash, the types added and the photos it trained on."""
    older = parent.content.get("lineage") or {}
    return {"parent_sha256": parent.sha256, "parent_classes": len(parent.class_names),
            "types_added": list(added), "training_photos": int(photos),
            # Grandparent first: the whole chain back to the first run trained from the pretrained backbone.
            "ancestors": [older["parent_sha256"], *older["ancestors"]] if older else []}
