"""Synthetic field photos of 38 invented meter types: the embedded demo and test data."""

from meterlib.synth.catalog import CATALOG, catalog_table, class_names
from meterlib.synth.counts import long_tail_counts
from meterlib.synth.generate import (
           MANIFEST_NAME,
           DatasetSpec,
           ensure_dataset,
           generate_dataset,
           read_manifest,
)

__all__ = ["CATALOG", "MANIFEST_NAME", "DatasetSpec", "catalog_table", "class_names", "ensure_dataset",
           "generate_dataset", "long_tail_counts", "read_manifest"]
