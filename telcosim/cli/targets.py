"""``telcosim targets``: calibration targets from real data, private where the data is individual.

    telcosim targets --data activity=milan.csv --data edges=copenhagen/ --epsilon 1 --out targets.json

Wired into ``sim/cli.py`` by :func:`add_parser` (the subcommand's options) and :func:`run` (the
command). Bad input is reported one problem per line on stderr with exit code 2, never a
traceback, and nothing is written. This module imports only the standard library at import time.
"""

from __future__ import annotations

import argparse
import json
import sys
import zoneinfo
from datetime import date
from pathlib import Path

from telcosim.calibration.targets import TooSmallToSplit, compute_targets, mask_volumes
from telcosim.cli.args import number
from telcosim.cli.args import report as _report
from telcosim.realdata import readers
from telcosim.sim.errors import TelcosimError

KINDS = ("activity", "cells", "drive", "locations", "shares", "edges", "cdr")


def _data_spec(text: str) -> tuple[str, Path]:
    kind, sep, path = text.partition("=")
    kind = kind.strip().lower()
    if not sep or not path.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KIND=PATH (KIND one of {', '.join(KINDS)})")
    if kind not in KINDS:
        raise argparse.ArgumentTypeError(f"unknown data kind {kind!r}; expected one of {', '.join(KINDS)}")
    return kind, Path(path.strip())


_positive_float = number(lo=0, lo_open=True, rule="a positive finite number")
_delta = number(lo=0, hi=1, lo_open=True, hi_open=True, rule="between 0 and 1 (exclusive), e.g. 1e-6")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``targets`` subcommand to an ``argparse`` subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "targets", help="summary statistics of real data as calibration targets (differentially private "
                        "for individual-level data)",
        description="Read real data sets, compute calibration targets and write them as JSON. Targets "
                    "from individual-level data (drive, locations, edges, cdr) are released with "
                    "differential privacy under --epsilon (see docs/privacy.md).")
    p.add_argument("--data", dest="data", action="append", type=_data_spec, required=True,
                   metavar="KIND=PATH", help=f"an input (repeatable); KIND one of {', '.join(KINDS)} "
                                             "(see docs/calibration.md)")
    p.add_argument("--epsilon", type=_positive_float, help="privacy budget for all individual-level "
                   "targets together (required when such data is given)")
    p.add_argument("--delta", type=_delta, default=0.0,
                   help="with a delta, counts and sums use Gaussian noise ((epsilon, delta)-DP); default 0: Laplace")
    p.add_argument("--holidays", default="", metavar="DATE[,DATE...]",
                   help="holiday dates (YYYY-MM-DD) for the holiday effect of activity and cell series")
    p.add_argument("--tz", default=None, metavar="ZONE",
                   help="time zone for unix-second times of drive and location traces (e.g. America/New_York; "
                        "default UTC)")
    p.add_argument("--disjoint-sources", action="store_true",
                   help="the individual-level inputs hold disjoint people: each gets the whole epsilon "
                        "(parallel composition) instead of a share")
    p.add_argument("--mask-volumes", action="store_true",
                   help="rescale absolute levels (load quantiles, var/mean, pair counts) to fixed reference "
                        "levels, keeping shapes and ratios, so a shared file does not reveal volumes "
                        "(recorded under 'masking'; see docs/calibration.md)")
    p.add_argument("--part", choices=("fit", "check", "all"), default="fit",
                   help="which rows of each set the targets come from: fit (default; 'telcosim evaluate' judges "
                        "on the held-out check part), check, or all (sets too small to split); each set is split "
                        "by its natural unit (realdata/splits.py) and the split recorded in the JSON")
    p.add_argument("--out", type=Path, required=True, help="JSON file to write")
    p.set_defaults(command="targets")
    return p


def _problems(args: argparse.Namespace) -> list[str]:
    out = []
    kinds = [k for k, _ in args.data]
    out += repeated_kind_problems("--data", kinds)
    if args.epsilon is None and any(k in ("drive", "locations", "edges", "cdr") for k in kinds):
        out.append("--epsilon is required with individual-level data (drive, locations, edges, cdr)")
    out += tz_and_holiday_problems(args)
    out += output_file_problems("--out", args.out, "a JSON file path")
    return out


def run(args: argparse.Namespace) -> int:
    """Run ``telcosim targets``; returns the exit code (0, or 2 with one line per problem)."""
    problems = _problems(args)
    if problems:
        return _report(problems)

    datasets, problems = [], []
    for kind, path in args.data:
        kw = {"tz": args.tz} if kind in ("drive", "locations") else {}
        try:
            datasets.append(readers.READERS[kind](path, **kw))
        except TelcosimError as exc:
            problems.extend(exc.problems)
    if problems:
        return _report(problems)
    holidays = [s.strip() for s in args.holidays.split(",") if s.strip()]
    try:
        doc = compute_targets(datasets, epsilon=args.epsilon, delta=args.delta, holidays=holidays,
                              disjoint_sources=args.disjoint_sources, part=getattr(args, "part", "fit"))
    except TooSmallToSplit as exc:
        return _report([f"--data: {exc}"])
    except (TelcosimError, ValueError) as exc:
        return _report(getattr(exc, "problems", [str(exc)]))
    if getattr(args, "mask_volumes", False):
        doc = mask_volumes(doc)
    text = json.dumps(doc, indent=2, allow_nan=False) + "\n"
    tmp = args.out.with_name(f".{args.out.name}.partial")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(args.out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        return _report([f"--out {args.out}: cannot write: {exc.strerror or exc}"])
    spent = doc["privacy"]["spent"]
    masked = (f"; volumes masked ({len(doc['masking']['rescaled'])} targets rescaled)"
              if doc["masking"].get("volumes") else "")
    print(f"wrote {args.out}: {len(doc['targets'])} targets from the {doc['split']['part']} part; privacy spent "
          f"epsilon={spent['epsilon']:.6g} delta={spent['delta']:.3g}{masked}")
    noisy = noise_dominated(doc)
    if noisy:
        print("telcosim: warning: noise-dominated (noise sd above "
              f"{doc_threshold(doc):g} on the calibration scale; 'telcosim calibrate' sets them aside): "
              + ", ".join(noisy), file=sys.stderr)
    return 0


def noise_dominated(doc: dict) -> list[str]:
    """The figures of a targets document whose noise record says noise-dominated, as target.figure."""
    out = []
    for name, tg in sorted(doc.get("targets", {}).items()):
        noise = (tg.get("privacy") or {}).get("noise") if isinstance(tg.get("privacy"), dict) else None
        for k in (noise or {}).get("noise_dominated", []):
            out.append(name if k == "value" else f"{name}.{k}")
    return out


def doc_threshold(doc: dict) -> float:
    for tg in doc.get("targets", {}).values():
        noise = (tg.get("privacy") or {}).get("noise") if isinstance(tg.get("privacy"), dict) else None
        if noise:
            return float(noise["threshold_sd"])
    return float("nan")


def tz_and_holiday_problems(args) -> list[str]:
    """Problems of the --tz and --holidays options (shared by targets and evaluate)."""
    out = []
    if args.tz is not None:
        try:
            zoneinfo.ZoneInfo(args.tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            out.append(f"--tz {args.tz!r} is not a known time zone (e.g. UTC, Europe/Rome)")
    for d in filter(None, (s.strip() for s in args.holidays.split(","))):
        try:
            date.fromisoformat(d)
        except ValueError:
            out.append(f"--holidays: {d!r} is not a date YYYY-MM-DD")
    return out


def repeated_kind_problems(opt: str, kinds: list[str]) -> list[str]:
    """One problem per input kind given more than once to ``opt``."""
    return [f"{opt} {k}= given {kinds.count(k)} times; give each kind once"
            for k in sorted({k for k in kinds if kinds.count(k) > 1})]


def output_file_problems(opt: str, path: Path, expected: str = "a file path") -> list[str]:
    """Problems of an output file option: a folder in its place, or a missing parent folder."""
    if path.exists() and path.is_dir():
        return [f"{opt} {path} is a folder; expected {expected}"]
    if not path.parent.exists():
        return [f"{opt} {path}: folder {path.parent} does not exist"]
    return []
