"""``telcosim warmup``: compile the simulator's kernels ahead of the first run.

numba compiles a kernel the first time it is called and keeps the machine code in its cache (the
``__pycache__`` folder beside the kernel sources, or ``NUMBA_CACHE_DIR``); a later process loads
it from there. On a fresh install the first ``telcosim run`` would otherwise spend about 40 s
compiling before its first quarter hour (docs/performance.md). ``make demo`` and ``make test``
run this once after installing.

It runs tiny scenarios into a temporary folder, so the kernels are compiled for exactly the
argument types a run passes them: the embedded default city (every kernel of a plain run) and the
central site outage with PM counters on (the kernels of incidents and of the PM tables). Nothing is
written anywhere else.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from telcosim import scenarios
from telcosim.scenarios.runner import prepare
from telcosim.scenarios.runner import run as run_scenario
from telcosim.sim.kernels import specialisations

# Subscribers of the warm-up runs: the kernels' types do not depend on the size.
SUBSCRIBERS = 300
# What the warm-up runs: (built-in scenario or None for the embedded default, overrides).
RUNS = ((None, []), ("site_outage_peak", ["output.pm_interval_s=900"]))


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "warmup", help="compile the simulator's kernels now, so that the first run starts at once",
        description="Compile the numba kernels that runs use (a plain run, incidents, PM counters) into "
                    "numba's cache by running tiny scenarios into a temporary folder. Run once after "
                    "installing (make demo and make test do); a second warmup loads them and takes seconds.")
    p.add_argument("--quiet", action="store_true", help="print nothing")
    return p


def warm() -> tuple[float, int]:
    """Run the warm-up scenarios. Returns (seconds taken, kernel specialisations in memory)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="telcosim-warmup-") as tmp:
        for i, (name, overrides) in enumerate(RUNS):
            sc = scenarios.load(name, [*overrides, f"population.subscribers={SUBSCRIBERS}"])
            run_scenario(prepare(sc), Path(tmp) / f"run{i}", overwrite=True)
    return time.perf_counter() - t0, sum(specialisations().values())


def run(args: argparse.Namespace) -> int:
    seconds, n = warm()
    if not args.quiet:
        print(f"telcosim warmup: {n} kernel specialisations ready in {seconds:.1f} s")
    return 0
