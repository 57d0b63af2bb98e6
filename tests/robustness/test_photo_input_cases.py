"""Fault injection on photo input: reads that block or run long, photos too large to decode, the
same photo in every form, Pillow's warnings, and the files a folder holds besides photos.

Every case builds its input in a temporary folder, states the exact outcome, and checks that
the folder is byte-identical afterwards.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFile, ImageOps

from meterlib.data import photos
from meterlib.errors import DataError, MeterlibError
from meterlib.model import inference
from meterlib.run import bounded_read
from meterlib.serve import batch

FIELD_SIDE = 224  # a field model's input side: the squash that the field sizes below are decoded for


def meter_photo(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A photo-like RGB picture of ``size`` (width, height): smooth shapes with sensor noise, as JPEG meets them."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (12, 9, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)
    noisy = np.asarray(coarse, dtype=np.int16) + rng.integers(-8, 9, (size[1], size[0], 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def jpeg(folder: Path, name: str, size: tuple[int, int] = (48, 64), **options) -> Path:
    """A JPEG of ``meter_photo(size)`` at ``folder / name`` (``options``: Pillow's, e.g. ``exif``)."""
    meter_photo(size).save(folder / name, "JPEG", quality=90, **options)
    return folder / name


def with_size(jpeg_bytes: bytes, width: int, height: int) -> bytes:
    """``jpeg_bytes`` with a frame header (SOF0) claiming ``width`` x ``height``: huge, as far as the header goes."""
    at = jpeg_bytes.index(b"\xff\xc0")
    return jpeg_bytes[:at + 5] + struct.pack(">HH", height, width) + jpeg_bytes[at + 9:]


def silent_outcomes(call):
    """``call()`` and the warnings it let through to the caller; it must leave the warning filters as they were."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        filters = list(warnings.filters)
        result = call()
        assert warnings.filters == filters, "a warning filter was left behind"
    return result, [f"{w.category.__name__}: {w.message}" for w in caught]


# --- 1. reads are bounded in size and time --------------------------------------------------------

def test_a_link_to_a_procfs_file_is_an_error_row_not_a_hang(predictor, folder, robust):
    robust.entry = "Predictor.predict_each"
    good = jpeg(folder, "good.jpg")
    (folder / "status.jpg").symlink_to("/proc/self/status")  # calls itself regular, has no size
    with robust.untouched(folder):
        started = time.monotonic()
        outcomes = predictor.predict_each([good, folder / "status.jpg"])
    assert time.monotonic() - started < photos.READ_TIMEOUT_S
    assert outcomes[0].ok and outcomes[1].error == "not an image file (format not recognised)"
    robust.ok("error row: " + outcomes[1].error)


@pytest.fixture()
def blocking_reads(monkeypatch):
    """Reads of files named blocks*.jpg wait until the test ends, as /proc/kmsg's do; the time limit is 0.3 s."""
    release, real_read = threading.Event(), os.read

    def read(fd, size):
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith("blocks"):
            release.wait()
        return real_read(fd, size)

    monkeypatch.setattr(bounded_read.os, "read", read)
    monkeypatch.setattr(photos, "READ_TIMEOUT_S", 0.3)
    yield
    release.set()  # the abandoned reader threads finish and close their files


def test_a_file_that_blocks_is_an_error_row_and_the_other_photos_are_answered(predictor, folder, robust,
                                                                               blocking_reads):
    robust.entry = "Predictor.predict_each"
    sources = [jpeg(folder, "a.jpg"), jpeg(folder, "blocks1.jpg"), jpeg(folder, "b.jpg"), jpeg(folder, "blocks2.jpg")]
    with robust.untouched(folder):
        started = time.monotonic()
        outcomes = predictor.predict_each(sources, batch_size=4)
    assert time.monotonic() - started < 5
    assert [o.error for o in outcomes] == [None, "reading did not finish within 0.3 s (a file that blocks)",
                                           None, "reading did not finish within 0.3 s (a file that blocks)"]
    robust.ok("2 error rows (reading did not finish within 0.3 s), 2 answers")


def test_one_photo_that_blocks_is_an_image_error_naming_it(predictor, folder, robust, blocking_reads):
    robust.entry = "Predictor.predict"
    path = jpeg(folder, "blocks.jpg")
    with robust.untouched(folder), pytest.raises(DataError) as raised:
        predictor.predict(path)
    robust.error(raised.value, names=path, problem=r"reading did not finish within 0\.3 s \(a file that blocks\)$")


@pytest.mark.parametrize("entry", ["Predictor.predict", "photos.read_photo", "photos.load_thumbnail"])
def test_every_reader_of_a_file_has_the_size_cap(entry, predictor, folder, robust, monkeypatch):
    robust.entry = entry
    path = folder / "huge.jpg"
    path.write_bytes(jpeg(folder, "small.jpg").read_bytes() + bytes(2**20))  # decodable, were it read
    monkeypatch.setattr(photos, "MAX_PHOTO_BYTES", 2**20)
    call = {"Predictor.predict": predictor.predict, "photos.read_photo": photos.read_photo,
            "photos.load_thumbnail": photos.load_thumbnail}[entry]
    with robust.untouched(folder), pytest.raises(DataError) as raised:
        call(path)
    robust.error(raised.value, names=path, problem=r"too large \(over 1 MB\)$")


# --- 2. one photo, one answer, whatever its form --------------------------------------------------

def forms_of(path: Path) -> dict:
    """The photo at ``path`` as each caller might hand it over: its path, bytes, PIL image and array."""
    data = path.read_bytes()
    with Image.open(path) as opened:
        upright = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))  # an array holds no EXIF
    return {"path": path, "str": str(path), "bytes": data, "memoryview": memoryview(data),
            "PIL": Image.open(path), "array": upright}


@pytest.mark.parametrize("size, orientation", [((720, 1280), 1), ((3000, 4000), 1), ((3000, 4000), 6)],
                         ids=["720x1280", "3000x4000", "3000x4000 EXIF-turned"])
def test_path_bytes_pil_and_array_of_a_field_photo_give_identical_pixels(size, orientation, predictor, folder,
                                                                         robust):
    robust.entry = "inference.load_resized"
    exif = Image.Exif()
    exif[photos.EXIF_ORIENTATION] = orientation
    forms = forms_of(jpeg(folder, "meter.jpg", size, exif=exif))
    with robust.untouched(folder):
        pixels = {name: picture.tobytes()
                  for name, picture in zip(forms, inference.load_resized(list(forms.values()), image_size=FIELD_SIDE))}
        probabilities = predictor.probabilities(list(forms.values()))
    assert {name: value == pixels["path"] for name, value in pixels.items()} == dict.fromkeys(forms, True)
    np.testing.assert_array_equal(probabilities, np.tile(probabilities[0], (len(forms), 1)))
    robust.ok(f"{', '.join(forms)}: identical {FIELD_SIDE} px pixels and probabilities")


# --- 3. decoding memory: a pixel cap from the header, threads that fit in memory ------------------

def bilevel_png(folder: Path, name: str, size: tuple[int, int]) -> Path:
    """A real PNG of ``size`` pixels that takes a few kB: one bit a pixel, a black block on white."""
    img = Image.new("1", size, 1)
    ImageDraw.Draw(img).rectangle([size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2], fill=0)
    img.save(folder / name)
    return folder / name


CAP = "photos of up to 120 MP are read"


@pytest.mark.parametrize("make, problem", [
    (lambda folder: bilevel_png(folder, "scan.png", (12000, 12000)), f"too many pixels (144 MP; {CAP})"),
    (lambda folder: folder / "phone.jpg", f"too many pixels (130 MP; {CAP})"),
    (lambda folder: folder / "phone200.jpg", f"too many pixels (over 179 MP; {CAP})"),
], ids=["144 MP PNG", "130 MP JPEG header", "200 MP JPEG header (over Pillow's own limit)"])
def test_a_photo_over_the_pixel_cap_is_refused_from_its_header(make, problem, folder, robust, monkeypatch):
    robust.entry = "Predictor.predict_each"
    small = jpeg(folder, "small.jpg").read_bytes()
    (folder / "phone.jpg").write_bytes(with_size(small, 13200, 9850))
    (folder / "phone200.jpg").write_bytes(with_size(small, 16320, 12240))
    path = make(folder)
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda img: decoded.append(img.size))
    with robust.untouched(folder):
        outcomes, escaped = silent_outcomes(lambda: batch.decode_each([path], [path.name], image_size=32))
    assert (str(outcomes[0]), decoded, escaped) == (f"{path.name}: {problem}", [], [])
    robust.error(outcomes[0], names=path.name, problem="too many pixels")


def test_six_144_mp_photos_stay_in_flat_memory(folder, robust):
    robust.entry = "inference.load_resized_each"
    paths = [bilevel_png(folder, f"scan{i}.png", (12000, 12000)) for i in range(6)]
    # A fresh process, so that its peak memory is this batch's (decoded, each would take 576 MB as RGB).
    script = ("import resource, sys; from meterlib.model import inference; "
              "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
              "out = inference.load_resized_each(sys.argv[1:], image_size=224); "
              "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, *{str(e.problem) for e in out})")
    with robust.untouched(folder):
        result = subprocess.run([sys.executable, "-c", script, *map(str, paths)], capture_output=True, text=True,
                                check=True)
    grown_kb, problem = result.stdout.split(" ", 1)
    assert problem.strip() == f"too many pixels (144 MP; {CAP})" and int(grown_kb) < 50_000, result.stdout
    robust.ok(f"6 refused from their headers, peak memory +{int(grown_kb) // 1024} MB")


def test_the_cap_applies_to_every_form_and_a_thumbnail_is_decoded_small(folder, robust, monkeypatch):
    robust.entry = "photos.load_rgb, photos.load_thumbnail"
    monkeypatch.setattr(photos, "MAX_PHOTO_PIXELS", 1_000_000)
    forms = forms_of(jpeg(folder, "meter.jpg", (1600, 1200)))
    with robust.untouched(folder):
        problems = {name: pytest.raises(DataError, photos.load_rgb, source, min_side=32).value.problem
                    for name, source in forms.items()}
        thumbnail = photos.load_thumbnail(forms["path"], max_side=256)
    assert problems == dict.fromkeys(forms, "too many pixels (1.92 MP; photos of up to 1 MP are read)")
    assert thumbnail.size == (256, 192)  # the JPEG decoded at 1/4 scale (0.12 MP) before the cap is checked
    robust.ok("every form refused at 1.92 MP (cap 1 MP); the thumbnail decodes at 1/4 scale")


@pytest.mark.parametrize("cpus, memory_at_cap, expected", [(16, 100, 8), (2, 100, 2), (16, 3.5, 3), (16, 0.2, 1)],
                         ids=["8 at most", "the CPUs it may use", "what memory holds", "always one"])
def test_decode_threads_follow_the_cpu_affinity_and_the_memory(cpus, memory_at_cap, expected, monkeypatch, robust):
    robust.entry = "inference.decode_threads"
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)))
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the machine's count, which affinity narrows
    monkeypatch.setattr(inference, "_available_memory", lambda: int(memory_at_cap * photos.DECODE_PEAK_BYTES))
    assert inference.decode_threads() == expected
    robust.ok(f"{cpus} CPUs, memory for {memory_at_cap} photos at the cap: {expected} threads")


# --- 4. Pillow's warnings stay inside -------------------------------------------------------------

def corrupt_exif_jpeg(folder: Path) -> Path:
    """A JPEG whose EXIF names a Make tag stored past the end of its data."""
    tiff = b"MM\x00*" + struct.pack(">IH", 8, 1) + struct.pack(">HHII", 0x010F, 2, 40, 0x100) + bytes(4)
    return jpeg(folder, "corrupt_exif.jpg", exif=b"Exif\x00\x00" + tiff)


@pytest.mark.parametrize("make, warning", [
    (corrupt_exif_jpeg, "UserWarning: Tag data larger than file. Skipping tag 271"),
    (lambda folder: bilevel_png(folder, "scan90.png", (9500, 9500)), "DecompressionBombWarning: Image size"),
], ids=["corrupt EXIF", "90 MP (over Pillow's bomb warning)"])
def test_no_pillow_warning_reaches_the_user(make, warning, predictor, folder, robust):
    robust.entry = "Predictor.predict, predict_each"
    path = make(folder)
    _, plain = silent_outcomes(lambda: ImageOps.exif_transpose(Image.open(path)))
    assert [w for w in plain if w.startswith(warning)], plain  # Pillow alone does warn on this file
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the caller's own Image.open warns too: not meterlib's doing
        opened = Image.open(path)  # lazily: meterlib decodes it
        converted = Image.open(path).convert("RGB")  # keeps the raw EXIF, which meterlib then reads
    with robust.untouched(folder):
        many, escaped = silent_outcomes(
            lambda: [predictor.predict(converted), predictor.predict(path),
                     *predictor.predict_each([path, path.read_bytes(), opened])][2:])
    assert (escaped, [o.ok for o in many]) == ([], [True, True, True])
    robust.ok(f"answered, no warning escaped (Pillow alone: {warning})")


def test_a_batch_sets_the_warning_filters_once_in_the_calling_thread(folder, robust, monkeypatch):
    robust.entry = "inference.load_resized_each"
    paths = [jpeg(folder, f"{i}.jpg") for i in range(6)]
    entered, real = [], warnings.catch_warnings
    monkeypatch.setattr(warnings, "catch_warnings", lambda: entered.append(threading.current_thread()) or real())
    monkeypatch.setattr(inference, "decode_threads", lambda: 1)  # each photo after the other
    with robust.untouched(folder):
        inference.load_resized_each(paths, image_size=32)
    assert entered == [threading.current_thread()]
    robust.ok("filters set once, by the calling thread, for 6 photos")


def test_importing_meterlib_sets_no_warning_filter(robust):
    robust.entry = "import meterlib"
    # numpy sets filters of its own when imported: import it first.
    script = ("import warnings, numpy, PIL.Image; before = list(warnings.filters); "
              "import meterlib.data.photos, meterlib.model.inference, meterlib.serve.batch; "
              "print(warnings.filters == before)")
    assert subprocess.run([sys.executable, "-c", script], capture_output=True, text=True).stdout == "True\n"
    robust.ok("warnings.filters unchanged")


# --- 5. what a folder holds besides photos --------------------------------------------------------

def test_other_files_in_folders_are_counted_and_jpeg_suffixes_are_read(predictor, folder, robust):
    robust.entry = "batch.expand_inputs"
    for name in ["a.jpg", "b.jfif", "c.JPE", "sub/d.jpeg"]:
        (folder / name).parent.mkdir(exist_ok=True)
        jpeg(folder, name)
    for name in ["e.heic", "sub/f.HEIC", "README", ".DS_Store", ".thumbnails/g.jpg"]:
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(b"not read")
    with robust.untouched(folder):
        inputs = batch.expand_inputs([folder])
        outcomes = predictor.predict_each(inputs.files)
    assert [path.relative_to(folder).as_posix() for path in inputs.files] == ["a.jpg", "b.jfif", "c.JPE", "sub/d.jpeg"]
    assert all(o.ok for o in outcomes)
    assert inputs.skipped == {".heic": 2, "no suffix": 1, "hidden": 2}
    summary = ("5 files skipped in folders: 2 .heic, 1 without a suffix (not photo formats meterlib reads), "
               "2 hidden (names starting with '.')")
    assert inputs.skipped_summary() == summary
    robust.ok("4 photos answered; " + summary)


def test_a_folder_of_only_other_formats_is_an_error_and_nothing_skipped_says_nothing(folder, robust):
    robust.entry = "batch.expand_inputs"
    (folder / "x.heic").write_bytes(b"not read")
    with robust.untouched(folder):
        with pytest.raises(MeterlibError) as raised:
            batch.expand_inputs([folder])
        jpeg(folder.parent, "named.jpg")
        assert batch.expand_inputs([folder.parent / "named.jpg"]).skipped_summary() == ""
    robust.error(raised.value, names=folder, problem="^no photos found in")
