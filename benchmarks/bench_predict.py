"""Prediction speed, side by side in one run: the ``predict`` command, the tolerant batch, one photo at a time.

    python benchmarks/bench_predict.py [--photos 64] [--width 720] [--height 1280] [--repeats 20]

The model is the default backbone (EfficientNet-Lite0, 224 px, the bundled ImageNet weights) with
an untrained head: speed does not depend on what the head learnt. The photos are synthetic field
photos at phone size. Rows:

- CLI: ``python -m meterlib predict FOLDER --csv OUT`` as a subprocess, start-up included; the
  same for one photo gives the start-up, and the difference the command's own rate.
- predict_each: the tolerant batch in this process (no start-up), as the command runs it
  (batch norms folded, ``predict.BATCH_SIZE`` photos a batch), and as before (not folded, 32 a batch).
- predict: one photo per call, latency percentiles.
- panel: one uploaded photo (its bytes, as the FileUpload widget hands them over) to the drawn
  answer (``panel.answers.answer_uploads`` then ``panel.view.render``), with and without the
  heat-map; the checkpoint carries a gallery, so the nearest training photos are looked up too.

Targets on 2 CPU cores: the command >= 25 photos/s; the panel's answer with heat-map <= 1 s a photo. The load average is printed because other
work on the machine slows every row; CPU time per photo is what an idle machine would see.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# As the predict command does, before torch loads: idle OpenMP threads sleep instead of spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from meterlib.model import backbones, checkpoint  # noqa: E402
from meterlib.cli import predict
from meterlib.serve import Predictor, batch
from meterlib.model import gallery  # noqa: E402
from meterlib.synth import DatasetSpec, class_names, generate_dataset  # noqa: E402

TARGET_CLI_RATE = 25.0  # photos/s on 2 CPU cores
BACKBONE, IMAGE_SIZE, N_CLASSES = "efficientnet_lite0", 224, 8


@dataclass
class Row:
    """One measured thing: wall seconds of each call, the photos per call and the CPU seconds in all."""

    label: str
    seconds: list[float]
    photos: int
    cpu: float

    def rate(self) -> float:
        return self.photos * len(self.seconds) / sum(self.seconds)


def _cpu_seconds() -> float:
    t = os.times()  # finished subprocesses count as children
    return t.user + t.system + t.children_user + t.children_system


def measure(label: str, fn: Callable[[], object], repeats: int = 1, *, photos: int = 1) -> Row:
    """Time ``repeats`` calls of ``fn`` (each handling ``photos`` photos) as one table row."""
    seconds, cpu = [], _cpu_seconds()
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return Row(label, seconds, photos, _cpu_seconds() - cpu)


def make_checkpoint(folder: Path, files: list[Path]) -> Path:
    """The default backbone with pretrained weights and an untrained head, and a gallery of ``files``."""
    torch.manual_seed(0)
    model, name, _ = backbones.create(BACKBONE, N_CLASSES)
    mean, std = backbones.normalisation(name)
    spec = checkpoint.ModelSpec(name, class_names(N_CLASSES), IMAGE_SIZE, mean=mean, std=std)
    labels = [spec.class_names.index(path.parent.name) for path in files]
    return checkpoint.save(folder / "model.pt", model=model, spec=spec,
                           gallery=gallery.build(model, files, labels, spec=spec, per_class=4))


def panel_rows(predictor: Predictor, files: list[Path], repeats: int) -> list[Row]:
    """Upload to drawn answer, one photo at a time, with and without the heat-map."""
    from meterlib.panel import answers, view

    uploads = [{"name": path.name, "content": memoryview(path.read_bytes())} for path in files]
    rows = []
    for explain in (True, False):
        upload = iter(uploads * repeats)
        rows.append(measure(f"panel, upload to answer, heat-map {'on' if explain else 'off'}",
                            lambda: view.render_all(answers.answer_uploads(predictor, [next(upload)],
                                                                           explain=explain)), repeats))
    return rows


def cli(photos: list[Path] | Path, model: Path, out: Path, *options: str, **environment: str) -> Callable[[], None]:
    """A call of the predict command on ``photos`` (files or a folder), writing a CSV."""
    names = [str(p) for p in photos] if isinstance(photos, list) else [str(photos)]
    command = [sys.executable, "-m", "meterlib", "predict", *names, "--checkpoint", str(model), "--csv", str(out),
               *options]
    env = {**os.environ, **environment}
    return lambda: subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)


def table(rows: list[Row]) -> str:
    lines = [f"{'':36} {'calls':>5} {'photos/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'CPU ms/photo':>13}"]
    for row in rows:
        p50, p95 = np.percentile(row.seconds, [50, 95]) * 1000
        cpu = 1000 * row.cpu / (row.photos * len(row.seconds))
        lines.append(f"{row.label:36} {len(row.seconds):5} {row.rate():9.1f} {p50:8.0f} {p95:8.0f} {cpu:13.1f}")
    return "\n".join(lines)


def run(folder: Path, *, n: int, width: int, height: int, repeats: int) -> list[Row]:
    generate_dataset(folder / "photos", DatasetSpec(n_images=n, n_classes=N_CLASSES, width=width, height=height),
                     progress=False)
    files = batch.expand_inputs([folder / "photos"]).files
    model = make_checkpoint(folder, files)
    plain = Predictor.from_checkpoint(model)
    folded = plain.with_folded_batch_norms()
    for predictor in (folded, plain):  # warm-up: the first call of each batch shape sets up its kernels
        for size in (predict.BATCH_SIZE, 32):
            predictor.predict_each(files[:size], batch_size=size)
    one = measure("CLI, 1 photo (start-up)", cli(files[:1], model, folder / "one.csv"))
    every = measure(f"CLI, {n} photos", cli(folder / "photos", model, folder / "all.csv"), photos=n)
    rows = [one, every,
            Row("CLI, without start-up", [every.seconds[0] - one.seconds[0]], n - 1, every.cpu - one.cpu),
            measure(f"CLI, {n} photos, before: spinning, 32", cli(folder / "photos", model, folder / "old.csv",
                                                                 "--batch-size", "32", OMP_WAIT_POLICY="ACTIVE"),
                    photos=n),
            measure(f"predict_each, as the CLI: folded, {predict.BATCH_SIZE}",
                    lambda: folded.predict_each(files, batch_size=predict.BATCH_SIZE), photos=n),
            measure("predict_each, folded, 32", lambda: folded.predict_each(files, batch_size=32), photos=n),
            measure("predict_each, not folded, 32", lambda: plain.predict_each(files, batch_size=32), photos=n)]
    photo = iter(files * repeats)
    rows.append(measure("predict, one photo per call", lambda: folded.predict(next(photo)), repeats))
    return rows + panel_rows(plain, files, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=64)
    parser.add_argument("--width", type=int, default=720)
    parser.add_argument("--height", type=int, default=1280)
    parser.add_argument("--repeats", type=int, default=20, help="calls of the one-photo latency row")
    args = parser.parse_args()
    print(f"{args.photos} photos of {args.width}x{args.height}, {BACKBONE} at {IMAGE_SIZE} px, "
          f"{os.cpu_count()} cores, torch threads {torch.get_num_threads()}, load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = run(Path(tmp), n=args.photos, width=args.width, height=args.height, repeats=args.repeats)
    print(table(rows))
    verdicts = [f"{row.rate():.1f} photos/s {what} ({'met' if row.rate() >= TARGET_CLI_RATE else 'NOT met'})"
                for row, what in ((rows[1], "with start-up"), (rows[2], "without"))]
    print(f"target: CLI >= {TARGET_CLI_RATE:g} photos/s on 2 cores: {', '.join(verdicts)}; "
          f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
