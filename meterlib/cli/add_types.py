"""``python -m meterlib add-types DIR/new_types.csv --dataset NAME``: file the clusters a person named under raw/."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from meterlib.data import adding
from meterlib.run import paths


def add_types_command(args: argparse.Namespace) -> str:
    """The report of add-types: what was filed, the audit's flags, the split, and the next step."""
    dataset_dir = paths.resolve(dataset=args.dataset, data_dir=args.data_dir).dataset_dir
    report = adding.add_types(args.new_types, dataset_dir=dataset_dir, copy=args.copy)
    where = f" --data-dir {shlex.quote(args.data_dir)}" if args.data_dir else ""
    return (f"{report.describe()}\n"
            "Next: re-run 01 to split the dataset, then 02 to train warm from the current model (a run with "
            "--reports-dir DIR released it as DIR/model/meterlib_checkpoint.pt):\n"
            f"  meterlib run --warm-start {shlex.quote(_shown(paths.resolve().checkpoint))} "
            f"-p dataset={shlex.quote(args.dataset)}{where}")


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when it lies inside it (the command then reads as typed)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
