"""Synthetic field photos of 38 invented meter types: the embedded demo and test data."""

from meterlib.synth.catalog import CATALOG, catalog_table, class_names
from meterlib.synth.counts import long_tail_counts
from meterlib.synth.generate import (
                                     EMBEDDED,
                                     MANIFEST_NAME,
                                     MARKER_NAME,
                                     ensure_dataset,
                                     generate_dataset,
                                     needs_generation,
                                     read_manifest,
)

__all__ = ["CATALOG", "EMBEDDED", "MANIFEST_NAME", "MARKER_NAME", "catalog_table", "class_names", "ensure_dataset",
           "generate_dataset", "long_tail_counts", "needs_generation",
           "read_manifest"]
