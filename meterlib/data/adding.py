"""New types into a dataset: the clusters a person named in new_types.csv filed under raw/<name>/, audited and split.

Each photo becomes a link to the user's file (or a copy): the user's files are never moved or
changed. Everything is checked before the first entry is written, and a photo whose content is
already in its class is not filed again, so running the same new_types.csv twice adds nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from meterlib.data.audit import Audit, audit_dataset, flag_files
from meterlib.data.listing import detect_layout, list_files, shown_name
from meterlib.data.photos import read_file_bytes
from meterlib.data.splits import HOLDOUT, build_manifest, counted, split_table, table_preview
from meterlib.errors import DataError
from meterlib.run import atomic

NOISE = -1  # the cluster number of photos that fit no cluster (members.csv)
MEMBERS_NAME = "members.csv"  # written by `meterlib discover` beside new_types.csv
# Bytes a file name may have on the usual file systems (ext4, APFS, NTFS).
_MAX_NAME_BYTES = 255


@dataclass(frozen=True)
class Filing:
    """One photo of a named cluster and its entry in the dataset (``path`` relative to the dataset folder)."""

    type_name: str
    source: Path
    path: str
    added: bool  # False: its content was already in the class (a rerun, or a copy filed earlier)


@dataclass
class Addition:
    """What add_types did: the photos filed, the audit's flags on them, and the split the rule gives them."""

    dataset_dir: Path
    copy: bool
    new_types: list[str]  # named types that had no class folder before
    photos: pd.DataFrame  # one row per Filing, with the audit's 'flags', 'same_as' (an earlier copy) and 'split'
    whole_classes: pd.DataFrame  # split_table of every photo of the named types' classes
    moved: pd.DataFrame  # path, class, split_before, split_after: earlier photos the additions give another split
    rule: dict  # the split rule's settings given (empty: its defaults, which are notebook 01's)
    manifest: pd.DataFrame  # the whole dataset's splits.csv rows under that rule, the filed photos included

    def describe(self) -> str:
        """The report, in lines: what was filed, the flags, where the rule puts the photos, what moved."""
        photos = self.photos
        how = "copies of your photos" if self.copy else "links to your photos; nothing was moved or changed"
        lines = [f"Filed under {self.dataset_dir / 'raw'} ({how}):"]
        for name, rows in photos.groupby("type_name", sort=True):
            kind = "new type" if name in self.new_types else "existing type"
            lines.append(f"  {shown_name(name)} ({kind}): {counted(int(rows['added'].sum()), 'photo')} added, "
                         f"{int((~rows['added']).sum())} already there")
        flagged = photos.loc[photos["flags"] != "", ["path", "flags", "same_as"]].drop_duplicates("path")
        if len(flagged):
            lines += [f"Audit: {counted(len(flagged), 'filed photo')} flagged (same_as: a photo already "
                      "in the dataset that it copies):", table_preview(flagged.set_index("path"), what="photos")]
        else:
            lines.append("Audit: no flags on the filed photos.")
        settings = ", ".join(f"{key}={value}" for key, value in self.rule.items()) or "notebook 01's defaults"
        filed = photos.drop_duplicates("path").rename(columns={"type_name": "class"})
        lines += [f"Where the split rule ({settings}) puts the filed photos:",
                  split_table(filed).drop(columns=HOLDOUT).to_string()]
        lines += [f"  {shown_name(name)}: no test photos (too few usable photos for a test share), so its "
                  "accuracy will not be measured; add photos to measure it"
                  for name in self.whole_classes.index[self.whole_classes["test"] == 0]]
        within = self.moved["class"].isin(set(photos["type_name"]))
        if within.any():
            lines.append(f"{counted(int(within.sum()), 'earlier photo')} of the types that gained photos change "
                         "split (their class is split afresh with the new photos).")
        if (~within).any():
            lines += [f"{counted(int((~within).sum()), 'photo')} of other classes change split (a filed photo "
                      "copies one of theirs, and their class is split afresh):",
                      table_preview(self.moved[~within].set_index("path"), what="photos")]
        else:
            lines.append("Every other class keeps its split (the rule seeds each class by its name).")
        return "\n".join(lines)


def type_name_problem(name: str) -> str:
    """Why ``name`` cannot be a class folder under raw/, in words ('' when it can)."""
    if not name.strip():
        return "is empty"
    if name != name.strip():
        return "begins or ends with spaces"
    if "/" in name or "\\" in name:
        return "contains a path separator (/ or \\)"
    if name.startswith("."):  # '.', '..', and hidden folders, which the audit does not read
        return "starts with '.' (not a folder of its own, or a hidden folder that 01 does not read)"
    if shown_name(name) != name:
        return "contains control characters"
    if len(name.encode()) > _MAX_NAME_BYTES:
        return f"is longer than a folder name may be ({_MAX_NAME_BYTES} bytes)"
    return ""


def add_types(new_types_csv: str | os.PathLike, *, dataset_dir: str | os.PathLike, copy: bool = False,
              rule: Mapping | None = None, thresholds: Mapping | None = None,
              progress: bool = True) -> Addition:
    """File every named cluster of new_types.csv under ``dataset_dir``/raw/<name>/, then audit and split.

    ``rule`` (seed, min_images_test, ...) and ``thresholds`` (near_distance, min_side, ...) are
    notebook 01's ``rule`` and ``thresholds``; left out, the split and audit use their defaults.
    """
    dataset_dir = Path(dataset_dir)
    _check_dataset(dataset_dir)
    new_types_csv = Path(new_types_csv)
    members_csv = new_types_csv.parent / MEMBERS_NAME
    members = _read_table(members_csv, ("cluster", "file"))
    clusters = [_cluster_number(text, members_csv, f"line {line}") for line, text in
                enumerate(members["cluster"], start=2)]
    members = members.assign(cluster=clusters, line=range(2, len(members) + 2))
    names = _named_clusters(_read_table(new_types_csv, ("cluster", "name")), new_types_csv,
                            set(clusters) - {NOISE})
    listed, classes = list_files(dataset_dir, layout="raw")
    filings = _plan(_sources(members, members_csv, names), dataset_dir, listed)
    for filing in filings:
        if filing.added:
            _file(filing, dataset_dir, copy=copy)
    audit = audit_dataset(dataset_dir, progress=progress, **(thresholds or {}))
    return _report(filings, audit, dataset_dir=dataset_dir, copy=copy, rule=rule or {},
                   new_types=sorted(set(names.values()) - set(classes)))


def linked_dataset(source_dir: str | os.PathLike, target_dir: str | os.PathLike, *,
                   leave_out: Sequence[str] = ()) -> Path:
    """A dataset at ``target_dir`` whose raw/<class>/ hold links to the files of ``source_dir``'s raw/ classes
    but ``leave_out``: one to add types to and retrain on while the source stays as it is.

    Files are linked one by one, so that photos filed into an existing type land in the copy. A
    dataset already at ``target_dir`` is replaced only once the new one is complete.
    """
    source_dir, target_dir = Path(source_dir).resolve(), Path(target_dir)
    if detect_layout(source_dir) != "raw":
        raise DataError("has no raw/ folder of class folders to link to (a processed/ tree keeps its own split)",
                        path=source_dir)
    building = target_dir.with_name(f".{target_dir.name}.partial")
    shutil.rmtree(building, ignore_errors=True)
    for folder in sorted((source_dir / "raw").iterdir()):
        if folder.is_dir() and folder.name not in leave_out and not folder.name.startswith("."):
            (building / "raw" / folder.name).mkdir(parents=True)
            for file in sorted(folder.iterdir()):
                if not file.name.startswith("."):
                    (building / "raw" / folder.name / file.name).symlink_to(file)
    shutil.rmtree(target_dir, ignore_errors=True)
    building.rename(target_dir)
    return target_dir


def _check_dataset(dataset_dir: Path) -> None:
    if not dataset_dir.is_dir():
        raise DataError("dataset not found (a dataset is a folder holding raw/<class>/ folders of photos; "
                        "`meterlib run` generates the demo one)", path=dataset_dir)
    if detect_layout(dataset_dir) == "processed":
        # A new raw/ would make 01 read only raw/ and drop every photo of the existing split.
        raise DataError("this dataset is an existing processed/<split>/<class>/ split without raw/, so new "
                        "types have no raw/ to join; sort its photos into raw/<class>/ first (01 then splits "
                        "them), or add the new photos to processed/train/<name>/ yourself", path=dataset_dir)


def _read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """A CSV file as text (utf-8-sig: a spreadsheet program may add a byte-order mark), with ``columns``."""
    if not path.is_file():
        raise DataError("not found (`meterlib discover` writes new_types.csv and members.csv together)", path=path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"not a readable CSV file ({reason})", path=path) from None
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)}: not the file `meterlib discover` wrote",
                        path=path)
    return frame


def _cluster_number(text: str, path: Path, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DataError(f"{where}: cluster {text!r} is not a whole number", path=path) from None


def _named_clusters(new_types: pd.DataFrame, path: Path, known: set[int]) -> dict[int, str]:
    """Cluster number -> the name a person gave it; rows left unnamed are skipped."""
    names: dict[int, str] = {}
    for line, row in enumerate(new_types.to_dict("records"), start=2):
        name = row["name"].strip()
        if not name:
            continue  # not named: a type the person does not add (yet)
        where = f"line {line} (cluster {row['cluster']})"
        cluster = _cluster_number(row["cluster"], path, where)
        problem = type_name_problem(name)
        if problem:
            raise DataError(f"{where}: the name {name!r} {problem}", path=path)
        if cluster not in known:
            raise DataError(f"{where}: no such cluster in the {MEMBERS_NAME} beside it (noise is not a "
                            "cluster; are both files from the same `meterlib discover` run?)", path=path)
        if names.setdefault(cluster, name) != name:
            raise DataError(f"{where}: the cluster is named twice ({names[cluster]!r} and {name!r}); "
                            "a photo has one type", path=path)
    if not names:
        raise DataError("no cluster is named: fill in the name column of the clusters to add", path=path)
    return names


def _sources(members: pd.DataFrame, members_csv: Path, names: dict[int, str]) -> list[tuple[str, Path, str]]:
    """(type name, photo file, content hash) of every photo of a named cluster, each file read once to check it."""
    found, problems = [], []
    for row in members[members["cluster"].isin(names)].to_dict("records"):
        source = Path(os.path.abspath(members_csv.parent / row["file"]))  # relative: to the CSV's folder
        try:
            digest = _digest(source)
        except DataError as exc:
            problems.append(f"line {row['line']} (cluster {row['cluster']}): {source}: {exc.problem}")
            continue
        found.append((names[row["cluster"]], source, digest))
    if problems:
        more = f" (and {counted(len(problems) - 1, 'more photo')} that cannot be read)" if len(problems) > 1 else ""
        raise DataError(problems[0] + more + "; nothing was filed", path=members_csv)
    return found


def _plan(sources: list[tuple[str, Path, str]], dataset_dir: Path, listed: pd.DataFrame) -> list[Filing]:
    """Each photo's entry: the class's copy of its content if there is one, else a free file name."""
    readable = listed[(listed["error"] == "") & listed["class"].isin({name for name, _, _ in sources})]
    content = {}  # (class, content hash) -> entry holding it
    for row in readable.to_dict("records"):
        try:
            content[row["class"], _digest(dataset_dir / row["path"])] = row["path"]
        except DataError:
            continue  # a broken entry of the user's: the audit names it
    taken: dict[str, set[str]] = {}  # class -> names in its folder, planned ones included
    filings = []
    for name, source, digest in sources:
        entry = content.get((name, digest))
        if entry is not None:
            filings.append(Filing(name, source, entry, added=False))
            continue
        folder = dataset_dir / "raw" / name
        if os.path.lexists(folder) and not folder.is_dir():
            raise DataError(f"is a file, not a class folder, so type {name!r} cannot go here", path=folder)
        names = taken.setdefault(name, set(os.listdir(folder)) if folder.is_dir() else set())
        entry = content[name, digest] = f"raw/{name}/{_free_name(source.name, names)}"
        filings.append(Filing(name, source, entry, added=True))
    return filings


def _digest(path: Path) -> str:
    """The SHA-256 of a file's content, as the audit hashes it."""
    return hashlib.sha256(read_file_bytes(path)).hexdigest()


def _free_name(name: str, taken: set[str]) -> str:
    """``name`` (or name_2, name_3, ...) not yet in ``taken``, which gains it."""
    name = name.lstrip(".") or "photo"  # a hidden file would be skipped by the audit
    stem, suffix = os.path.splitext(name)
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{stem}_{n}{suffix}"
    taken.add(candidate)
    return candidate


def _file(filing: Filing, dataset_dir: Path, *, copy: bool) -> None:
    target = dataset_dir / filing.path
    target.parent.mkdir(parents=True, exist_ok=True)
    if copy:
        with atomic.atomic_path(target) as tmp:
            shutil.copy2(filing.source, tmp)
    else:
        # One system call that fails rather than replace a name: the link is whole or absent.
        target.symlink_to(filing.source)


def _report(filings: list[Filing], audit: Audit, *, dataset_dir: Path, copy: bool, rule: Mapping,
            new_types: list[str]) -> Addition:
    files = audit.files
    ours = files["path"].isin({f.path for f in filings})
    # The dataset as it was: the same audit without the filed photos, flagged and grouped afresh.
    before = Audit(files=flag_files(files[~ours].drop(columns=["flags", "group"]), layout=audit.layout,
                                    **audit.settings),
                   classes=audit.classes, layout=audit.layout, settings=audit.settings)
    after = build_manifest(audit, **rule)
    earlier = build_manifest(before, **rule)[["path", "class", "split"]]
    moved = earlier.merge(after[["path", "split"]], on="path", suffixes=("_before", "_after"))
    moved = moved[moved["split_before"] != moved["split_after"]].reset_index(drop=True)
    others = after[~ours & (after["group"] != "")]
    photos = pd.DataFrame([vars(f) for f in filings]).merge(after[["path", "flags", "group", "split"]],
                                                           on="path", how="left")
    photos["same_as"] = photos["group"].map(others.groupby("group")["path"].first()).fillna("")
    whole = split_table(after[after["class"].isin(set(photos["type_name"]))])
    return Addition(dataset_dir=dataset_dir, copy=copy, new_types=new_types, photos=photos.drop(columns="group"),
                    whole_classes=whole, moved=moved, rule=dict(rule), manifest=after)
