"""Synthetic-data speed: images/s at full size (rendering + JPEG + writing), one worker vs all cores.

    python benchmarks/bench_synth.py [--images 200] [--width 720] [--height 1280]

The target is >= 40 images/s at 720x1280 on 2 cores. The load average is printed because
other work on the machine slows both runs; CPU time per image is what an idle machine would see.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from meterlib.synth import DatasetSpec, generate_dataset
from meterlib.synth.generate import _check_workers


def _cpu_seconds() -> float:
    t = os.times()  # children count once the pool's workers have exited
    return t.user + t.system + t.children_user + t.children_system


def _rate(label: str, folder: Path, *, n: int, width: int, height: int, workers: int) -> float:
    start, cpu = time.perf_counter(), _cpu_seconds()
    generate_dataset(folder, DatasetSpec(n_images=n, n_classes=38, width=width, height=height), workers=workers,
                     progress=False)
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    print(f"{label:<22} {n} images in {seconds:6.2f} s = {n / seconds:6.1f} images/s "
          f"({1000 * cpu / n:5.1f} ms CPU per image: {workers * n / cpu:5.1f} images/s if the "
          f"{workers} core(s) were idle)")
    return n / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--width", type=int, default=720)
    parser.add_argument("--height", type=int, default=1280)
    args = parser.parse_args()
    cores = _check_workers(None)
    print(f"{args.width}x{args.height}, {cores} cores, load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    size = dict(n=args.images, width=args.width, height=args.height)
    with tempfile.TemporaryDirectory() as tmp:
        one = _rate("1 worker", Path(tmp) / "one", workers=1, **size)
        every = _rate(f"{cores} workers (all cores)", Path(tmp) / "all", workers=cores, **size)
    print(f"speed-up all cores / 1 worker: {every / one:.2f}x; "
          f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
