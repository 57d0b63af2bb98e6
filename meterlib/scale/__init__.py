"""Prediction and feature extraction over many photos on a Dask cluster (``meterlib predict --workers N``,
``meterlib features``); the cluster part needs the scale extra.

- ``partitions``: a job's folder: the photos cut into numbered partitions, the manifest a resumed run must
  match, which partitions are finished, their results merged.
- ``cluster``: Dask: a LocalCluster or an existing scheduler, the worker plugin that loads the model once
  per worker, each unfinished partition run as one task.
- ``answers``, ``features``: what one partition writes: its rows of the predict CSV, or its features.
"""
