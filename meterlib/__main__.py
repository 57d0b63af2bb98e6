"""Command line: ``python -m meterlib run --profile demo -p epochs_head=3``."""

from __future__ import annotations

import argparse
import os
import sys

from meterlib.errors import MeterlibError
from meterlib.run import runner


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
    snap = sub.add_parser("snapshot", help="store the smoke run's checked outputs in notebooks/ "
                                            "(the reference that nbval compares against)")
    snap.add_argument("--only", nargs="+", default=[], metavar="PREFIX")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Progress bars inside executed notebooks only clutter the saved reports.
    os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        if args.command == "snapshot":
            runner.snapshot(only=args.only)
            return 0
        overrides = runner.load_parameter_file(args.params_file) if args.params_file else {}
        overrides.update(runner.parse_assignment(item) for item in args.param)
        runner.run(profile=args.profile, overrides=overrides, only=args.only,
                   data_dir=args.data_dir, reports_dir=args.reports_dir,
                   progress_bar=args.progress)
    except MeterlibError as exc:
        print(f"meterlib {args.command}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full or read-only disk mid-run: one line, earlier results are intact
        print(f"meterlib {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
