"""``telcosim benchmark``: score telcosim and other generators on the versioned suite of telecom
tasks (evaluation/benchmark.py) and write ``leaderboard.json`` and ``leaderboard.html``.

    telcosim benchmark --out DIR [--generators a,b,...] [--tasks t,...] [--quick] [--data PATH]

Default generators: every registered one that can run here (the SDV peers only when
``make peers`` has built benchmarks/.venv-peers); the output lists the ones that ran. Exit codes:
0 written; 2 bad input (an unknown generator or task, a requested peer without its venv, a missing
data folder, ``--out`` a file), one line on stderr, nothing written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from telcosim.cli.args import report, seed_value
from telcosim.evaluation import benchmark
from telcosim.evaluation.benchmark_generators import (
    GENERATORS,
    Context,
    GeneratorError,
    default_names,
)

DEFAULT_DATA = Path("../shared/data")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "benchmark", help="score generators (telcosim, its learned models, SDV peers, controls) on telecom tasks",
        description="Score generators on a versioned suite of telecom tasks on the public real sets (fidelity, "
                    "train-synthetic-test-real forecasting, incident detection, privacy attacks, tail coverage); "
                    "writes leaderboard.json and leaderboard.html (see docs/benchmark.md).")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the leaderboard (created)")
    p.add_argument("--generators", default=None, metavar="NAME[,NAME]",
                   help=f"generators to score (default: those that can run here); known: {', '.join(GENERATORS)}")
    p.add_argument("--tasks", default=None, metavar="NAME[,NAME]",
                   help=f"tasks to score (default: all); known: {', '.join(benchmark.TASKS)}")
    p.add_argument("--quick", action="store_true", help="smaller runs, fewer epochs and bootstrap draws")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="PATH",
                   help="the shared real data folder (default ../shared/data)")
    p.add_argument("--seed", type=seed_value, default=benchmark.SEED, help="seed of samples, splits and intervals")
    return p


def _names(text: str | None, known, what: str, problems: list[str]) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if n not in known:
            problems.append(f"--{what} {n!r}: unknown; known: {', '.join(known)}")
    if not names:
        problems.append(f"--{what}: empty; give one or more of {', '.join(known)}")
    return names


def run(args: argparse.Namespace) -> int:
    problems: list[str] = []
    gens = _names(args.generators, GENERATORS, "generators", problems)
    tasks = _names(args.tasks, benchmark.TASKS, "tasks", problems)
    ctx = Context(data_dir=args.data, work=args.out / "work", quick=args.quick)
    if gens is None:
        gens = default_names(ctx)
    elif not problems:
        problems += [r for r in (GENERATORS[g]().missing(ctx) for g in gens) if r]
    tasks = tasks or list(benchmark.TASKS)
    if args.out.exists() and not args.out.is_dir():
        problems.append(f"--out {args.out}: is a file; expected a folder (created if absent)")
    need = {"area_week": "milan_hourly", "subscriber": "copenhagen", "change_window": "ran_updates"}
    for rep in sorted({benchmark.TASKS[t].rep for t in tasks if t in benchmark.TASKS}):
        if not (args.data / need[rep]).exists():
            problems.append(f"--data {args.data}: no {need[rep]}/ (needed by the {rep} tasks); give the shared "
                            "data folder")
    if problems:
        return report(problems)
    try:
        doc = benchmark.run_benchmark(args.data, args.out, gens, tasks, quick=args.quick, seed=args.seed,
                                      log=lambda s: print(f"telcosim benchmark: {s}", file=sys.stderr))
    except GeneratorError as exc:
        return report([str(exc)])
    print(f"suite {doc['suite_version']}: {len(tasks)} tasks x {len(gens)} generators ({', '.join(gens)})")
    print(benchmark.markdown_table(doc))
    print(f"wrote {args.out / 'leaderboard.json'} and {args.out / 'leaderboard.html'}")
    return 0
