"""Running a trained classifier on photos: decoding, eval preprocessing, batched logits."""

from __future__ import annotations

import numbers
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

from PIL import Image

from meterlib.data import photos, quality
from meterlib.errors import DataError, SettingsError
from meterlib.model import network, transforms
from meterlib.run import machine


def default_device():
    """CUDA when present, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def decode_threads() -> int:
    """Threads for decoding photos (PIL releases the GIL): one per usable CPU, as many as memory holds at the cap."""
    return max(1, min(8, machine.usable_cpus(), _available_memory() // photos.DECODE_PEAK_BYTES))


def _available_memory() -> int:
    """Bytes of memory the system can still give: Linux's MemAvailable, elsewhere (macOS) all of it."""
    try:
        with open("/proc/meminfo", "rb") as info:
            for line in info:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def positive_int(name: str, value) -> int:
    """``value`` as an int of at least 1, else a SettingsError naming the parameter (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise SettingsError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def load_resized(images: Sequence[photos.PhotoSource], *, image_size: int, progress: bool = False,
                 measure: bool = False) -> list:
    """Decode photos once (files, bytes, PIL images or arrays; EXIF-upright RGB), squashed to squares.

    With ``measure`` each comes as a ``Measured``, with its quality.
    """
    pictures = load_resized_each(images, image_size=image_size, progress=progress, measure=measure)
    for index, picture in enumerate(pictures):
        if isinstance(picture, DataError):
            if len(pictures) == 1:
                raise picture
            # Among many uploads, "image data (812 bytes)" alone would not say which one failed.
            raise DataError(f"image {index + 1} of {len(pictures)}: {picture}") from None
    return pictures


@dataclass(frozen=True)
class Measured:
    """A decoded photo squashed for the model, and its quality measured before the squash."""

    picture: Image.Image
    quality: dict  # data.quality's measures, and short_side: the photo's shorter side as taken (pixels)


def load_resized_each(images: Sequence[photos.PhotoSource], *, image_size: int, progress: bool = False,
                      measure: bool = False) -> list:
    """Like ``load_resized``, but a photo that cannot be used gives its DataError in its place.

    With ``measure`` each usable photo comes as a ``Measured``.
    """
    from tqdm.auto import tqdm

    squash = transforms.resize(image_size)
    # Measures need at least QUALITY_SIDE pixels to compare with the audit's.
    min_side = max(image_size, quality.QUALITY_SIDE // 2) if measure else image_size

    def decode(source):
        try:
            picture, size = photos.load_rgb_sized(source, min_side=min_side)
        except DataError as exc:
            return exc.with_traceback(None)  # the traceback would keep the decoder's frames alive
        if measure:
            return Measured(squash(picture), {**quality.quality(picture), "short_side": min(size)})
        return squash(picture)

    if len(images) == 1:  # one photo (the latency case): starting threads would cost more than they give
        return [decode(images[0])]
    # Quiet here, in the calling thread: the filters are set once for the batch, not once per photo.
    with photos.quiet_decoding(), ThreadPoolExecutor(decode_threads()) as pool:
        jobs = pool.map(decode, images)
        return list(tqdm(jobs, total=len(images), desc="decode", disable=not progress, leave=False))


def input_batches(images: Sequence, *, image_size: int, mean: Sequence[float], std: Sequence[float],
                  batch_size: int = 32):
    """The eval preprocessing of PIL images: normalised float32 arrays (n x 3 x side x side), a batch at a time.

    Every runtime (PyTorch or ONNX Runtime) takes its input from here, so all see the same numbers.
    Photos already squashed to ``image_size`` (``load_resized``) are used as they are.
    """
    batch_size = positive_int("batch_size", batch_size)
    squash, side = transforms.resize(image_size), (image_size, image_size)

    def batch(part: Sequence):
        pictures = [picture if picture.size == side else squash(picture) for picture in part]
        return transforms.normalised_pixels(pictures, mean=mean, std=std)

    return (batch(images[start:start + batch_size]) for start in range(0, len(images), batch_size))


def logits_for_images(model, images: Sequence, *, image_size: int, mean: Sequence[float],
                      std: Sequence[float], batch_size: int = 32, device=None):
    """Logits (N x classes, CPU float tensor) for PIL images, with the eval preprocessing."""
    import torch

    outputs = outputs_for_images(model, images, image_size=image_size, mean=mean, std=std,
                                 batch_size=batch_size, device=device)
    return outputs[0] if outputs else torch.empty(0, model.head.out_features)


def outputs_for_images(model, images: Sequence, *, image_size: int, mean: Sequence[float],
                       std: Sequence[float], batch_size: int = 32, device=None) -> tuple:
    """Each output of ``model`` (one tensor, or a tuple such as ``reference.scoring``'s) for PIL images,
    concatenated over the batches as CPU tensors; () for no images."""
    import torch

    batches = input_batches(images, image_size=image_size, mean=mean, std=std, batch_size=batch_size)
    device = torch.device(device) if device is not None else default_device()
    model = model.to(device).eval()
    parts = []
    with torch.inference_mode():
        for batch in batches:
            batch = torch.from_numpy(batch).to(device).contiguous(memory_format=torch.channels_last)
            result = model(batch)
            parts.append(tuple(part.cpu() for part in (result if isinstance(result, tuple) else (result,))))
    return tuple(torch.cat([part.float() if part.is_floating_point() else part for part in column])
                 for column in zip(*parts))


def features_for_images(model, images: Sequence, **preprocessing):
    """Pooled features (N x feature size, CPU float tensor): the classifier without its head (``network.features``).

    ``preprocessing``: the keyword options of ``logits_for_images``.
    """
    import torch

    if not images:  # logits_for_images sizes an empty answer by the head it is given
        return torch.empty(0, model.head.in_features)
    return logits_for_images(network.features(model), images, **preprocessing)
