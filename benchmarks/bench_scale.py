"""Prediction on Dask, side by side in one run: ``meterlib predict`` serial and ``--workers N`` on this machine,
the rate of one worker, and what 64 workers would do.

    python benchmarks/bench_scale.py [--model FILE] [--photos FOLDER] [--count 128] [--workers 2]

Each command runs as a subprocess, start-up included, on ``count`` and on ``2 x count`` photos; the
difference between the two is the steady rate, without the start-up (the serial command's model
load; the local cluster's start and one model load per worker). The model is the demo checkpoint
(reports/model/meterlib_checkpoint.pt) and the photos the demo's raw/ photos; the rows are checked equal.

Target on 2 CPU cores: ``--workers 2`` >= 0.9x the serial rate (two cores leave nothing to gain; the
point is to lose nothing). The projection to 64 workers assumes what it prints: each worker as fast as
one here, and storage that delivers their photos.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from meterlib.run import machine, paths

TARGET = 0.9  # --workers N at least this share of the serial rate
PROJECTED_WORKERS = 64


def run_predict(files: list[Path], model: Path, out: Path, extra: list[str]) -> float:
    """Wall seconds of ``meterlib predict FILES --csv OUT`` as a subprocess."""
    command = [sys.executable, "-m", "meterlib", "predict", *map(str, files), "--model", str(model),
               "--csv", str(out), *extra]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    seconds = time.perf_counter() - start
    if result.returncode:
        sys.exit(f"{' '.join(command[:4])} ... failed:\n{result.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=paths.resolve().checkpoint)
    parser.add_argument("--photos", type=Path, default=paths.resolve(dataset="demo").raw_dir)
    parser.add_argument("--count", type=int, default=128,
                        help="photos of the shorter run (the longer: twice); whole rounds of partitions keep workers even")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    files = sorted(args.photos.rglob("*.jpg"), key=str)[:2 * args.count]
    if len(files) < 2 * args.count:
        sys.exit(f"{args.photos}: {len(files)} photos, the run needs {2 * args.count}")
    modes = {"serial": [], f"--workers {args.workers}": ["--workers", str(args.workers), "--partition-size", "32"]}
    megabytes = sum(file.stat().st_size for file in files) / len(files) / 2**20
    print(f"{args.model} on {2 * args.count} photos of {args.photos} ({megabytes:.2f} MB each on average); "
          f"{machine.usable_cpus()} usable CPUs, load average {os.getloadavg()[0]:.2f}")
    rates, outputs = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for mode, extra in modes.items():
            seconds = []
            for count in (args.count, 2 * args.count):
                out = Path(scratch) / f"{mode.strip('-').replace(' ', '_')}_{count}.csv"
                seconds.append(run_predict(files[:count], args.model, out, extra))
                outputs[mode] = out.read_bytes()
            rates[mode] = args.count / (seconds[1] - seconds[0])
            print(f"{mode:>12}: {args.count} photos {seconds[0]:6.1f} s, {2 * args.count} photos {seconds[1]:6.1f} s "
                  f"-> {rates[mode]:5.1f} photos/s steady, {2 * args.count / seconds[1]:5.1f} photos/s with start-up")
    serial, scaled = rates.values()
    per_worker = scaled / args.workers
    same = len(set(outputs.values())) == 1
    print(f"--workers {args.workers} / serial: {scaled / serial:.2f}x (target >= {TARGET}x: "
          f"{'met' if scaled >= TARGET * serial else 'NOT met'}); rows identical: {same} (probabilities may differ "
          "in the 6th decimal where torch's thread counts differ: float sums in another order)")
    print(f"per worker: {per_worker:.1f} photos/s on {max(1, machine.usable_cpus() // args.workers)} thread(s)")
    needed = PROJECTED_WORKERS * per_worker * megabytes
    print(f"{PROJECTED_WORKERS} workers: {PROJECTED_WORKERS * per_worker:.0f} photos/s "
          f"({1e6 / (PROJECTED_WORKERS * per_worker) / 3600:.1f} h per million photos), assuming each worker has "
          f"cores of its own as fast as one here and the storage delivers {needed:.0f} MB/s of photos "
          f"({PROJECTED_WORKERS} x {per_worker:.1f} photos/s x {megabytes:.2f} MB) to them; slower storage caps it "
          f"at its bandwidth / {megabytes:.2f} MB photos/s")


if __name__ == "__main__":
    main()
