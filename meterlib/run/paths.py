"""Every path the project uses, built from one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from meterlib.errors import DataError

PACKAGE_DIR = Path(__file__).resolve().parents[1]
# Dataset names that stand for the embedded synthetic data: only these are generated unasked.
EMBEDDED_DATASETS = ("demo", "smoke")
# The file the synthetic-data generator leaves in every folder it made.
SYNTH_MARKER = ".meterlib-synth.json"


def project_root() -> Path:
    """The repository root (override with METERLIB_HOME for a non-editable install)."""
    home = os.environ.get("METERLIB_HOME")
    return Path(home).resolve() if home else PACKAGE_DIR.parent


def notebooks_dir() -> Path:
    """Folder of the numbered analysis notebooks."""
    return project_root() / "notebooks"


@dataclass(frozen=True)
class ProjectPaths:
    """Where one dataset's inputs live and where a run writes its results."""

    dataset_dir: Path
    reports_dir: Path

    @property
    def raw_dir(self) -> Path:
        return self.dataset_dir / "raw"

    @property
    def splits_csv(self) -> Path:
        return self.dataset_dir / "splits.csv"

    @property
    def figures_dir(self) -> Path:
        return self.reports_dir / "figures"

    @property
    def checkpoint(self) -> Path:
        """The released model: trained by 02, calibrated by 03; what predictions load."""
        return self.reports_dir / "model" / "meterlib_checkpoint.pt"

    @property
    def trained_checkpoint(self) -> Path:
        """02's new model until 03 has calibrated and released it (the released one stays meanwhile)."""
        return self.reports_dir / "model" / "meterlib_checkpoint.uncalibrated.pt"

    @property
    def checkpoint_to_evaluate(self) -> Path:
        """What 03 evaluates: 02's new model when one waits, else the released one."""
        return self.trained_checkpoint if self.trained_checkpoint.is_file() else self.checkpoint

    @property
    def metrics_json(self) -> Path:
        return self.reports_dir / "metrics.json"

    @property
    def results_csv(self) -> Path:
        return self.reports_dir / "test_inference_results.csv"

    def figure(self, name: str) -> Path:
        """Path of a figure file, e.g. figure('03_reliability.png')."""
        return self.figures_dir / name


def resolve(*, dataset: str = "demo", data_dir: str | os.PathLike = "",
            reports_dir: str | os.PathLike = "") -> ProjectPaths:
    """Resolve a dataset name (folder under data/) or a dataset path, and the reports folder.

    Empty ``data_dir``/``reports_dir`` fall back to METERLIB_DATA_DIR/METERLIB_REPORTS_DIR, then
    to ``data/`` and ``reports/`` in the project.
    """
    data_root = Path(data_dir or os.environ.get("METERLIB_DATA_DIR") or project_root() / "data")
    reports = Path(reports_dir or os.environ.get("METERLIB_REPORTS_DIR") or project_root() / "reports")
    candidate = Path(dataset).expanduser()
    dataset_path = candidate if candidate.is_absolute() or os.sep in dataset else data_root / dataset
    return ProjectPaths(dataset_dir=dataset_path.resolve(), reports_dir=reports.resolve())


def needs_generation(dataset: str, dataset_dir: str | os.PathLike, *, generate: bool = False) -> bool:
    """True when synthetic photos belong at ``dataset_dir`` (missing, or made by the generator).

    A missing folder is generated only for the embedded datasets or when ``generate`` asks for it;
    any other missing dataset is an error, so a typo never trains on invented photos.
    """
    target = Path(dataset_dir)
    if target.exists():
        return (target / SYNTH_MARKER).is_file()
    if generate or dataset in EMBEDDED_DATASETS:
        return True
    raise DataError(f"dataset not found: {target} (a dataset is a folder holding raw/ or processed/; "
                    f"a bare name means a folder under the data folder; "
                    f"only {' and '.join(EMBEDDED_DATASETS)} are generated when missing)")
