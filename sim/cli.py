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

from .errors import ConfigError, TelcosimError

EXIT_USAGE = 2


class _Interrupted(KeyboardInterrupt):
    """An interrupted run whose partial output can be resumed."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        self.exit(EXIT_USAGE, f"telcosim: error: {message} (see '{self.prog} --help')\n")


def number(*, integer: bool = False, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
           hi_open: bool = False, rule: str = ""):
    """An argparse type for a number in a range (shared by every telcosim command): the value, or
    one line saying what is wrong and what is allowed (``rule``, else the bounds)."""
    def parse(text: str):
        try:
            v = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if integer else 'a number'}") from None
        bad = (v != v or v in (float("inf"), float("-inf"))
               or (lo is not None and (v < lo or (lo_open and v == lo)))
               or (hi is not None and (v > hi or (hi_open and v == hi))))
        if bad:
            bounds = " and ".join(b for b in (
                None if lo is None else f"{'>' if lo_open else '>='} {lo:g}",
                None if hi is None else f"{'<' if hi_open else '<='} {hi:g}") if b)
            raise argparse.ArgumentTypeError(f"{v} is out of range (must be {rule or bounds or 'finite'})")
        return v
    return parse


positive_int = number(integer=True, lo=0, lo_open=True, rule="a positive integer")
seed_value = number(integer=True, lo=0, hi=2**63 - 1, rule="between 0 and 2^63-1")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="telcosim", description="Synthetic telecom traffic by simulation.")
    p.add_argument("--version", action="version", version=f"telcosim {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
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
    # The CLI wiring is the one place where sim meets calibration and scenarios.
    from calibration import calibrate_cli, evaluate_cli, rebalance_cli
    from calibration import cli as targets_cli
    from scenarios import augment_cli, study_cli
    from scenarios import cli as scenario_cli

    targets_cli.add_parser(sub)
    calibrate_cli.add_parser(sub)
    evaluate_cli.add_parser(sub)
    rebalance_cli.add_parser(sub)
    scenario_cli.add_parser(sub)
    study_cli.add_parser(sub)
    augment_cli.add_parser(sub)
    from models import cli as models_cli  # learned generators (torch imported only when used)

    models_cli.add_parser(sub)
    v = sub.add_parser("verify", help="check a run folder: checksums, schema, references, invariants",
                       description="Check a run folder against its manifest and the run's invariants; "
                                   "exit 1 with one line per problem, 0 when sound.")
    v.add_argument("run_dir", type=Path, help="run folder written by 'telcosim run'")
    return p


def _version() -> str:
    from . import __version__

    return __version__


def _steady_heap() -> None:
    """Fix glibc's mmap threshold (it otherwise rises after each large free, so that the epoch's
    mid-sized arrays come from a heap that fragments and is never given back: about 20% more
    peak memory in long runs). Nothing happens on other C libraries."""
    try:
        ctypes.CDLL(None).mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD = 1 MiB
    except (OSError, AttributeError):
        pass


def _cmd_run(args: argparse.Namespace) -> int:
    import scenarios

    _steady_heap()

    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.subscribers is not None:
        overrides.append(f"population.subscribers={args.subscribers}")
    if args.days is not None:
        overrides.append(f"time.days={args.days}")
    scenario = scenarios.load(args.scenario, overrides)

    from .engine import Simulation
    from .sinks import RunWriter
    from .summary import print_summary, progress_bar

    if scenario.incidents:
        return _run_incidents(args, scenario)
    if args.baseline:
        raise ConfigError("--baseline: the scenario has no incidents, so the run is its own baseline")
    sim = Simulation(scenario)
    from scenarios.runner import attach_learned

    attach_learned(sim)
    writer = RunWriter(args.out, sim.metadata(), scenario.output.compression, overwrite=args.overwrite,
                       resume=args.resume)
    try:
        with progress_bar(sim.n_epochs, disable=args.quiet) as advance:
            result = sim.run(writer, advance, args.chunk_subscribers, workers=args.workers,
                             scheduler=args.scheduler, resume=args.resume)
    except BaseException as exc:
        writer.abort(keep_partial=True)
        if isinstance(exc, KeyboardInterrupt) and writer.resumable():
            raise _Interrupted(f"interrupted; the completed part is kept hidden beside {args.out}: "
                               "continue with the same command plus --resume") from None
        raise
    if not args.quiet:
        print_summary(sim, result)
    return 0


def _run_incidents(args: argparse.Namespace, scenario) -> int:
    from scenarios.runner import baseline_path, run_scenario

    from .summary import print_summary, progress_bar

    if args.resume:
        raise ConfigError("--resume: not available for a scenario with incidents (its labels need the "
                          "baseline and the run whole); run it again without --resume")
    base_out = baseline_path(args.out) if args.baseline else None
    from .engine import Simulation

    sim = Simulation(scenario)  # for the progress bar and the summary
    with progress_bar(2 * sim.n_epochs, disable=args.quiet) as advance:
        result, base = run_scenario(scenario, args.out, baseline_out=base_out, overwrite=args.overwrite,
                                    progress=advance, chunk_subscribers=args.chunk_subscribers,
                                    workers=args.workers, scheduler=args.scheduler)
    if not args.quiet:
        print_summary(sim, result)
        print(f"incidents: {result.rows.get('incidents', 0)} (labels in the incident_id columns; see incidents.parquet)")
        if base is not None:
            print(f"baseline (same seed, no incidents): {base.out}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from .verify import verify_run

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
        if args.command == "targets":
            from calibration import cli as targets_cli

            return targets_cli.run(args)
        if args.command == "calibrate":
            from calibration import calibrate_cli

            return calibrate_cli.run(args)
        if args.command == "evaluate":
            from calibration import evaluate_cli

            return evaluate_cli.run(args)
        if args.command == "rebalance":
            from calibration import rebalance_cli

            return rebalance_cli.run(args)
        if args.command == "models":
            from models import cli as models_cli

            return models_cli.run(args)
        if args.command == "scenario":
            from scenarios import cli as scenario_cli

            return scenario_cli.run(args)
        if args.command == "augment":
            from scenarios import augment_cli

            return augment_cli.run(args)
        if args.command == "study":
            from scenarios import study_cli

            return study_cli.run(args)
    except TelcosimError as exc:
        for line in exc.problems:
            print(f"telcosim: error: {line}", file=sys.stderr)
        return EXIT_USAGE
    except _Interrupted as exc:
        print(f"telcosim: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("telcosim: interrupted; nothing was written", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
