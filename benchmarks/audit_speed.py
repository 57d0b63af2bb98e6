"""Audit speed: files per second, serial vs process pool, and reduced-scale vs full JPEG decoding.

    python benchmarks/audit_speed.py [dataset]      (a name under data/ or a path; default: demo)
"""

from __future__ import annotations

import argparse
import os
import time

from meterlib.data import audit, listing, photos, quality
from meterlib.errors import DataError
from meterlib.run import paths


def _rate(label: str, n: int, seconds: float) -> float:
    print(f"{label:<34} {n:5d} files in {seconds:6.2f} s = {n / seconds:7.1f} files/s")
    return n / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", default="demo")
    parser.add_argument("--sample", type=int, default=200, help="files for the decode comparison")
    args = parser.parse_args()
    p = paths.resolve(dataset=args.dataset)
    listed, _ = listing.list_files(p.dataset_dir, layout=listing.detect_layout(p.dataset_dir))
    files = [p.dataset_dir / rel for rel in listed["path"]]
    print(f"{len(files)} files, {os.cpu_count()} CPU cores")

    sample = [f for f in files if photos.is_image_name(f)][: args.sample]
    timings = {}
    for label, side in (("decode at full size", None), (f"decode at <= {quality.QUALITY_SIDE} px", quality.QUALITY_SIDE)):
        start = time.perf_counter()
        for f in sample:
            try:
                photos.read_photo(f, max_side=side)
            except DataError:
                pass
        timings[label] = _rate(label, len(sample), time.perf_counter() - start)
    full, reduced = timings.values()
    print(f"reduced-scale decoding is {reduced / full:.1f}x faster\n")

    rates = []
    for workers in (1, os.cpu_count() or 1):
        start = time.perf_counter()
        audit.audit_dataset(p.dataset_dir, workers=workers, progress=False)
        rates.append(_rate(f"whole audit, {workers} worker(s)", len(files), time.perf_counter() - start))
    print(f"process pool speed-up: {rates[-1] / rates[0]:.2f}x")


if __name__ == "__main__":
    main()
