"""PyTorch against ONNX Runtime (float32 and INT8), side by side in one run: one photo's latency and batch throughput.

    python benchmarks/bench_onnx.py [--photos 64] [--repeats 40] [--batch-size 16] [--similarity-repeats 100]

End to end, as the Predictor serves: a 720x1280 JPEG file in, the calibrated answer out (decode at
reduced scale, squash, normalise, network, temperature, UNKNOWN rule, prediction set). Models:

- EfficientNet-Lite0 (the default backbone): the demo checkpoint (``bash run.sh demo``) when it
  exists, else the bundled ImageNet weights with an untrained head and reference features that
  ``reference.build`` makes of the benchmark photos, cycled to ``REFERENCE_PHOTOS`` rows (about
  the demo's training split); ResNet-18: random weights (speed does not depend on what the
  weights learnt). Both at 224 px.
- Runtimes: eager PyTorch (the checkpoint as loaded), PyTorch channels-last with batch norms
  folded (what ``meterlib predict`` runs on a checkpoint), ONNX Runtime float32 and INT8 (the
  ``meterlib export`` code; INT8 calibrated on demo training photos, or on the benchmark photos
  when there is no demo model).

The runtimes take turns photo by photo, so load from other work on the machine hits them alike;
the load average is printed. With the demo model, the demo test accuracy of float32 and INT8 is
printed too. CPU ms is the process time of all threads, which other work inflates far less than
wall time: on an idle 2-core machine a call would take roughly half of it to all of it.

Then the cost of the unseen-type score: INT8 one-photo latency of a Lite0 checkpoint with reference
features (the demo model's, calibrated or not, when it has them; else the one above), exported with
the similarity outputs and without them, taking turns; without an unseen-type rule in the checkpoint,
one fitted on the benchmark photos makes the p-value part of the answer.

Targets on 2 CPU cores, fastest runtime: one photo p50 <= 15 ms, batch >= 70 photos/s, >= 2x
eager PyTorch for one photo; INT8 loses <= 0.5 point of test accuracy; the similarity outputs cost
INT8 <= 10% of one photo's p50.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

# As the predict command does, before torch loads: idle OpenMP threads sleep instead of spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import dataclasses  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from meterlib.confidence import unseen  # noqa: E402
from meterlib.export import check, onnx_files  # noqa: E402
from meterlib.model import backbones, checkpoint, inference, onnx_metadata, reference  # noqa: E402
from meterlib.run import paths  # noqa: E402
from meterlib.serve import Predictor, batch  # noqa: E402
from meterlib.synth import DatasetSpec, class_names, generate_dataset  # noqa: E402

IMAGE_SIZE, N_CLASSES = 224, 35
TARGET_P50_MS, TARGET_RATE, TARGET_SPEED_UP, TARGET_INT8_LOSS = 15.0, 70.0, 2.0, 0.005
TARGET_SIMILARITY_COST = 1.10  # INT8 one photo p50 with the similarity outputs / without
REFERENCE_PHOTOS = 1200  # about the demo's training split (1975 photos, 35 known types, 65% train)
RUNTIMES = ("PyTorch eager", "PyTorch channels-last", "ORT float32", "ORT INT8")
SIMILARITY_RUNTIMES = ("ORT INT8 logits only", "ORT INT8 with similarity")


def resnet18_checkpoint(folder: Path) -> Path:
    """ResNet-18 with random weights, saved as a checkpoint of its real backbone name."""
    torch.manual_seed(0)
    mean, std = backbones.normalisation("resnet18")
    spec = checkpoint.ModelSpec("resnet18", class_names(N_CLASSES), IMAGE_SIZE, mean=mean, std=std)
    model = backbones.build_classifier("resnet18", N_CLASSES, pretrained=False)
    return checkpoint.save(folder / "resnet18.pt", model=model, spec=spec)


def lite0_checkpoint(folder: Path, files: list[Path]) -> tuple[Path, bool]:
    """The demo model when it exists (True), else ``random_lite0`` (False)."""
    demo = paths.resolve().checkpoint
    if demo.is_file() and checkpoint.load(demo)["backbone"] == "efficientnet_lite0":
        return demo, True
    return random_lite0(folder, files), False


def random_lite0(folder: Path, files: list[Path]) -> Path:
    """The bundled Lite0 weights with an untrained head, and reference features of ``files`` cycled to
    REFERENCE_PHOTOS rows."""
    torch.manual_seed(0)
    model, name, _ = backbones.create("efficientnet_lite0", N_CLASSES)
    mean, std = backbones.normalisation(name)
    spec = checkpoint.ModelSpec(name, class_names(N_CLASSES), IMAGE_SIZE, mean=mean, std=std)
    rows = np.arange(REFERENCE_PHOTOS)
    features = reference.build(model, [files[i % len(files)] for i in rows], rows % N_CLASSES, spec=spec)
    return checkpoint.save(folder / "lite0.pt", model=model, spec=spec, reference_features=features)


def similarity_checkpoint(lite0: Path, folder: Path, files: list[Path]) -> tuple[Path, str]:
    """The first checkpoint with reference features of: the demo model, the demo's uncalibrated one, ``lite0``;
    else ``random_lite0``. With the words that say which."""
    where = paths.resolve()
    for path in dict.fromkeys((where.checkpoint, where.trained_checkpoint, lite0)):
        if path.is_file() and "reference_features" in checkpoint.load(path):
            return path, (f"{path.name}, made here: bundled Lite0 weights, untrained head, reference.build on the "
                          "benchmark photos" if path.parent == folder else str(path))
    return random_lite0(folder, files), ("no demo checkpoint with reference features: lite0.pt made here with "
                                         "reference.build on the benchmark photos")


def exports(content: dict, name: str, folder: Path, calibration: list, *, source: Path) -> tuple[Path, Path]:
    """The float32 and INT8 ONNX files of a loaded checkpoint, made as ``meterlib export`` makes them."""
    float32 = onnx_files.write_float32(content, folder / f"{name}.onnx", source=source)
    fields = onnx_metadata.fields_from_checkpoint(content, precision="float32")
    return float32, onnx_files.quantize(float32, folder / f"{name}.int8.onnx", pictures=calibration, fields=fields)


def predictors(model_path: Path, folder: Path, calibration: list) -> dict[str, Predictor]:
    """The four runtimes of one checkpoint; the ONNX ones exported as ``meterlib export`` does."""
    float32, int8 = exports(checkpoint.load(model_path), model_path.stem, folder, calibration, source=model_path)
    eager = Predictor.from_checkpoint(model_path, device="cpu")
    return dict(zip(RUNTIMES, (eager, eager.with_folded_batch_norms(), Predictor.load(float32), Predictor.load(int8))))


def similarity_cost(model: tuple[Path, str], folder: Path, calibration: list, files: list[Path], *,
                    repeats: int) -> list[str]:
    """INT8 one-photo latency of one checkpoint exported without and with the similarity outputs, taking turns."""
    model_path, described = model
    content = checkpoint.load(model_path)
    alone = {key: value for key, value in content.items() if key != "reference_features"}
    runtimes = {name: Predictor.load(exports(exported, f"{model_path.stem}-{index}", folder, calibration,
                                             source=model_path)[1])
                for index, (name, exported) in enumerate(zip(SIMILARITY_RUNTIMES, (alone, content)))}
    scored = runtimes[SIMILARITY_RUNTIMES[1]]
    rule = "its own unseen-type rule"
    if scored.calibration.unseen_type is None:
        evidence = scored.evidence(files)
        fitted = unseen.fit_unseen_rule(evidence.logits, evidence.similarity,
                                        temperature=scored.calibration.temperature, min_photos=1)
        runtimes[SIMILARITY_RUNTIMES[1]] = scored.with_calibration(
            dataclasses.replace(scored.calibration, unseen_type=fitted))
        rule = f"an unseen-type rule fitted on the {len(files)} benchmark photos"
    seconds = latencies(runtimes, files, repeats=repeats)
    p50 = {name: float(np.median(values[:, 0])) * 1000 for name, values in seconds.items()}
    cpu = {name: float(np.median(values[:, 1])) * 1000 for name, values in seconds.items()}
    ratio = p50[SIMILARITY_RUNTIMES[1]] / p50[SIMILARITY_RUNTIMES[0]]
    met = "met" if ratio <= TARGET_SIMILARITY_COST else "NOT met"
    return [f"unseen-type score cost, INT8 one photo, {repeats} calls each, taking turns: {described} "
            f"({len(content['reference_features']['labels'])} reference photos), {rule}",
            *(f"  {name:26} p50 {p50[name]:6.1f} ms, CPU {cpu[name]:6.1f} ms" for name in SIMILARITY_RUNTIMES),
            f"  p50 with / without the similarity outputs: {ratio:.3f} (target <= {TARGET_SIMILARITY_COST:.2f}: {met})"]


def latencies(runtimes: dict[str, Predictor], files: list[Path], *, repeats: int) -> dict[str, np.ndarray]:
    """Wall and CPU seconds (repeats x 2) of one-photo ``predict`` calls, the runtimes taking turns."""
    seconds = {name: [] for name in runtimes}
    for predictor in runtimes.values():  # warm-up: the first calls set up kernels and caches
        for path in files[:3]:
            predictor.predict(path)
    for index in range(repeats):
        for name, predictor in runtimes.items():
            start, cpu = time.perf_counter(), time.process_time()
            predictor.predict(files[index % len(files)])
            seconds[name].append((time.perf_counter() - start, time.process_time() - cpu))
    return {name: np.array(values) for name, values in seconds.items()}


def throughputs(runtimes: dict[str, Predictor], files: list[Path], *, batch_size: int, rounds: int = 3) -> dict:
    """Photos per second of ``predict_each`` over every file (the best of ``rounds``, taking turns), CPU ms a photo."""
    rates = {name: [] for name in runtimes}
    for _ in range(rounds):
        for name, predictor in runtimes.items():
            start, cpu = time.perf_counter(), time.process_time()
            predictor.predict_each(files, batch_size=batch_size)
            rates[name].append((len(files) / (time.perf_counter() - start),
                                1000 * (time.process_time() - cpu) / len(files)))
    return {name: max(values) for name, values in rates.items()}


def table(model: str, seconds: dict[str, np.ndarray], rates: dict[str, tuple]) -> list[str]:
    """One row per runtime: one photo's p50/p95 and CPU ms, a batch's photos/s and CPU ms a photo, beside eager."""
    base_p50, base_rate = np.median(seconds[RUNTIMES[0]][:, 0]) * 1000, rates[RUNTIMES[0]][0]
    rows = []
    for name in RUNTIMES:
        p50, p95 = np.percentile(seconds[name][:, 0], [50, 95]) * 1000
        cpu = np.median(seconds[name][:, 1]) * 1000
        rate, batch_cpu = rates[name]
        rows.append(f"{model:18} {name:22} {p50:7.1f} {p95:7.1f} {cpu:7.1f} {base_p50 / p50:8.2f}x "
                    f"{rate:9.1f} {batch_cpu:7.1f} {rate / base_rate:8.2f}x")
    return rows


def verdict(model: str, seconds: dict[str, np.ndarray], rates: dict[str, tuple]) -> str:
    """Whether the fastest runtime meets the targets."""
    p50 = {name: float(np.median(values[:, 0])) * 1000 for name, values in seconds.items()}
    fastest = min(p50, key=p50.get)
    speed_up, best_rate = p50[RUNTIMES[0]] / p50[fastest], max(rate for rate, _ in rates.values())
    checks = (p50[fastest] <= TARGET_P50_MS, speed_up >= TARGET_SPEED_UP, best_rate >= TARGET_RATE)
    met = ", ".join("met" if ok else "NOT met" for ok in checks)
    return (f"{model}: fastest one photo {fastest} {p50[fastest]:.1f} ms, {speed_up:.2f}x eager; "
            f"best batch {best_rate:.1f} photos/s (targets: {met})")


def demo_accuracy(runtimes: dict[str, Predictor], model_path: Path) -> list[str]:
    """Demo test accuracy: ONNX float32 beside PyTorch, INT8 beside float32."""
    test = check.split_photos(paths.resolve().splits_csv, checkpoint.load(model_path), split="test")
    pictures = inference.load_resized(test.paths, image_size=IMAGE_SIZE)
    float32, int8 = runtimes["ORT float32"], runtimes["ORT INT8"]
    exported = check.compare(runtimes[RUNTIMES[0]], float32, pictures, test.labels)
    quantized = check.compare(float32, int8, pictures, test.labels)
    met = "met" if -quantized.accuracy_change <= TARGET_INT8_LOSS else "NOT met"
    return [f"ORT float32, {check.summary(exported, against='PyTorch')}",
            f"ORT INT8, {check.summary(quantized, against='float32')} "
            f"(target: loses <= {100 * TARGET_INT8_LOSS:g} point: {met})"]


def run(folder: Path, *, photos: int, repeats: int, batch_size: int, similarity_repeats: int) -> list[str]:
    generate_dataset(folder / "photos", DatasetSpec(n_images=photos, n_classes=8), progress=False)
    files = batch.expand_inputs([folder / "photos"]).files
    lite0, trained = lite0_checkpoint(folder, files)
    calibration = (onnx_files.calibration_pictures(paths.resolve().splits_csv, checkpoint.load(lite0)) if trained
                   else inference.load_resized(files, image_size=IMAGE_SIZE))
    lines, verdicts, accuracy = [], [], []
    for model, path in (("EfficientNet-Lite0", lite0), ("ResNet-18", resnet18_checkpoint(folder))):
        runtimes = predictors(path, folder, calibration)
        seconds = latencies(runtimes, files, repeats=repeats)
        rates = throughputs(runtimes, files, batch_size=batch_size)
        lines += table(model, seconds, rates)
        verdicts.append(verdict(model, seconds, rates))
        if trained and not accuracy:
            accuracy = demo_accuracy(runtimes, path)
    cost = similarity_cost(similarity_checkpoint(lite0, folder, files), folder, calibration, files,
                           repeats=similarity_repeats)
    return lines + verdicts + (accuracy or ["no demo model (bash run.sh demo): accuracy not measured"]) + cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=64, help="720x1280 JPEG photos, each predicted in turn")
    parser.add_argument("--repeats", type=int, default=40, help="one-photo calls per runtime")
    parser.add_argument("--batch-size", type=int, default=16, help="photos per batch (as meterlib predict)")
    parser.add_argument("--similarity-repeats", type=int, default=100,
                        help="one-photo calls of INT8 with and without the similarity outputs")
    args = parser.parse_args()
    print(f"{args.photos} photos of 720x1280, {IMAGE_SIZE} px, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}, load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        lines = run(Path(tmp), photos=args.photos, repeats=args.repeats, batch_size=args.batch_size,
                    similarity_repeats=args.similarity_repeats)
    print(f"{'':41} {'one photo':-^34} {'batch':-^28}")
    print(f"{'model':18} {'runtime':22} {'p50 ms':>7} {'p95 ms':>7} {'CPU ms':>7} {'vs eager':>9} "
          f"{'photos/s':>9} {'CPU ms':>7} {'vs eager':>9}")
    print("\n".join(lines))
    print(f"targets (fastest runtime): one photo p50 <= {TARGET_P50_MS:g} ms and >= {TARGET_SPEED_UP:g}x eager, "
          f"batch >= {TARGET_RATE:g} photos/s; load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
