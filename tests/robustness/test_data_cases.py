"""Fault injection on notebook 01's side: the audit, the split, the processed/ tree, splits.csv, figures.

One table per entry point and one parametrized test each. Every case builds a small dataset with
one hostile or broken input, runs the entry point and states the exact outcome: the flag the file
gets, or the error that names the file (or parameter) and the problem. The dataset is
byte-identical afterwards unless the case is about the processed/ tree meterlib writes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from meterlib.data import audit, figures, measuring, photos, processed_tree, splits  # noqa: E402
from meterlib.errors import DataError, MeterlibError, OutputError, SettingsError  # noqa: E402

RULE = dict(min_images_test=4, min_images_val=10, test_fraction=0.25, val_fraction=0.2)
# A regression that blocks on a FIFO fails here instead of hanging the suite.
DEADLINE_S = 10


# --- building datasets ------------------------------------------------------------------------

def noise_png(path: Path | bytes, seed: int, size: tuple[int, int] = (64, 64)) -> Path | bytes:
    """A distinct, sharp, mid-grey random picture (no quality flag, its own perceptual hash).

    ``path`` may be bytes, for names that are not UTF-8.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as out:
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(out, "PNG")
    return path


def dataset(root: Path, counts: dict[str, int], *, layout: str = "raw") -> Path:
    """root/raw/<class>/<n>.png, or root/processed/<split>/<class>/<n>.png for 'split/class' keys."""
    seed = 0
    for folder, n in counts.items():
        for i in range(n):
            noise_png(root / layout / folder / f"{i}.png", seed)
            seed += 1
    return root


def link(path: Path, target: str | Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


def put(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def unix_socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))


@contextlib.contextmanager
def deadline(seconds: int):
    """Raise TimeoutError in the main thread when the block runs longer than ``seconds``."""
    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def refuse_reading(name: str, error: OSError, *, at: str):
    """A fault for the audit: opening (``at="open"``) or reading (``"read"``) a file called ``name`` raises ``error``."""
    def install(patch: pytest.MonkeyPatch) -> None:
        real_open, real_read, refused = os.open, os.read, set()

        def fake_open(path, flags, *args, **kwargs):
            if Path(os.fsdecode(path)).name != name:
                return real_open(path, flags, *args, **kwargs)
            if at == "open":
                raise error
            fd = real_open(path, flags, *args, **kwargs)
            refused.add(fd)
            return fd

        def fake_read(fd, size):
            if fd in refused:
                refused.discard(fd)  # the reader closes it now, and the number is given to the next file
                raise error
            return real_read(fd, size)

        patch.setattr(os, "open", fake_open)
        patch.setattr(os, "read", fake_read)
    return install


def block_reading(name: str):
    """A fault for the audit: reading a file called ``name`` blocks (as a procfs file can) until the test ends."""
    def install(patch: pytest.MonkeyPatch) -> None:
        real_open, real_read, blocked, release = os.open, os.read, set(), threading.Event()

        def fake_open(path, flags, *args, **kwargs):
            fd = real_open(path, flags, *args, **kwargs)
            if Path(os.fsdecode(path)).name == name:
                blocked.add(fd)
            return fd

        def fake_read(fd, size):
            if fd in blocked:
                release.wait(30)
            return real_read(fd, size)

        patch.setattr(os, "open", fake_open)
        patch.setattr(os, "read", fake_read)
        patch.setattr(photos, "READ_TIMEOUT_S", 0.5)
    return install


def refuse_listing(folder: str):
    """A fault for the audit: listing the folder called ``folder`` raises PermissionError."""
    def install(patch: pytest.MonkeyPatch) -> None:
        real = os.scandir

        def scandir(path="."):
            if os.fspath(path).endswith(os.sep + folder):
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return real(path)

        patch.setattr(os, "scandir", scandir)
    return install


def decoder_crash(patch: pytest.MonkeyPatch) -> None:
    """A fault for the audit: the decoder hits a bug (not a DataError) on a file called odd.png."""
    real = measuring.read_photo

    def read_photo(path, **options):
        if Path(path).name == "odd.png":
            raise IndexError("tuple index out of range")
        return real(path, **options)

    patch.setattr(measuring, "read_photo", read_photo)


# --- 01 audit: one bad file among good ones ---------------------------------------------------

@dataclass(frozen=True)
class AuditCase:
    """A file planted in raw/ (or processed/), the row it must get and that row's flags."""

    id: str
    plant: Callable[[Path], object]  # gets the dataset folder
    path: str  # the manifest path of the planted entry
    flags: str  # exactly, ';'-joined as in splits.csv
    fault: Callable[[pytest.MonkeyPatch], None] | None = None  # active during the audit only
    error: str = "^$"  # regex the 'error' column must match
    layout: str = "raw"
    others_listed: bool = True  # the dataset's other photos are still found (and clean)


AUDIT_CASES = [
    AuditCase("FIFO named x.jpg", lambda ds: os.mkfifo(ds / "raw/a/x.jpg"), "raw/a/x.jpg",
              "special_file", error="named pipe"),
    AuditCase("unix socket named s.jpg", lambda ds: unix_socket(ds / "raw/a/s.jpg"), "raw/a/s.jpg",
              "special_file", error="socket"),
    AuditCase("link to a character device", lambda ds: link(ds / "raw/a/dev.jpg", "/dev/zero"),
              "raw/a/dev.jpg", "special_file", error="character device"),
    AuditCase("FIFO in an existing split", lambda ds: os.mkfifo(ds / "processed/train/a/x.jpg"),
              "processed/train/a/x.jpg", "special_file", error="named pipe", layout="processed"),
    AuditCase("dangling link", lambda ds: link(ds / "raw/a/gone.jpg", "missing.jpg"),
              "raw/a/gone.jpg", "broken_link", error="target does not exist"),
    AuditCase("link to itself", lambda ds: link(ds / "raw/a/self.jpg", "self.jpg"),
              "raw/a/self.jpg", "link_loop", error="leads back to itself"),
    AuditCase("file links a -> b -> a",
              lambda ds: (link(ds / "raw/a/l1.jpg", "l2.jpg"), link(ds / "raw/a/l2.jpg", "l1.jpg")),
              "raw/a/l1.jpg", "link_loop", error="leads back to itself"),
    AuditCase("folder link to its parent", lambda ds: link(ds / "raw/a/up", ".."), "raw/a/up",
              "link_loop", error="leads to raw/ again"),
    AuditCase("folder link to raw/ (absolute)", lambda ds: link(ds / "raw/b/root", ds / "raw"),
              "raw/b/root", "link_loop", error="leads to raw/ again"),
    AuditCase("folder link to a sibling class", lambda ds: link(ds / "raw/b/alias", "../a"),
              "raw/b/alias", "link_loop", error="leads to raw/a/ again"),
    AuditCase("file name not UTF-8", lambda ds: noise_png(os.fsencode(ds) + b"/raw/a/caf\xe9.png", 55),
              r"raw/a/caf\xe9.png", "bad_name", error="not valid UTF-8"),
    AuditCase("class folder name not UTF-8",
              lambda ds: noise_png(os.fsencode(ds) + b"/raw/Z\xfc/0.png", 56),
              r"raw/Z\xfc/0.png", "bad_name", error="not valid UTF-8"),
    AuditCase("read refused (PermissionError)", lambda ds: noise_png(ds / "raw/a/locked.png", 50),
              "raw/a/locked.png", "unreadable", error=r"cannot open the file \(Permission denied\)",
              fault=refuse_reading("locked.png", PermissionError(13, "Permission denied"), at="open")),
    AuditCase("read fails (I/O error)", lambda ds: noise_png(ds / "raw/a/bad sector.png", 51),
              "raw/a/bad sector.png", "unreadable", error=r"cannot read the file \(Input/output error\)",
              fault=refuse_reading("bad sector.png", OSError(5, "Input/output error"), at="read")),
    AuditCase("class folder cannot be listed", lambda ds: noise_png(ds / "raw/c/0.png", 52),
              "raw/c", "unreadable", error="folder not listed", fault=refuse_listing("c")),
    AuditCase("raw/ itself cannot be listed", lambda ds: None, "raw", "unreadable",
              error="folder not listed", fault=refuse_listing("raw"), others_listed=False),
    AuditCase("decoder bug on one file", lambda ds: noise_png(ds / "raw/a/odd.png", 53),
              "raw/a/odd.png", "unreadable", error="IndexError", fault=decoder_crash),
    AuditCase("zero-byte file", lambda ds: (ds / "raw/a/empty.jpg").write_bytes(b""),
              "raw/a/empty.jpg", "zero_byte", error=r"empty.*\(0 bytes\)"),
    AuditCase("link to a procfs file (size 0, yet has content)",
              lambda ds: os.symlink("/proc/self/status", ds / "raw/a/status.jpg"),
              "raw/a/status.jpg", "not_image", error="not an image file"),
    AuditCase("read that blocks", lambda ds: noise_png(ds / "raw/a/stuck.png", 57),
              "raw/a/stuck.png", "unreadable", error=r"did not finish within .* s \(a file that blocks\)",
              fault=block_reading("stuck.png")),
    AuditCase("text file named .jpg", lambda ds: (ds / "raw/a/notes.jpg").write_text("meter 123"),
              "raw/a/notes.jpg", "not_image", error="not an image file"),
    AuditCase("truncated PNG",
              lambda ds: (ds / "raw/a/cut.png").write_bytes((ds / "raw/a/0.png").read_bytes()[:300]),
              "raw/a/cut.png", "truncated", error="truncated"),
    AuditCase("name with comma, quotes and newline",
              lambda ds: noise_png(ds / "raw/a" / 'odd, "quoted"\nname.png', 54),
              'raw/a/odd, "quoted"\nname.png', ""),
]


@pytest.mark.parametrize("case", AUDIT_CASES, ids=lambda case: case.id)
def test_audit_case(case, tmp_path, monkeypatch, robust):
    robust.entry = "01 audit"
    ds = dataset(tmp_path / "ds", {"a": 3, "b": 3} if case.layout == "raw" else
                 {"train/a": 3, "train/b": 3, "test/a": 1}, layout=case.layout)
    photos = sorted(p.relative_to(ds).as_posix() for p in ds.rglob("*.png"))
    case.plant(ds)
    with robust.untouched(ds), deadline(DEADLINE_S):
        with monkeypatch.context() as patch:
            if case.fault:
                case.fault(patch)
            result = audit.audit_dataset(ds, workers=1, progress=False)
        manifest = splits.build_manifest(result, **RULE)
        splits.write_manifest(manifest, tmp_path / "out" / "splits.csv")  # must be valid UTF-8
    back = splits.read_manifest(tmp_path / "out" / "splits.csv").set_index("path")
    row = back.loc[case.path]
    assert row["flags"] == case.flags
    assert re.search(case.error, row["error"]), row["error"]
    if case.others_listed:
        assert set(back.loc[photos, "flags"]) == {""}, "the other photos are audited as usual"
    assert (row["split"] == "excluded") == bool(case.flags)
    robust.ok(f"flagged {case.flags}, excluded" if case.flags else "audited, name kept exactly")


# --- 01 split: the classes a classifier can be trained on ---------------------------------------

@dataclass(frozen=True)
class SplitCase:
    """A raw/ dataset, the split options, and the error (regex) or '' for a trainable split."""

    id: str
    counts: dict[str, int]
    problem: str = ""
    names: str | None = None  # what the message must name
    options: dict = field(default_factory=dict)
    plant: Callable[[Path], object] = lambda ds: None


SPLIT_CASES = [
    SplitCase("two classes", {"a": 3, "b": 1}),
    SplitCase("one class", {"only": 6}, r"only 1 class has training photos \(only\)", names="only"),
    SplitCase("empty raw/", {}, "no class has training photos"),
    SplitCase("second class all unusable", {"a": 5},
              r"only 1 class has training photos \(a\)", names="a",
              plant=lambda ds: put(ds / "raw/b/0.jpg", b"")),
    SplitCase("second class only copies of the first", {"a": 3},
              r"only 1 class has training photos \(a\)", names="a",
              plant=lambda ds: put(ds / "raw/b/0.png", (ds / "raw/a/0.png").read_bytes())),
    SplitCase("all but one class held out", {"a": 3, "b": 3, "c": 3},
              r"only 1 class has training photos \(c\)", names="c",
              options={"holdout_classes": ["a", "b"]}),
    SplitCase("held-out class not in the dataset", {"a": 3, "b": 3}, "not in the dataset: Z",
              names="Z", options={"holdout_classes": ["Z"]}),
]


@pytest.mark.parametrize("case", SPLIT_CASES, ids=lambda case: case.id)
def test_split_case(case, tmp_path, robust):
    robust.entry = "01 split"
    ds = dataset(tmp_path / "ds", case.counts)
    (ds / "raw").mkdir(parents=True, exist_ok=True)
    case.plant(ds)
    with robust.untouched(ds):
        result = audit.audit_dataset(ds, workers=1, progress=False)
        try:
            manifest = splits.build_manifest(result, **RULE, **case.options)
            splits.require_trainable_classes(manifest)
        except MeterlibError as exc:
            assert case.problem, f"unexpected: {exc}"
            robust.error(exc, names=case.names, problem=case.problem)
            return
    assert not case.problem, "no error raised"
    assert splits.check_split(manifest) == []
    robust.ok(f"{manifest['class'][manifest['split'] == 'train'].nunique()} classes to train on")


# --- 01 split rule: parameters as papermill or YAML may hand them over ---------------------------

RULE_CASES = [
    ("min_images_test 0", {"min_images_test": 0}, "min_images_test", r"need 0 < min_images_test \(0\)"),
    ("min_images_test above min_images_val", {"min_images_test": 12}, "min_images_val",
     r"min_images_test \(12\) <= min_images_val \(10\)"),
    ("min_images_test as text", {"min_images_test": "4"}, "min_images_test", "must be a whole number"),
    ("min_images_val as float", {"min_images_val": 10.5}, "min_images_val", "must be a whole number"),
    ("min_images_val True", {"min_images_val": True}, "min_images_val", "must be a whole number"),
    ("negative seed", {"seed": -1}, "seed", "must be a whole number >= 0"),
    ("test_fraction 1.5", {"test_fraction": 1.5}, "test_fraction", "must lie in"),
    ("test_fraction 0", {"test_fraction": 0.0}, "test_fraction", "must lie in"),
    ("test_fraction NaN", {"test_fraction": float("nan")}, "test_fraction", "between 0 and 1"),
    ("val_fraction as text", {"val_fraction": "0.2"}, "val_fraction", "between 0 and 1"),
    ("fractions leave nothing to train", {"test_fraction": 0.5, "val_fraction": 0.5}, "val_fraction",
     "leave a share for training"),
]


@pytest.mark.parametrize("changes, names, problem", [case[1:] for case in RULE_CASES],
                         ids=[case[0] for case in RULE_CASES])
def test_split_rule_case(changes, names, problem, tmp_path, robust):
    robust.entry = "01 split rule"
    ds = dataset(tmp_path / "ds", {"a": 2, "b": 2})
    result = audit.audit_dataset(ds, workers=1, progress=False)
    with robust.untouched(ds), pytest.raises(SettingsError) as caught:
        splits.build_manifest(result, **{**RULE, "seed": 0, **changes})
    robust.error(caught.value, names=names, problem=problem)


# --- 01 tree: processed/ holds the user's files too ------------------------------------------------

@dataclass(frozen=True)
class TreeCase:
    """A change to processed/ (or raw/) between two runs, and what the second run must report."""

    id: str
    plant: Callable[[Path], object]
    foreign: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    seed: int = 0  # of the second run: 0 keeps every link of the first run, 5 moves some
    unchanged: tuple[str, ...] = ()  # folders that must stay byte-identical; () means the whole dataset
    problem: str = ""  # regex of the expected error
    built: bool = True  # False: processed/ is planted before meterlib ever made it


def old_marker(ds: Path) -> None:
    """The marker as meterlib wrote it before it listed its entries."""
    marker = ds / "processed" / processed_tree.TREE_MARKER
    record = json.loads(marker.read_text())
    del record["entries"]
    marker.write_text(json.dumps(record))


def replace_link(entry: str, *, target: str | None = None):
    """Put a regular file (or a link to ``target``) where meterlib made the link ``entry``."""
    def plant(ds: Path) -> None:
        path = ds / "processed" / entry
        path.unlink()
        if target is None:
            noise_png(path, 70)
        else:
            os.symlink(target, path)
    return plant


def extras(ds: Path) -> None:
    """An extra photo in a class folder meterlib made, and a new class folder of the user's."""
    noise_png(ds / "processed/train/a/mine.jpg", 71)
    noise_png(ds / "processed/train/newtype/1.jpg", 72)
    noise_png(ds / "processed/train/newtype/2.jpg", 73)


USER_FILES = ("train/a/mine.jpg", "train/newtype/1.jpg", "train/newtype/2.jpg")
TREE_CASES = [
    TreeCase("extra photo and new class folder, same split", extras, foreign=USER_FILES),
    TreeCase("extra photo and new class folder, new split", extras, foreign=USER_FILES, seed=5,
             unchanged=("raw", "processed/train/newtype")),
    TreeCase("regular file where a link should go", replace_link("train/c/0.png"),
             foreign=("train/c/0.png",), conflicts=("train/c/0.png",),
             unchanged=("raw", "processed/train/c")),
    TreeCase("user's own link where a link should go",
             replace_link("train/c/1.png", target="/dev/null"),
             foreign=("train/c/1.png",), conflicts=("train/c/1.png",),
             unchanged=("raw", "processed/train/c")),
    TreeCase("user's folder link inside processed/",
             lambda ds: os.symlink("../../raw/a", ds / "processed/train/mylink"),
             foreign=("train/mylink",)),
    TreeCase("hidden .DS_Store in processed/", lambda ds: noise_png(ds / "processed/train/.DS_Store", 74)),
    TreeCase("file name not UTF-8 in processed/",
             lambda ds: noise_png(os.fsencode(ds) + b"/processed/train/c/caf\xe9.png", 75),
             foreign=(r"train/c/caf\xe9.png",)),
    TreeCase("photo removed from raw/", lambda ds: (ds / "raw/c/1.png").unlink(), unchanged=("raw",)),
    TreeCase("older marker, user links, same split",
             lambda ds: (old_marker(ds), os.symlink(ds / "raw/a/0.png", ds / "processed/train/abs.png"),
                         os.symlink("../../raw/a/./1.png", ds / "processed/train/dotted.png")),
             foreign=("train/abs.png", "train/dotted.png"), unchanged=("raw", "processed/test")),
    TreeCase("older marker, user links, new split",
             lambda ds: (old_marker(ds), os.symlink(ds / "raw/a/0.png", ds / "processed/train/abs.png")),
             foreign=("train/abs.png",), seed=5, unchanged=("raw",)),
    TreeCase("marker is not JSON", lambda ds: (extras(ds), (ds / "processed" / processed_tree.TREE_MARKER)
                                               .write_text("{half a marker")),
             foreign=USER_FILES, unchanged=("raw", "processed/train/newtype")),
    TreeCase("processed/ made by someone else", extras, problem="not made by meterlib", built=False),
    TreeCase("processed is a file", lambda ds: (ds / "processed").write_text("notes"),
             problem="not made by meterlib", built=False),
]


def check_links(manifest: pd.DataFrame, ds: Path, *, skip: tuple[str, ...]) -> None:
    """Every photo in a split has its link in processed/, leading to the photo's bytes."""
    used = manifest[manifest["split"].isin(["train", "val", "test"])]
    for path, split, cls in zip(used["path"], used["split"], used["class"]):
        entry = f"{split}/{cls}/{Path(path).name}"
        if entry not in skip:
            link = ds / "processed" / entry
            assert link.is_symlink() and link.read_bytes() == (ds / path).read_bytes(), entry


def user_entries(ds: Path, entries: tuple[str, ...]) -> dict[str, str | bytes]:
    """The link text or the bytes of each entry of processed/ (names that are UTF-8)."""
    paths = {entry: ds / "processed" / entry for entry in entries if "\\x" not in entry}
    return {entry: os.readlink(path) if path.is_symlink() else path.read_bytes()
            for entry, path in paths.items()}


@pytest.mark.parametrize("case", TREE_CASES, ids=lambda case: case.id)
def test_tree_case(case, tmp_path, robust):
    robust.entry = "01 tree"
    ds = dataset(tmp_path / "ds", {"a": 12, "b": 12, "c": 2})
    if case.built:
        first = audit.audit_dataset(ds, workers=1, progress=False)
        processed_tree.materialise(splits.build_manifest(first, seed=0, **RULE), ds)
    case.plant(ds)
    before = user_entries(ds, case.foreign)
    manifest = splits.build_manifest(audit.audit_dataset(ds, workers=1, progress=False),
                                     seed=case.seed, **RULE)
    with robust.untouched(*([ds / folder for folder in case.unchanged] or [ds])):
        try:
            update = processed_tree.materialise(manifest, ds)
        except OutputError as exc:
            robust.error(exc, names=ds / "processed", problem=case.problem)
            return
    assert not case.problem, "no error raised"
    assert (update.foreign, update.conflicts) == (list(case.foreign), list(case.conflicts))
    assert user_entries(ds, case.foreign) == before
    assert case.seed == 0 or update.removed > 0, "meterlib's own links follow the new split"
    check_links(manifest, ds, skip=case.conflicts)
    robust.ok(f"{update.created} created, {update.removed} removed, {len(update.foreign)} "
              f"foreign left alone, {len(update.conflicts)} conflicts reported")


# --- splits.csv as notebooks 02 and 03 read it ----------------------------------------------------

@pytest.fixture(scope="module")
def good_csv(tmp_path_factory) -> str:
    """The text of a real splits.csv."""
    ds = dataset(tmp_path_factory.mktemp("manifest") / "ds", {"a": 3, "b": 2})
    (ds / "raw/a/empty.jpg").write_bytes(b"")
    manifest = splits.build_manifest(audit.audit_dataset(ds, workers=1, progress=False), **RULE)
    return splits.manifest_csv(manifest)


def drop_column(text: str, name: str) -> str:
    frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    return splits.manifest_csv(frame.drop(columns=name))


MANIFEST_CASES = [
    ("no file", None, "no manifest here"),
    ("a folder named splits.csv", "folder", "no manifest here"),
    ("empty file", lambda text: b"", "not a readable CSV manifest"),
    ("a PNG renamed splits.csv", lambda text: b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
     "not a readable CSV manifest"),
    ("another CSV", lambda text: b"name,value\nx,1\n", "missing columns: path, class, split"),
    ("width column deleted", lambda text: drop_column(text, "width").encode(), "missing columns: width;"),
    ("saved with ';' separators", lambda text: text.replace(",", ";").encode(), "missing columns: path"),
    ("a row with extra fields", lambda text: (text + "x,y" + "," * 30 + "\n").encode(),
     "not a readable CSV manifest"),
    ("width 'wide'", lambda text: text.replace(",64,", ",wide,", 1).encode(),
     r"line \d+, column 'width': 'wide' is not a whole number"),
    ("width 12.5", lambda text: text.replace(",64,", ",12.5,", 1).encode(),
     r"line \d+, column 'width': '12.5' is not a whole number"),
    ("brightness 'n/a'", lambda text: text.replace(",0.", ",n/a.", 1).encode(),
     r"column 'brightness': 'n/a\.\d+' is not a number"),
    ("byte-order mark and CRLF (a spreadsheet saved it)",
     lambda text: b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode(), ""),
]


@pytest.mark.parametrize("make, problem", [case[1:] for case in MANIFEST_CASES],
                         ids=[case[0] for case in MANIFEST_CASES])
def test_manifest_case(make, problem, good_csv, tmp_path, robust):
    robust.entry = "02/03 read splits.csv"
    path = tmp_path / "ds" / "splits.csv"
    path.parent.mkdir()
    if make == "folder":
        path.mkdir()
    elif make is not None:
        path.write_bytes(make(good_csv))
    with robust.untouched(tmp_path / "ds"):
        try:
            frame = splits.read_manifest(path)
        except DataError as exc:
            assert problem, f"unexpected: {exc}"
            robust.error(exc, names=path, problem=problem)
            return
    assert not problem, "no error raised"
    assert splits.manifest_csv(frame) == good_csv
    robust.ok(f"read, {len(frame)} rows as written")


# --- 01 leakage: an existing processed/ split used as it is ----------------------------------------

def copy_photo(source: str, target: str, *, brighten: int = 0):
    """Plant a copy of ``source`` (or a near-copy, ``brighten`` levels lighter) at ``target``."""
    def plant(ds: Path) -> None:
        (ds / target).parent.mkdir(parents=True, exist_ok=True)
        if brighten:
            Image.open(ds / source).point(lambda v: min(255, v + brighten)).save(ds / target)
        else:
            (ds / target).write_bytes((ds / source).read_bytes())
    return plant


HINT = re.escape(splits.RESPLIT_HINT) + "$"
LEAK_CASES = [
    ("copy of a test photo in train", copy_photo("processed/test/a/0.png", "processed/train/a/zz.png"),
     {}, (r"^Leakage: 2 photos with a \(near-\)copy in another split \(1 duplicate group\), "
          r"e\.g\. processed/test/a/0\.png: .*too high\. " + HINT,
          r"^Copies: 1 photo identical to another photo and used anyway, "
          r"e\.g\. processed/train/a/zz\.png: " + ".*" + HINT)),
    ("near-copy across test and val",
     copy_photo("processed/test/a/0.png", "processed/val/a/near.png", brighten=6), {},
     (r"^Leakage: 2 photos .* e\.g\. processed/test/a/0\.png: .*" + HINT,)),
    ("copy inside train only", copy_photo("processed/train/a/0.png", "processed/train/a/zz.png"), {},
     (r"^Copies: 1 photo .* e\.g\. processed/train/a/zz\.png: .*" + HINT,)),
    ("same photo under two classes", copy_photo("processed/train/a/0.png", "processed/train/b/zz.png"),
     {}, (r"^Copies: 1 photo .*processed/train/b/zz\.png", r"^Label conflicts: 2 photos .*"
          r"e\.g\. processed/train/a/0\.png: .*no ground truth\. " + HINT)),
    ("copy in a held-out class", copy_photo("processed/test/a/0.png", "processed/train/b/zz.png"),
     {"holdout_classes": ["b"]}, (r"^Leakage: 2 photos", r"^Copies: 1 photo", r"^Label conflicts: 2")),
    ("clean existing split", lambda ds: None, {}, ()),
    ("copy across splits, resplit=True", copy_photo("processed/test/a/0.png", "processed/train/a/zz.png"),
     {"resplit": True}, ()),
]


@pytest.mark.parametrize("plant, options, expected", [case[1:] for case in LEAK_CASES],
                         ids=[case[0] for case in LEAK_CASES])
def test_leakage_case(plant, options, expected, tmp_path, robust):
    robust.entry = "01 leakage"
    ds = dataset(tmp_path / "ds", {"train/a": 4, "train/b": 4, "val/a": 1, "test/a": 1, "test/b": 1},
                 layout="processed")
    plant(ds)
    with robust.untouched(ds):
        result = audit.audit_dataset(ds, workers=1, progress=False)
        warnings = splits.leakage_warnings(splits.build_manifest(result, **RULE, **options))
    assert len(warnings) == len(expected), warnings
    for warning, pattern in zip(warnings, expected):
        assert re.search(pattern, warning), (pattern, warning)
    robust.ok(f"{len(warnings)} warnings: " + ", ".join(w.split(":")[0] for w in warnings)
              if warnings else "no warning")


# --- 01 figures and tables: any number of classes ---------------------------------------------------

@pytest.fixture(scope="module")
def many_classes(tmp_path_factory) -> tuple[Path, audit.Audit, pd.DataFrame]:
    """1,000 classes of 2 tiny photos each, audited and split."""
    ds = tmp_path_factory.mktemp("many") / "ds"
    for i in range(2000):
        noise_png(ds / "raw" / f"meter type {i // 2:04d}" / f"{i % 2}.png", i, size=(16, 24))
    result = audit.audit_dataset(ds, workers=1, progress=False)
    return ds, result, splits.build_manifest(result, **RULE)


def pixels(fig, dpi: int) -> tuple[int, int]:
    """The size of the saved PNG (as notebook 01 saves it: tight bounding box)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, bbox_inches="tight", format="png")
    plt.close(fig)
    return Image.open(buffer).size


SHOWN = "the 40 largest of 1000 classes shown"
FIGURE_CASES = [  # (name, draw, dpi as in notebook 01, a text the figure must hold)
    ("contact sheet", lambda ds, result, manifest: figures.plot_contact_sheet(result.files, ds),
     70, SHOWN),
    ("class samples", lambda ds, result, manifest: figures.plot_class_samples(result.files, ds),
     70, SHOWN),
    ("class counts", lambda ds, result, manifest: figures.plot_class_counts(
        manifest, classes=result.classes), 90, SHOWN),
    ("flagged files", lambda ds, result, manifest: figures.plot_flagged(result.files, ds),
     80, "tiny"),
    ("size and quality", lambda ds, result, manifest: figures.plot_size_and_quality(
        result.files, result.settings), 90, "sharpness"),
]


@pytest.mark.parametrize("draw, dpi, text", [case[1:] for case in FIGURE_CASES],
                         ids=[f"1000 classes: {case[0]}" for case in FIGURE_CASES])
def test_figure_case(draw, dpi, text, many_classes, robust):
    robust.entry = "01 figures"
    ds = many_classes[0]
    with robust.untouched(ds):
        start = time.perf_counter()
        fig = draw(*many_classes)
        texts = " ".join(t.get_text() for t in fig.findobj(matplotlib.text.Text))
        width, height = pixels(fig, dpi)
        seconds = time.perf_counter() - start
    assert width <= 2500 and height <= 4000, (width, height)
    assert seconds < 20
    assert text in texts
    robust.ok(f"{width} x {height} px in {seconds:.1f} s")


def test_split_table_case(many_classes, robust):
    robust.entry = "01 split table"
    ds, result, manifest = many_classes
    table = splits.split_table(manifest, classes=result.classes, min_images_test=4, min_images_val=10)
    text = splits.table_preview(table, max_rows=40, what="classes")
    lines = text.splitlines()
    assert len(lines) == 2 + 40 + 1 and lines[-1] == "... 960 more classes not shown (1000 in all)"
    robust.ok(f"{len(lines)} lines for 1000 classes")
