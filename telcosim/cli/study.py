"""``telcosim study``: run a scenario study (a grid or list of variants, replicated) and summarise it.

    telcosim study STUDY.toml --out DIR [--workers N] [--keep-runs] [--overwrite] [--quiet]
    telcosim study voice_channels --out DIR     # a built-in study (telcosim study --list)
    telcosim study STUDY.toml --check           # validate the file and every variant, run nothing

Writes DIR/runs.parquet, runs.csv, summary.csv, summary.json, plots/<kpi>.svg and study.toml,
atomically (a hidden ``.DIR.partial`` folder renamed at the end). Bad input: one line per problem
on stderr (file, dotted key, bad value, what is allowed), exit code 2, nothing written. Wired into
``sim/cli.py`` by :func:`add_parser` and :func:`run`. The file format is in ``docs/studies.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from telcosim.cli.args import positive_int, seed_value
from telcosim.scenarios import study as st
from telcosim.sim.errors import ConfigError

EXIT_USAGE = 2


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``study`` subcommand to an argparse subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "study", help="run a scenario over a grid or list of variants, replicated, and summarise the KPIs",
        description="Run every (variant, replicate) of a study file as one simulation, in parallel "
                    "processes; write the KPIs of each run (runs.parquet, runs.csv), their mean, sd "
                    "and 95% Student-t interval per variant (summary.csv, summary.json) and one plot "
                    "per KPI (plots/KPI.svg). See docs/studies.md.")
    p.add_argument("study", nargs="?", metavar="STUDY",
                   help="study TOML file or built-in study name (see --list)")
    p.add_argument("--out", type=Path, metavar="DIR", help="study folder to create (required to run)")
    p.add_argument("--workers", type=positive_int, metavar="N",
                   help="worker processes (default: min(cores, runs)); never changes the KPI values")
    p.add_argument("--keep-runs", action="store_true",
                   help="keep every run folder, under DIR/runs/VARIANT/SEED (default: discarded)")
    p.add_argument("--replicates", type=positive_int, metavar="R", help="replicates (overrides the file)")
    p.add_argument("--seed", type=seed_value, help="study seed (overrides the file)")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    p.add_argument("--check", action="store_true",
                   help="validate the study file and every variant's scenario, run nothing")
    p.add_argument("--list", action="store_true", help="list the built-in studies and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary table")
    return p


def _error(message: str) -> int:
    print(f"telcosim: error: {message} (see 'telcosim study --help')", file=sys.stderr)
    return EXIT_USAGE


def run(args: argparse.Namespace) -> int:
    """Run ``telcosim study``; returns the exit code. Input problems raise a ConfigError."""
    if args.list:
        if args.study is not None:
            return _error(f"--list takes no study file (got {args.study!r})")
        rows = st.describe_builtin_studies()
        width = max((len(n) for n, _, _ in rows), default=0)
        for name, path, desc in rows:
            print(f"{name:<{width}}  {desc}\n{'':<{width}}  {path}")
        return 0
    if args.study is None:
        return _error("the following arguments are required: STUDY (or --list)")
    if args.out is None and not args.check:
        return _error("the following arguments are required: --out (or --check)")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out}: exists and is a file (give a folder for the study)")

    study = st.load_study(args.study, replicates=args.replicates, seed=args.seed)
    if args.check:
        print(f"{study.label}: ok ({len(study.variants)} variant(s) x {study.replicates} replicate(s) "
              f"= {study.n_runs} runs of {study.scenario_ref})")
        return 0


    bar = Progress(TextColumn(f"study {study.name}"), BarColumn(), MofNCompleteColumn(), TextColumn("runs"),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                   disable=args.quiet)
    with bar:
        task = bar.add_task("runs", total=study.n_runs)
        result = st.run_study(study, args.out, workers=args.workers, keep_runs=args.keep_runs,
                              overwrite=args.overwrite,
                              progress=lambda done, _n: bar.update(task, completed=done))
    if not args.quiet:
        print(st.format_summary(study, result.summary))
        print(f"\n{study.n_runs} runs in {result.wall_s:.1f} s; written to {args.out}")
    return 0
