"""``telcosim rebalance``: fill the under-represented strata of a run with targeted extra data.

    telcosim rebalance runs/city --target coverage.toml --out runs/city-rebalanced

Reads the run folder and the coverage targets (docs/rebalance.md), runs the simulator for the
flagged gaps and writes, atomically, ``DIR/extra/extra-NN/`` (complete run folders, each with the
scenario file that made it), ``records.parquet`` (every record of the combined data: source,
record id, non-colliding subscriber id, strata, weight), ``strata_weights.parquet``,
``coverage_before_after.json``, ``coverage.html`` and ``manifest.json``. Exit codes: 0 done
(gaps that stay short or cannot be filled are printed); 2 bad input, one line per problem on
stderr, never a traceback, nothing written. Wired into ``sim/cli.py`` by :func:`add_parser` and
:func:`run`. Only the standard library is imported at import time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from telcosim.cli.args import number, positive_int, seed_value
from telcosim.cli.args import report as _report
from telcosim.evaluation.coverage import check_run_dir, load_targets
from telcosim.evaluation.rebalance import plan, rebalance
from telcosim.sim.errors import TelcosimError

_count = number(integer=True, lo=200, rule="an integer >= 200 (subscribers of one extra run)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``rebalance`` subcommand to an ``argparse`` subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "rebalance", help="fill under-represented strata of a run with targeted extra simulation, with weights",
        description="Measure a run's coverage of density, hour, service, home density and incident kind "
                    "against coverage targets, simulate extra data for the strata that fall short, and write "
                    "the extra runs, per-record weights that recover the original distribution, and coverage "
                    "before and after (see docs/rebalance.md).")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run folder written by 'telcosim run'")
    p.add_argument("--target", type=Path, required=True, metavar="COVERAGE_TOML",
                   help="coverage targets: per dimension and level a min_share and/or min_count")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to create for the extra data")
    p.add_argument("--max-rounds", type=positive_int, default=4, metavar="N",
                   help="rounds of extra runs at most (default 4)")
    p.add_argument("--max-subscribers", type=_count, default=None, metavar="N",
                   help="subscribers of one extra run at most (default 4x the run's)")
    p.add_argument("--max-episodes", type=positive_int, default=20, metavar="N",
                   help="incident episodes of one 'telcosim augment' call at most (default 20)")
    p.add_argument("--seed", type=seed_value, default=0,
                   help="salt of the extra runs' seeds, which derive from the run's own seed (default 0)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the coverage, the gaps and the extra runs planned (sizes estimated); simulate "
                        "and write nothing")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--quiet", action="store_true", help="print only the result")
    p.set_defaults(command="rebalance")
    return p


def _problems(args: argparse.Namespace) -> tuple[list[str], object]:
    out = list(check_run_dir(args.run_dir))
    targets = None
    try:
        targets = load_targets(args.target)
    except TelcosimError as exc:
        out.extend(exc.problems)
    if args.dry_run:  # nothing is written
        return out, targets
    if args.out.exists() and not args.out.is_dir():
        out.append(f"--out {args.out} is a file; expected a folder to create")
    elif args.out.exists() and any(args.out.iterdir()) and not args.overwrite:
        out.append(f"--out {args.out}: already exists and is not empty (choose another --out or pass --overwrite)")
    if not out:
        try:
            if args.out.resolve() == args.run_dir.resolve() or args.run_dir.resolve() in args.out.resolve().parents:
                out.append(f"--out {args.out}: is inside the run folder {args.run_dir}; choose a folder outside it")
        except OSError:
            pass
    return out, targets


def run(args: argparse.Namespace) -> int:
    """Run ``telcosim rebalance``; returns the exit code (0 done, 2 bad input)."""
    problems, targets = _problems(args)
    if problems:
        return _report(problems)

    if args.dry_run:
        try:
            p = plan(args.run_dir, targets, max_subscribers=args.max_subscribers, max_episodes=args.max_episodes)
        except TelcosimError as exc:
            return _report(exc.problems)
        for i in p["before"]["strata"]:
            print(f"{i['name']}: {i['flag']}: {i['count']:,} records ({100 * i['share']:.2f}%), target "
                  + ", ".join(f"{k} {v}" for k, v in i["target"].items()))
        for u in p["not_fillable"]:
            print(f"{u['gap']}: not fillable: {u['reason']}")
        for a in p["actions"]:
            print(f"plan: {a['action']} for {', '.join(a['for'])}: {a['why']}; first extra run "
                  f"{a['first_run_size']:,} {a['unit']} (cap {a['cap']:,}), {a['records_short']:,} records short")
        if not p["actions"]:
            print("plan: nothing to simulate")
        return 0
    log = (lambda _m: None) if args.quiet else (lambda m: print(f"rebalance: {m}", flush=True))
    try:
        res = rebalance(args.run_dir, targets, args.out, max_rounds=args.max_rounds,
                        max_subscribers=args.max_subscribers, max_episodes=args.max_episodes, salt=args.seed,
                        overwrite=args.overwrite, log=log)
    except TelcosimError as exc:
        return _report(exc.problems)
    gaps = res.manifest["gaps"]
    if not gaps:
        print(f"wrote {args.out}: every target is met already; nothing generated")
        return 0
    for g in gaps:
        b, a = g["before"], g["after"]
        why = f" ({g['reason']})" if g["status"] != "filled" else ""
        print(f"{g['gap']}: {g['status']}: {b['count']:,} records ({100 * b['share']:.2f}%) -> "
              f"{a['count']:,} ({100 * a['share']:.2f}%){why}")
    n = len(res.manifest["generated"])
    print(f"wrote {args.out}: {n} extra run(s), coverage_before_after.json, coverage.html, records.parquet (weights)")
    return 0
