"""The ``telcosim`` command line.

Bad input (an unknown option, a bad value, an unreadable or malformed scenario or cells file)
gets one line per problem on stderr and exit code 2, never a traceback, and nothing is left in
``--out``.
"""

from __future__ import annotations

import argparse
import ctypes
import sys
from pathlib import Path

from telcosim import scenarios
from telcosim.cli import augment as augment_cli
from telcosim.cli import benchmark as benchmark_cli
from telcosim.cli import calibrate as calibrate_cli
from telcosim.cli import evaluate as evaluate_cli
from telcosim.cli import hybrid as hybrid_cli
from telcosim.cli import models as models_cli
from telcosim.cli import rebalance as rebalance_cli
from telcosim.cli import scenario as scenario_cli
from telcosim.cli import study as study_cli
from telcosim.cli import targets as targets_cli
from telcosim.cli import warmup as warmup_cli
from telcosim.cli.args import EXIT_USAGE, Parser, positive_int, seed_value
from telcosim.scenarios.runner import baseline_path, prepare, refuse_unsupported
from telcosim.scenarios.runner import run as run_scenario
from telcosim.sim import __version__
from telcosim.sim.errors import RunInterrupted, TelcosimError
from telcosim.sim.summary import print_summary, progress_bar
from telcosim.sim.verify import verify_run

# The subcommands beside run and verify: each module adds its parser and runs its command.
COMMANDS = {"targets": targets_cli, "calibrate": calibrate_cli, "evaluate": evaluate_cli,
            "rebalance": rebalance_cli, "scenario": scenario_cli, "study": study_cli,
            "augment": augment_cli, "models": models_cli, "hybrid": hybrid_cli,
            "benchmark": benchmark_cli, "warmup": warmup_cli}


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="telcosim", description="Synthetic telecom traffic by simulation.")
    p.add_argument("--version", action="version", version=f"telcosim {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    r = sub.add_parser("run", help="run a scenario (or the embedded default) and write a run folder",
                       description="Run a scenario and write CDRs, locations, cell KPIs, subscribers, "
                                   "cells and a manifest to a run folder.")
    r.add_argument("scenario", nargs="?",
                   help="scenario TOML file or built-in scenario name (see 'telcosim scenario list'; "
                        "default: the embedded default city)")
    r.add_argument("--out", required=True, type=Path, help="run folder to create")
    r.add_argument("--seed", type=seed_value, help="root random seed (overrides the scenario)")
    r.add_argument("--subscribers", type=positive_int, help="number of subscribers (overrides the scenario)")
    r.add_argument("--days", type=positive_int, help="length of the run window in days (overrides the scenario)")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any scenario field, e.g. --set network.sites=200 (repeatable)")
    r.add_argument("--chunk-subscribers", type=positive_int, default=250_000, metavar="N",
                   help="subscribers per demand chunk: bounds memory, never changes the output (default 250000)")
    where = r.add_mutually_exclusive_group()
    where.add_argument("--workers", type=positive_int, metavar="N",
                       help="draw demand on a local Dask cluster of N processes (same output as without)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="draw demand on an existing Dask cluster")
    r.add_argument("--resume", action="store_true",
                   help="continue an interrupted run into --out from its last checkpoint")
    r.add_argument("--baseline", action="store_true",
                   help="with incidents: also keep the baseline (same seed, no incidents) in OUT.baseline")
    r.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    r.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    for command in COMMANDS.values():
        command.add_parser(sub)
    v = sub.add_parser("verify", help="check a run folder: checksums, schema, references, invariants",
                       description="Check a run folder against its manifest and the run's invariants; "
                                   "exit 1 with one line per problem, 0 when sound.")
    v.add_argument("run_dir", type=Path, help="run folder written by 'telcosim run'")
    return p


def _steady_heap() -> None:
    """Fix glibc's mmap threshold (it otherwise rises after each large free, so that the epoch's
    mid-sized arrays come from a heap that fragments and is never given back: about 20% more
    peak memory in long runs). Nothing happens on other C libraries."""
    try:
        ctypes.CDLL(None).mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD = 1 MiB
    except (OSError, AttributeError):
        pass


def _cmd_run(args: argparse.Namespace) -> int:
    _steady_heap()
    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.subscribers is not None:
        overrides.append(f"population.subscribers={args.subscribers}")
    if args.days is not None:
        overrides.append(f"time.days={args.days}")
    scenario = scenarios.load(args.scenario, overrides)
    refuse_unsupported(scenario, baseline=args.baseline, resume=args.resume)
    sim = prepare(scenario)
    epochs = sim.n_epochs * (2 if sim.perturbations is not None else 1)
    with progress_bar(epochs, disable=args.quiet) as advance:
        result = run_scenario(sim, args.out, baseline_out=baseline_path(args.out) if args.baseline else None,
                              overwrite=args.overwrite, resume=args.resume, progress=advance,
                              chunk_subscribers=args.chunk_subscribers, workers=args.workers,
                              scheduler=args.scheduler)
    if not args.quiet:
        print_summary(sim, result)
        if scenario.incidents:
            print(f"incidents: {result.rows.get('incidents', 0)} (labels in the incident_id columns; "
                  "see incidents.parquet)")
        if result.baseline is not None:
            print(f"baseline (same seed, no incidents): {result.baseline.out}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    problems = verify_run(args.run_dir)
    for line in problems:
        print(f"telcosim: verify: {line}", file=sys.stderr)
    if problems:
        print(f"telcosim: verify: {args.run_dir}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{args.run_dir}: ok")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "verify":
            return _cmd_verify(args)
        return COMMANDS[args.command].run(args)
    except TelcosimError as exc:
        for line in exc.problems:
            print(f"telcosim: error: {line}", file=sys.stderr)
        return EXIT_USAGE
    except RunInterrupted as exc:
        print(f"telcosim: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("telcosim: interrupted; nothing was written", file=sys.stderr)
        return 130



if __name__ == "__main__":
    sys.exit(main())
