"""Folding eval-mode batch norms into the convolutions that feed them (a cheaper frozen part).

A frozen backbone in eval mode applies each batch norm as a fixed per-channel scale and shift,
which can be baked into the weights of the convolution before it. The folded copy computes the
same outputs up to float rounding with one pass over the activations less per layer.

Pairs are found by watching one forward pass: a batch norm whose input is exactly the output
tensor of a convolution. This works for torchvision's ResNets and timm's EfficientNets alike
(timm's ``Conv2dSame`` and ``BatchNormAct2d`` included), without tracing the model.
"""

from __future__ import annotations

import copy
import warnings

from meterlib.errors import ModelFileError


def fold_batch_norms(frozen_part, *, probe_size: int = 64):
    """An eval-mode copy of ``frozen_part`` with every conv -> batch norm pair folded into the conv.

    The copy is checked against the original on a random batch; should the outputs differ, an
    unfolded copy is returned with a warning; should the original give NaN or inf, ModelFileError.
    ``frozen_part`` itself is never changed; the copy lives on the same device.
    """
    import torch

    device = next(frozen_part.parameters()).device
    # Fold and check on the CPU: GPU convolutions may round to TF32, too coarse for the check.
    original = copy.deepcopy(frozen_part).cpu().eval()
    folded = copy.deepcopy(original)
    probe = torch.randn(2, 3, probe_size, probe_size)
    pairs = _conv_norm_pairs(folded, probe)
    parents = {id(child): (parent, name) for parent in folded.modules()
               for name, child in parent.named_children()}
    with torch.no_grad():
        for conv, norm in pairs:
            conv.weight, conv.bias = torch.nn.utils.fusion.fuse_conv_bn_weights(
                conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps,
                norm.weight, norm.bias)
            parent, name = parents[id(norm)]
            setattr(parent, name, _what_follows_the_norm(norm))
        expected, got = original(probe), folded(probe)
    if not bool(expected.isfinite().all()):
        raise ModelFileError(f"the {type(frozen_part).__name__} to fold gives NaN or inf outputs on a random "
                             "batch: its weights are broken")
    if not torch.allclose(got, expected, rtol=1e-3, atol=1e-3 * float(expected.abs().max())):
        warnings.warn("folding batch norms changed the frozen part's outputs; using it unfolded")
        folded = original
    return folded.to(device, memory_format=torch.channels_last)


def _conv_norm_pairs(model, probe) -> list:
    """(conv, batch norm) pairs where the norm's input is the conv's output, in forward order."""
    import torch

    produced_by, pairs = {}, []

    def after_conv(module, inputs, output):
        produced_by[id(output)] = (module, output)  # holding the tensor keeps its id unique

    def before_norm(module, inputs, output):
        source = produced_by.get(id(inputs[0]))
        if source is not None and source[1] is inputs[0] and _foldable(module):
            pairs.append((source[0], module))

    hooks = [module.register_forward_hook(after_conv if isinstance(module, torch.nn.Conv2d) else before_norm)
             for module in model.modules()
             if isinstance(module, (torch.nn.Conv2d, torch.nn.BatchNorm2d))]
    try:
        with torch.no_grad():
            model(probe)
    finally:
        for hook in hooks:
            hook.remove()
    return pairs


def _foldable(norm) -> bool:
    """A plain batch norm, or timm's norm + activation, with running statistics to fold."""
    import torch

    plain = type(norm) is torch.nn.BatchNorm2d
    return (plain or hasattr(norm, "act")) and norm.running_mean is not None


def _what_follows_the_norm(norm):
    """The module that replaces a folded norm: nothing, or the activation fused into it (timm)."""
    import torch

    if type(norm) is torch.nn.BatchNorm2d:
        return torch.nn.Identity()
    return torch.nn.Sequential(norm.drop, norm.act)
