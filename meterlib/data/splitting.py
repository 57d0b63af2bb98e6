"""The split of an audited dataset (the rows of splits.csv) and the checks on a split.

Which photo goes where is decided by the rule in ``split_rule``; the file itself is ``splits_file``,
the processed/ tree ``processed_tree``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

from meterlib.data.flags import has_flag, is_unusable
from meterlib.data.split_rule import (
    EXCLUDED,
    HOLDOUT,
    SPLITS,
    SplitError,
    assign_splits,
    class_tier,
    is_excluded,
)
from meterlib.data.splits_file import MANIFEST_COLUMNS

if TYPE_CHECKING:  # only a type here: importing the audit would pull in its image hashing
    from meterlib.data.audit import Audit

RESPLIT_HINT = "Set resplit=True in notebook 01 (-p resplit=true) to split the photos afresh."
# Problems of an existing split that distort the measured accuracy, in words.
_LEAK_SENTENCES = {
    "leakage": "Leakage: {photos} with a (near-)copy in another split ({groups}), e.g. {example}: "
               "the model is tested on pictures it has trained on, so the test accuracy is too high.",
    "duplicate": "Copies: {photos} identical to another photo and used anyway, e.g. {example}: "
                 "they add weight but no information.",
    "label_conflict": "Label conflicts: {photos} with a (near-)copy filed under another class and "
                      "used anyway, e.g. {example}: a photo with two labels is no ground truth.",
}


def build_manifest(audit: Audit, *, resplit: bool = False, holdout_classes: Sequence[str] = (),
                   **rule) -> pd.DataFrame:
    """The splits.csv table: a fresh split of raw/, or an existing processed/ split as found.

    Usable photos of ``holdout_classes`` go to the 'holdout' split instead of train/val/test.
    """
    files = audit.files
    unknown = sorted(set(holdout_classes) - set(files["class"]))
    if unknown:
        raise SplitError(f"holdout class(es) not in the dataset: {', '.join(unknown)}")
    if audit.layout == "processed" and not resplit:
        split = files["found_split"].where(~is_unusable(files), EXCLUDED)
    else:
        split = assign_splits(files, **rule)
    split = split.mask(files["class"].isin(holdout_classes) & (split != EXCLUDED), HOLDOUT)
    manifest = files.assign(split=split).reindex(columns=MANIFEST_COLUMNS)
    text = ["sha256", "phash", "flags", "group", "mode", "format", "error"]
    manifest[text] = manifest[text].astype(object).fillna("")  # all-empty columns are float
    # Rounded scores keep the CSV text identical from run to run and machine to machine.
    return manifest.round({"brightness": 4, "contrast": 4, "sharpness": 2})


def require_trainable_classes(manifest: pd.DataFrame) -> None:
    """Raise SplitError unless at least 2 classes have photos in the train split."""
    trained = sorted(manifest.loc[manifest["split"] == "train", "class"].unique())
    if len(trained) >= 2:
        return
    found = (f"only 1 class has training photos ({trained[0]})" if trained
             else "no class has training photos")
    raise SplitError(f"{found}: a classifier needs at least 2 classes to tell apart. Put the "
                     "photos of each meter type in its own folder raw/<class>/ (splits.csv names "
                     "every excluded file and why), or hold out fewer classes.")


def leakage_warnings(manifest: pd.DataFrame) -> list[str]:
    """Sentences on (near-)copies across splits and on copies or label conflicts in use ([] if none)."""
    used = manifest[manifest["split"] != EXCLUDED]
    found = {"leakage": _leaking(used), **{flag: used[has_flag(used, flag)]
                                           for flag in ("duplicate", "label_conflict")}}
    return [_LEAK_SENTENCES[kind].format(photos=counted(len(rows), "photo"),
                                         groups=counted(rows["group"].nunique(), "duplicate group"),
                                         example=rows["path"].iat[0]) + " " + RESPLIT_HINT
            for kind, rows in found.items() if len(rows)]


def _leaking(used: pd.DataFrame) -> pd.DataFrame:
    """The rows whose duplicate group spans several splits."""
    spans = used.groupby("group")["split"].nunique()
    return used[used["group"].isin(spans.index[spans > 1])]


def counted(n: int, noun: str) -> str:
    """``n`` and the noun, plural unless ``n`` is 1 ('1 photo', '3 photos')."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def table_preview(table: pd.DataFrame, *, max_rows: int = 40, what: str = "rows") -> str:
    """The table as text; a long one as its first ``max_rows`` rows and a line on the rest."""
    if len(table) <= max_rows:
        return table.to_string()
    return (table.head(max_rows).to_string()
            + f"\n... {len(table) - max_rows} more {what} not shown ({len(table)} in all)")


def split_table(manifest: pd.DataFrame, *, classes: list[str] | None = None,
                min_images_test: int | None = None,
                min_images_val: int | None = None) -> pd.DataFrame:
    """Photos per class and split, with each class's tier under the rule (if given)."""
    table = pd.crosstab(manifest["class"], manifest["split"])
    table = table.reindex(columns=[*SPLITS, HOLDOUT, EXCLUDED], fill_value=0)
    if classes is not None:
        table = table.reindex(sorted(set(classes) | set(table.index) - {""}), fill_value=0)
    table.index.name, table.columns.name = "class", None
    if min_images_test is not None and min_images_val is not None:
        usable = table[list(SPLITS)].sum(axis=1)
        table["tier"] = [HOLDOUT if held else
                         class_tier(n, min_images_test=min_images_test, min_images_val=min_images_val)
                         if n else "(empty)" for n, held in zip(usable, table[HOLDOUT] > 0)]
    return table


def check_split(manifest: pd.DataFrame) -> list[str]:
    """Broken split invariants, in words (an empty list when the split is sound)."""
    problems = []
    used = manifest[manifest["split"] != EXCLUDED]
    if used["path"].duplicated().any():
        problems.append(f"{used['path'].duplicated().sum()} files appear in more than one split")
    if not used["split"].isin([*SPLITS, HOLDOUT]).all():
        problems.append("unknown split names: "
                        + ", ".join(sorted(set(used["split"]) - {*SPLITS, HOLDOUT})))
    mixed = set(used.loc[used["split"] == HOLDOUT, "class"]) & set(used.loc[used["split"] != HOLDOUT, "class"])
    if mixed:
        problems.append("held-out classes also in train/val/test: " + ", ".join(sorted(mixed)))
    leaking = sorted(_leaking(used)["group"].unique())
    if leaking:
        problems.append(f"{len(leaking)} duplicate groups span several splits: "
                        + ", ".join(leaking[:5]))
    in_train = set(used.loc[used["split"] == "train", "class"])
    held_out = set(used.loc[used["split"].isin(["val", "test"]), "class"])
    if held_out - in_train:
        problems.append("classes in val/test but not in train: " + ", ".join(sorted(held_out - in_train)))
    bad = manifest[(manifest["split"] != EXCLUDED) & is_excluded(manifest)]
    if len(bad):
        problems.append(f"{len(bad)} files that should be excluded are in a split, e.g. {bad['path'].iat[0]}")
    return problems
