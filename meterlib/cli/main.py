"""The command line's commands and options: ``python -m meterlib run --profile demo -p epochs_head=3``, ``python -m meterlib predict photos/``,
``python -m meterlib export --int8``."""

from __future__ import annotations

import argparse
import os
import sys

from meterlib.data.listing import shown_name
from meterlib.errors import MeterlibError, ModelFileError
from meterlib.run import output_path, paths, runner
from meterlib.scale.partitions import PARTITION_SIZE, RESUME_FLAG


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meterlib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute the numbered notebooks headlessly with papermill")
    run.add_argument("--profile", choices=runner.available_profiles(),
                     help="bundled parameter set (default: none, the notebooks' own defaults)")
    run.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                     help="set a notebook parameter (repeatable); the value is read as YAML")
    run.add_argument("-f", "--params-file", metavar="YAML", help="YAML mapping of parameters")
    run.add_argument("--only", nargs="+", default=[], metavar="PREFIX",
                     help="run only notebooks whose name starts with these prefixes (e.g. 01 02)")
    run.add_argument("--data-dir", default="", help="folder holding the datasets (default: data/)")
    run.add_argument("--reports-dir", default="", help="where results go (default: reports/)")
    run.add_argument("--progress", action="store_true", help="show papermill's per-cell progress bar")
    run.add_argument("--warm-start", default="", metavar="CHECKPOINT",
                     help="train from this checkpoint instead of the pretrained backbone: its types keep "
                          "what they learnt, new types are added (-p warm_start=CHECKPOINT, and -p preset=warm "
                          "unless a preset is given)")
    snap = sub.add_parser("snapshot", help="store the smoke run's checked outputs in notebooks/ "
                                            "(the reference that nbval compares against)")
    snap.add_argument("--only", nargs="+", default=[], metavar="PREFIX")
    _add_predict(sub)
    _add_features(sub)
    _add_export(sub)
    _add_discover(sub)
    _add_add_types(sub)
    return parser


def _add_predict(sub) -> None:
    predict = sub.add_parser("predict", help="identify the meter type in photos with the trained checkpoint")
    predict.add_argument("paths", nargs="+", metavar="PATH",
                         help="photo files, folders searched recursively for photos, http(s) URLs, or lists "
                              "of paths or URLs: a .csv file (see --column) or @FILE (one a line)")
    predict.add_argument("--column", metavar="NAME",
                         help="the column of the CSV lists that holds the paths or URLs (default: the first "
                              "of file, path, url, image)")
    predict.add_argument("--model", "--checkpoint", dest="model", default="", metavar="FILE",
                         help="a checkpoint, or its ONNX export (.onnx, run by ONNX Runtime) "
                              "(default: reports/model/meterlib_checkpoint.pt)")
    predict.add_argument("--csv", default="", metavar="OUT",
                         help="write one CSV row per file here instead of printing a table ('-': to "
                              "standard output)")
    predict.add_argument(output_path.OVERWRITE_FLAG, action="store_true",
                         help="replace an existing --csv file that meterlib did not write")
    predict.add_argument("--top-k", type=_positive_int, default=3, metavar="K",
                         help="classes listed per photo (default: 3)")
    predict.add_argument("--batch-size", type=_positive_int, metavar="N",
                         help="photos decoded and predicted at a time (default: 16)")
    _add_cluster(predict)


def _add_features(sub) -> None:
    features = sub.add_parser("features", help="write the model's L2-normalised features (float16) of many "
                                               "photos, a partition at a time, for discovery and clustering")
    features.add_argument("paths", nargs="+", metavar="PATH",
                          help="photo files, folders, http(s) URLs, or lists of them (as for predict)")
    features.add_argument("--column", metavar="NAME", help="the column of the CSV lists (as for predict)")
    features.add_argument("--model", "--checkpoint", dest="model", default="", metavar="FILE",
                          help="the checkpoint whose features are taken (default: reports/model/meterlib_checkpoint.pt)")
    features.add_argument("--out", required=True, metavar="DIR",
                          help="folder for each partition's features-NNNNN.npy and features-NNNNN.csv (its photos)")
    features.add_argument("--batch-size", type=_positive_int, metavar="N",
                          help="photos decoded at a time (default: 16)")
    _add_cluster(features)


def _add_cluster(command) -> None:
    """The options that run a command's photos on a Dask cluster, a partition at a time (the scale extra)."""
    where = command.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_positive_int, metavar="N",
                       help="run on a local Dask cluster of N worker processes sharing this machine's CPUs "
                            "(default: in this process, without Dask); predict then needs --csv OUT, and keeps "
                            "each partition's rows in the folder OUT.parts")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on the existing Dask cluster of this scheduler (e.g. tcp://10.0.0.5:8786); its "
                            "workers must see the photos and the model at the same paths")
    command.add_argument("--partition-size", type=_positive_int, default=PARTITION_SIZE, metavar="N",
                         help=f"photos a task, the unit that is retried and resumed, in whole batches "
                              f"(default: {PARTITION_SIZE})")
    command.add_argument(RESUME_FLAG, action="store_true",
                         help="keep the partitions an earlier run of the same job finished, and run only the others")


def _add_export(sub) -> None:
    export = sub.add_parser("export", help="write the trained model as an ONNX model with its calibration, "
                                           "checked against the checkpoint on the test split")
    export.add_argument("--checkpoint", default="", metavar="FILE",
                        help="model to export (default: reports/model/meterlib_checkpoint.pt)")
    export.add_argument("--out", default="", metavar="FILE",
                        help="ONNX file to write (default: beside the checkpoint, .onnx or .int8.onnx)")
    export.add_argument("--int8", action="store_true",
                        help="quantise to INT8 (static, calibrated on training photos)")
    export.add_argument("--force", action="store_true",
                        help="write the INT8 model even when it loses more than 1 point of test accuracy")
    export.add_argument(output_path.OVERWRITE_FLAG, action="store_true",
                        help="replace an existing --out file that meterlib did not write")
    export.add_argument("--dataset", default="",
                        help="the dataset the model was trained on, for the check (default: the checkpoint's)")
    export.add_argument("--data-dir", default="", help="folder holding the datasets (default: data/)")


def _add_discover(sub) -> None:
    discover = sub.add_parser("discover", help="group photos the model does not know into candidate new "
                                               "types, for a person to name")
    discover.add_argument("paths", nargs="+", metavar="PATH",
                          help="photo files, folders searched recursively, or a `meterlib predict` CSV "
                               "(its unseen_type rows are taken)")
    discover.add_argument("--model", "--checkpoint", dest="model", default="", metavar="FILE",
                          help="the checkpoint whose features are clustered "
                               "(default: reports/model/meterlib_checkpoint.pt)")
    discover.add_argument("--out", required=True, metavar="DIR",
                          help="folder for members.csv, new_types.csv and the contact sheets")
    discover.add_argument(output_path.OVERWRITE_FLAG, action="store_true",
                          help="replace files in --out that meterlib did not write")


def _add_add_types(sub) -> None:
    add = sub.add_parser("add-types", help="file the named clusters of new_types.csv under a dataset's raw/ "
                                           "folder (links to the photos; they are never moved)")
    add.add_argument("new_types", metavar="NEW_TYPES_CSV",
                     help="new_types.csv written by `meterlib discover`, with the name column filled in")
    add.add_argument("--dataset", required=True, help="the dataset that gains the types (data/<NAME>/raw/)")
    add.add_argument("--data-dir", default="", help="folder holding the datasets (default: data/)")
    add.add_argument("--copy", action="store_true", help="copy the photos instead of linking to them")


def _export(args: argparse.Namespace) -> str:
    """The export command's report: the checks and the file written."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as for predict
    from meterlib.export import export
    from meterlib.model import checkpoint

    source = args.checkpoint or paths.resolve().checkpoint
    dataset = args.dataset or checkpoint.load(source).get("training", {}).get("dataset") or "demo"
    splits_csv = paths.resolve(dataset=dataset, data_dir=args.data_dir).splits_csv
    return export.export_model(source, splits_csv=splits_csv, out=args.out or None, int8=args.int8,
                               force=args.force, overwrite=args.overwrite)


def _positive_int(text: str) -> int:
    """argparse type: a positive integer, else a usage error."""
    from meterlib.model import inference

    try:
        return inference.positive_int("value", int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None


def _predict(args: argparse.Namespace) -> str:
    """The predict command's output: a table, or the summary of the CSV written."""
    # Read once, when torch loads: idle OpenMP threads sleep instead of spinning, which on a busy
    # machine (a notebook kernel beside us, say) made inference several times slower.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from meterlib.cli import predict  # loads the model stack, which `run` does not need

    return predict.predict_files(args.paths, model=args.model or paths.resolve().checkpoint,
                                 csv_path=args.csv or None, top_k=args.top_k,
                                 batch_size=args.batch_size or predict.BATCH_SIZE, overwrite=args.overwrite,
                                 column=args.column, workers=args.workers, scheduler=args.scheduler,
                                 resume=args.resume, partition_size=args.partition_size)


def _features(args: argparse.Namespace) -> str:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as for predict
    from meterlib.cli.features import features_command

    return features_command(args)


def _discover(args: argparse.Namespace) -> str:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as for predict
    from meterlib.cli.discover import discover_command

    return discover_command(args)


def _add_types(args: argparse.Namespace) -> str:
    from meterlib.cli.add_types import add_types_command

    return add_types_command(args)


# The commands that print one report; `run` and `snapshot` run notebooks instead.
COMMANDS = {"predict": _predict, "features": _features, "export": _export, "discover": _discover,
            "add-types": _add_types}


def _shown(message: str) -> str:
    """A message for the terminal: its lines kept, escapes in the names it quotes made harmless."""
    return "\n".join(map(shown_name, message.split("\n")))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command in COMMANDS:
            report = COMMANDS[args.command](args)
            # With the CSV on standard output, the summary goes beside it, not into it.
            print(report, file=sys.stderr if getattr(args, "csv", "") == "-" else sys.stdout)
            return 0
        # Progress bars inside executed notebooks only clutter the saved reports.
        os.environ.setdefault("TQDM_DISABLE", "1")
        if args.command == "snapshot":
            runner.snapshot(only=args.only)
            return 0
        overrides = runner.load_parameter_file(args.params_file) if args.params_file else {}
        overrides.update(runner.parse_assignment(item) for item in args.param)
        if args.warm_start:  # shorthand for -p warm_start=PATH (absolute: notebooks run elsewhere) -p preset=warm
            if not os.path.isfile(args.warm_start):  # said now, not after 01 has run
                raise ModelFileError(f"{args.warm_start}: --warm-start checkpoint not found")
            overrides["warm_start"] = os.path.abspath(args.warm_start)
            overrides.setdefault("preset", "warm")
        runner.run(profile=args.profile, overrides=overrides, only=args.only,
                   data_dir=args.data_dir, reports_dir=args.reports_dir,
                   progress_bar=args.progress)
    except MeterlibError as exc:
        print(f"meterlib {args.command}: {_shown(str(exc))}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full or read-only disk mid-run: one line, earlier results are intact
        text = exc.strerror if exc.strerror and exc.filename is None else str(exc)
        print(f"meterlib {args.command}: {_shown(text)}", file=sys.stderr)
        return 1
    return 0

