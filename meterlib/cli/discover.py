"""``python -m meterlib discover PHOTOS... --out DIR``: group photos the model does not know into candidate new types.

The photos are clustered with the model's training photos at ``clustering.DEFAULT_SETTINGS``
(chosen by ``clustering.choose_settings`` on the demo); the report says what was found, where the
review files are, and how to add the types a person names.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections import Counter
from pathlib import Path

from meterlib.cli import predict
from meterlib.data.adding import MEMBERS_NAME
from meterlib.data.splits import counted
from meterlib.discover import clustering, finder, inputs, outputs
from meterlib.errors import ModelFileError
from meterlib.run import paths

UNREADABLE_SHOWN = 5  # unreadable photos named in the report; members.csv lists only the read ones


def discover_command(args: argparse.Namespace) -> str:
    """Cluster the photos of ``args.paths`` with ``args.model``'s training photos, write the review files
    into ``args.out``; the report."""
    model = feature_model(args.model)
    found_photos = inputs.gather(args.paths)
    read = [model, *(path for path in args.paths if Path(path).is_file())]  # never to be written over
    outputs.check(args.out, inputs=[*read, *found_photos.files], overwrite=args.overwrite)
    predictor = predict.load_predictor(model)
    found = finder.find_new_types(predictor, found_photos.files, source=model, batch_size=predict.BATCH_SIZE,
                                  progress=len(found_photos.files) >= predict.PROGRESS_FROM and sys.stderr.isatty())
    outputs.write(args.out, found.clusters, found.features.files, predictor.class_names, inputs=read,
                  overwrite=args.overwrite)
    return _report(found.clusters, found.features, predictor.class_names, skipped=found_photos.skipped,
                   out=Path(args.out))


def feature_model(given: str) -> Path:
    """The checkpoint whose features a command reads (default: the project's); an ONNX export is refused."""
    model = Path(given or paths.resolve().checkpoint)
    if model.suffix.lower() == ".onnx":
        raise ModelFileError(f"{model}: the model's features are read, which an ONNX export does not give; "
                             "give the checkpoint (.pt) with --model")
    return model


def _report(found: clustering.Clusters, features: inputs.Features, class_names: list[str], *,
            skipped: str, out: Path) -> str:
    """What was found, the photos left out, the files written and the next step."""
    status = Counter(found.status)
    known = Counter(class_names[label] for label in found.known_type if label >= 0)
    lines = [f"{counted(len(features.files) + len(features.unreadable), 'photo')}: "
             f"{counted(len(found.new_types), 'new type')} ({counted(status[clustering.NEW], 'photo')}), "
             f"{counted(len(known), 'known type')} ({counted(status[clustering.KNOWN], 'photo')}), "
             f"{status[clustering.NOISY]} noise, {len(features.unreadable)} could not be read"]
    lines += [f"  cluster {kind.cluster}: {counted(len(kind.members), 'photo')}, nearest known types "
              + ", ".join(f"{class_names[label]} {similarity:.2f}" for label, similarity in kind.nearest)
              for kind in found.new_types]
    if known:
        lines.append("  known: " + ", ".join(f"{name} ({counted(count, 'photo')})"
                                             for name, count in known.most_common()))
    if features.unreadable:
        named = [f"{file} ({problem})" for file, problem in features.unreadable[:UNREADABLE_SHOWN]]
        more = len(features.unreadable) - len(named)
        lines.append("could not be read: " + "; ".join(named) + (f"; and {more} more" if more else ""))
    if skipped:
        lines.append(skipped)
    needed = found.settings.min_cluster_size
    if len(features.files) < needed:
        lines.append(f"{len(features.files)} photos are fewer than the {needed} a new type needs to form a "
                     "cluster: give more photos of it")
    lines.append(f"wrote {MEMBERS_NAME}, {outputs.NOISE_NAME}, {outputs.NEW_TYPES_NAME} and "
                 f"{counted(len(found.new_types), 'contact sheet')} in {out}")
    if found.new_types:
        table = shlex.quote(str(out / outputs.NEW_TYPES_NAME))
        lines += ["Next: look at the contact sheets, write a type name in the name column of new_types.csv "
                  "for each cluster to add (leave the others empty), then:",
                  f"  meterlib add-types {table} --dataset NAME"]
    return "\n".join(lines)
