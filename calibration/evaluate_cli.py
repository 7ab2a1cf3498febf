"""``telcosim evaluate``: fidelity report of a run against real data, and a quality gate.

    telcosim evaluate --synthetic runs/city --real shares=../shared/data/nodobo \\
        --real drive=../shared/data/irish_5g --out reports/city [--gate] [--require NAME[,NAME]]

Writes ``REPORT_DIR/report.html`` (self-contained page) and ``REPORT_DIR/metrics.json``. Exit codes:
0 done (and, with ``--gate``, every required metric passes); 1 with ``--gate`` when a required
metric fails (each printed); 2 bad input, one line per problem on stderr, never a traceback, and
nothing written. Wired into ``sim/cli.py`` by :func:`add_parser` and :func:`run`, like
``calibration/cli.py``. Only the standard library is imported at import time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sim.cli import positive_int

from .cli import KINDS, _data_spec, repeated_kind_problems, tz_and_holiday_problems
from .errors import report as _report

EXIT_GATE = 1




def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand to an ``argparse`` subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "evaluate", help="fidelity report of a run against real data (HTML + JSON), with a quality gate",
        description="Compare a run folder with real data sets: telecom and mobility metrics, each with a "
                    "tolerance set from a real-vs-real split of the data; writes report.html and "
                    "metrics.json (see docs/evaluate.md).")
    p.add_argument("--synthetic", type=Path, required=True, metavar="RUN_DIR",
                   help="run folder written by 'telcosim run'")
    p.add_argument("--real", dest="real", action="append", type=_data_spec, required=True, metavar="KIND=PATH",
                   help=f"a real data set (repeatable); KIND one of {', '.join(KINDS)}, as for 'telcosim targets'")
    p.add_argument("--out", type=Path, required=True, metavar="REPORT_DIR",
                   help="folder for report.html and metrics.json (created)")
    p.add_argument("--gate", action="store_true",
                   help="exit 1 when a required metric fails (the failing ones are printed)")
    p.add_argument("--require", default=None, metavar="NAME[,NAME]",
                   help="metrics the gate requires, replacing the default list (docs/evaluate.md)")
    p.add_argument("--holidays", default="", metavar="DATE[,DATE...]",
                   help="dates (YYYY-MM-DD) left out of real activity and cell time series")
    p.add_argument("--tz", default=None, metavar="ZONE",
                   help="time zone for unix-second times of drive and location traces (default UTC)")
    p.add_argument("--splits", type=positive_int, default=None, metavar="N",
                   help="seeded real-vs-real half splits per real set (default 5)")
    p.add_argument("--seed", type=int, default=None, help="seed of the half splits")
    p.set_defaults(command="evaluate")
    return p


def _problems(args: argparse.Namespace) -> list[str]:
    from .fidelity import SPEC_BY_NAME

    out = []
    kinds = [k for k, _ in args.real]
    out += repeated_kind_problems("--real", kinds)
    from .fidelity import check_run_folder

    out.extend(check_run_folder(args.synthetic))
    if args.require is not None:
        names = [n.strip() for n in args.require.split(",") if n.strip()]
        if not names:
            out.append("--require: no metric names given")
        for n in names:
            if n not in SPEC_BY_NAME:
                out.append(f"--require: unknown metric {n!r} (see docs/evaluate.md for the names)")
    out += tz_and_holiday_problems(args)
    if args.out.exists() and not args.out.is_dir():
        out.append(f"--out {args.out} is a file; expected a folder for the report")
    return out


def run(args: argparse.Namespace) -> int:
    """Run ``telcosim evaluate``; returns the exit code (0, 1 for a failed gate, 2 for bad input)."""
    problems = _problems(args)
    from sim.errors import TelcosimError

    from . import fidelity, readers
    from .report import write_report

    datasets = []
    for kind, path in args.real:
        kw = {"tz": args.tz} if kind in ("drive", "locations") else {}
        try:
            datasets.append(readers.READERS[kind](path, **kw))
        except TelcosimError as exc:
            problems.extend(f"--real {kind}={path}: {p}" if str(path) not in p else p for p in exc.problems)
    if problems:
        return _report(problems)
    try:
        syn = fidelity.synthetic_features(args.synthetic)
    except fidelity.RunError as exc:
        problems.extend(exc.problems)
    except TelcosimError as exc:
        problems.extend(f"--synthetic {args.synthetic}: {p}" for p in exc.problems)
    except (OSError, ValueError, KeyError) as exc:
        problems.append(f"--synthetic {args.synthetic}: cannot read the run: {type(exc).__name__}: {exc}")
    if problems:
        return _report(problems)
    required = ([n.strip() for n in args.require.split(",") if n.strip()] if args.require is not None else None)
    holidays = [s.strip() for s in args.holidays.split(",") if s.strip()]
    kw = {k: v for k, v in (("splits", args.splits), ("seed", args.seed)) if v is not None}
    try:
        doc = fidelity.evaluate(args.synthetic, datasets, required=required, holidays=holidays,
                                synthetic=syn, **kw)
    except (TelcosimError, ValueError) as exc:
        return _report(getattr(exc, "problems", [str(exc)]))
    try:
        metrics_path, html_path = write_report(doc, args.out)
    except OSError as exc:
        return _report([f"--out {args.out}: cannot write: {exc.strerror or exc}"])
    s = doc["summary"]
    print(f"wrote {html_path} and {metrics_path}: {s['passed']} of {s['evaluated']} evaluated metrics pass, "
          f"{s['failed']} fail, {s['not_evaluated']} not evaluated")
    if s["failed_metrics"]:
        print(f"failing: {', '.join(s['failed_metrics'])}")
    if args.gate:
        failing = s["required_failed"] + (s["required_not_evaluated"] if s["required_source"] == "--require" else [])
        if failing:
            for n in failing:
                m = doc["metrics"][n]
                why = (f"distance {m['distance']:.4g} > tolerance {m['tolerance']:.4g}" if m["status"] == "fail"
                       else f"not evaluated: {m['note']}")
                print(f"telcosim: gate: required metric {n} fails: {why}", file=sys.stderr)
            print(f"telcosim: gate: FAIL ({len(failing)} of {len(s['required'])} required metrics)", file=sys.stderr)
            return EXIT_GATE
        missing = s["required_not_evaluated"]
        checked = len(s["required"]) - len(missing)
        head = (f"{checked} of {len(s['required'])} required metrics evaluated, all pass" if checked
                else f"vacuously: none of the {len(s['required'])} required metrics could be evaluated")
        print(f"gate: pass ({head}"
              + (f"; not evaluated for want of real data: {', '.join(missing)})" if missing else ")"))
    return 0
