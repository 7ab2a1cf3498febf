"""Scale benchmark: records/s and peak memory against subscribers, and Dask workers.

Usage::

    .venv/bin/python benchmarks/bench_scale.py [--sizes 10000 100000 1000000 10000000]
                                               [--workers-size 200000] [--json PATH]

Each measurement is a separate ``telcosim run`` process (so its peak RSS, read with
``RUSAGE_CHILDREN`` right after it ends, is that run's alone), on the default city grown with its
subscribers (``bench_core.city_for``: same subscribers per site, same site density), one day,
writing Parquet. A small warm-up run first loads numba's compiled kernels into the on-disk cache.

Printed and saved: wall time, CDR + location records, records/s, peak RSS, bytes on disk per
record; then 1 vs 2 local Dask workers vs a plain single process on one size, with their
checksums compared; and the projection model for a cluster: records per core-second of demand
drawing (the part Dask spreads out) and of resolution (the part that stays in one process).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import city_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TELCOSIM = [sys.executable, "-m", "telcosim.cli"]


def _children_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def run_once(subscribers: int, out: Path, extra: list[str] | None = None) -> dict:
    """One ``telcosim run`` in its own process; wall time, rows, bytes, and its peak RSS."""
    shutil.rmtree(out, ignore_errors=True)
    sets = [x for kv in city_for(subscribers) for x in ("--set", kv)]
    cmd = [*TELCOSIM, "run", "--out", str(out), "--subscribers", str(subscribers), "--quiet", *sets, *(extra or [])]
    # ru_maxrss of children is the maximum over all children so far: run each size in a fresh
    # helper process so the figure belongs to this run alone.
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "subprocess.run(sys.argv[1:], check=True); w = time.perf_counter() - t; "
             "print(w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)")
    proc = subprocess.run([sys.executable, "-c", probe, *cmd], stdout=subprocess.PIPE, text=True, check=True, cwd=ROOT)
    wall_s, rss = proc.stdout.split()[-2:]
    manifest = json.loads((out / "manifest.json").read_text())
    rows = manifest["row_counts"]
    records = rows["cdr"] + rows["locations"]
    disk = sum(f["bytes"] for f in manifest["files"].values())
    return {"subscribers": subscribers, "wall_s": float(wall_s), "records": records, "cdr": rows["cdr"],
            "locations": rows["locations"], "records_per_s": records / float(wall_s),
            "peak_rss_bytes": int(rss), "bytes_per_record": disk / records, "disk_bytes": disk,
            "checksums": {k: v["sha256"] for k, v in manifest["files"].items()}}


def split_costs(subscribers: int) -> dict:
    """CPU seconds of demand drawing and of resolution for one day, measured in this process."""
    from telcosim.sim import config
    from telcosim.sim.engine import Simulation
    from telcosim.sim.sinks import RunWriter

    sc = config.load(None, [f"population.subscribers={subscribers}", *city_for(subscribers)])
    sim = Simulation(sc)
    import telcosim.sim.engine as eng
    timings = {"demand": 0.0, "resolve": 0.0}
    real_resolve = eng._Resolver.resolve

    def timed_resolve(self, *a, **k):
        t = time.thread_time()
        out = real_resolve(self, *a, **k)
        timings["resolve"] += time.thread_time() - t
        return out

    import threading

    from telcosim.sim import executors, shards

    # Demand runs on the shard threads (one per core) and merges on the calling thread: sum the
    # CPU time of every Shard.step on whatever thread it runs, plus the calling thread's own time
    # in LocalDemand.step outside the shard steps it ran itself.
    real_step, real_shard_step = executors.LocalDemand.step, shards.Shard.step
    lock, mine = threading.Lock(), threading.local()

    def timed_shard_step(self, ep):
        t = time.thread_time()
        out = real_shard_step(self, ep)
        dt_ = time.thread_time() - t
        with lock:
            timings["demand"] += dt_
        mine.shard = getattr(mine, "shard", 0.0) + dt_
        return out

    def timed_step(self, ep):
        t, before = time.thread_time(), getattr(mine, "shard", 0.0)
        out = real_step(self, ep)
        own = time.thread_time() - t - (getattr(mine, "shard", 0.0) - before)
        with lock:
            timings["demand"] += own
        return out

    # The epoch's ordering after the shards (CSR index, counterpart cells, sort, gathers) runs on
    # the engine's order and post threads: demand too.
    from telcosim.sim.kernels import demand as demand_kernels

    ordering = [(eng, "_csr_index"), (eng, "stable_time_order_and_times"), (eng, "take"),
                (demand_kernels, "counterpart_cells")]
    real_ordering = [getattr(mod, name) for mod, name in ordering]

    def timed(fn):
        def run(*a):
            t = time.thread_time()
            out = fn(*a)
            dt_ = time.thread_time() - t
            with lock:
                timings["demand"] += dt_
            return out
        return run

    eng._Resolver.resolve = timed_resolve
    executors.LocalDemand.step = timed_step
    shards.Shard.step = timed_shard_step
    for (mod, name), fn in zip(ordering, real_ordering, strict=True):
        setattr(mod, name, timed(fn))
    try:
        result = sim.run(RunWriter(None, sim.metadata()))
    finally:
        eng._Resolver.resolve = real_resolve
        executors.LocalDemand.step = real_step
        shards.Shard.step = real_shard_step
        for (mod, name), fn in zip(ordering, real_ordering, strict=True):
            setattr(mod, name, fn)
    records = result.records
    return {"subscribers": subscribers, "records": records,
            "demand_cpu_s": timings["demand"], "resolve_cpu_s": timings["resolve"],
            "records_per_demand_core_s": records / timings["demand"],
            "records_per_resolve_core_s": records / timings["resolve"]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000, 10_000_000])
    ap.add_argument("--workers-size", type=int, default=200_000)
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp/telcosim-scale"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    figures: dict = {"sizes": [], "workers": {}}
    run_once(2_000, args.out_dir / "warmup")

    print(f"{'subscribers':>12} {'wall s':>8} {'records':>13} {'records/s':>11} {'peak RSS GB':>12} {'bytes/rec':>10}")
    for n in args.sizes:
        r = run_once(n, args.out_dir / f"n{n}")
        r.pop("checksums")
        figures["sizes"].append(r)
        print(f"{n:>12,} {r['wall_s']:>8.1f} {r['records']:>13,} {r['records_per_s']:>11,.0f} "
              f"{r['peak_rss_bytes'] / 1e9:>12.2f} {r['bytes_per_record']:>10.1f}", flush=True)
        shutil.rmtree(args.out_dir / f"n{n}", ignore_errors=True)

    n = args.workers_size
    plain = run_once(n, args.out_dir / "plain")
    w1 = run_once(n, args.out_dir / "w1", ["--workers", "1"])
    w2 = run_once(n, args.out_dir / "w2", ["--workers", "2"])
    same = plain["checksums"] == w1["checksums"] == w2["checksums"]
    for name, r in (("single process", plain), ("1 Dask worker", w1), ("2 Dask workers", w2)):
        figures["workers"][name] = {k: v for k, v in r.items() if k != "checksums"}
        print(f"{name:>16}: {r['wall_s']:6.1f} s, {r['records_per_s']:>11,.0f} records/s, "
              f"peak RSS {r['peak_rss_bytes'] / 1e9:.2f} GB (driver)")
    print(f"identical checksums (single, 1 worker, 2 workers): {same}")
    figures["workers"]["identical"] = same

    costs = split_costs(min(n, 1_000_000))
    figures["cost_model"] = costs
    print(f"cost model at {costs['subscribers']:,} subscribers: demand {costs['records_per_demand_core_s']:,.0f} "
          f"records per core-second, resolution {costs['records_per_resolve_core_s']:,.0f} records per core-second")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
