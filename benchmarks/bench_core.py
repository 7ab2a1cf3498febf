"""Core benchmark: how fast telcosim turns subscribers into rows, and where the time goes.

Usage::

    .venv/bin/python benchmarks/bench_core.py [--subscribers N] [--ref-subscribers M] [--days 1]
                                              [--out-dir /tmp/telcosim-bench] [--json PATH] [--keep]

It measures, in one invocation:

(a) **End-to-end**: the run path (``telcosim.scenarios.runner.run``) for N subscribers writing the Parquet run folder, from the
    scenario to the committed folder (set-up, simulation, Parquet writing, checksums). This runs
    in a child process so that its peak RSS (``ru_maxrss`` of that process) is the figure of a
    real run and is not inflated by the other measurements. The child first does a small warm-up
    run so that numba's JIT compilation (or loading its on-disk cache) is excluded from the
    timing; the warm-up is reported on its own.
(b) **Simulation itself**: the same N-subscriber run to a null sink (``run(scenario,
    None)``: rows are produced, counted and discarded), in this process after its own warm-up.
(c) **A plain-simpy reference** of the same model (``benchmarks/simpy_reference.py``) on M
    subscribers (it is slow). Rates are per row, so they compare across sizes; the warm-up of (b)
    is a telcosim run of the same M subscribers, which gives telcosim's rows per subscriber-day at
    the reference's size.
(d) **Bare pyarrow write**: the CDR and location rows that (a) wrote, read back into numpy arrays
    (not timed), then written again with the same schemas, compression and part sizes (rows/24
    per file per day), timing only table building and ``pq.write_table``. This is the floor for
    the Parquet part of (a): a simulator that also has to produce the rows cannot beat it.

Rows are CDR rows plus location rows, counted alike. Ratios printed: end-to-end / bare write
(target >= 0.5), null-sink simulation / simpy reference (target >= 100), end-to-end / simpy
reference. Targets for 1,000,000 subscribers x 1 day: end-to-end under 60 s and peak RSS under
3 GB (on the project's 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from telcosim.cli import _steady_heap
from telcosim.scenarios.runner import run
from telcosim.sim import config, engine, schema
from telcosim.sim.config import Scenario

sys.path.insert(0, str(Path(__file__).resolve().parent))
from simpy_reference import run_reference  # noqa: E402

TARGET_E2E_S = 60.0
TARGET_RSS_GB = 3.0
TARGET_E2E_OVER_BARE = 0.5
TARGET_SIM_OVER_REF = 100.0
RESULT_TAG = "BENCH-RESULT "


def city_for(subscribers: int) -> list[str]:
    """Overrides that grow the default city with its subscribers: the same subscribers per site
    (the default has 50,000 on 120 sites) and the same site density, so a bigger run is a bigger
    region, not more people crammed into 360 cells (whose data capacity 1M subscribers exceed)."""
    sites = max(120, round(subscribers * 120 / 50_000))
    k = math.sqrt(sites / 120)
    return [f"network.sites={sites}", f"network.radius_km={9.0 * k}", f"network.centre_scale_km={3.0 * k}",
            f"network.urban_km={2.5 * k}", f"network.suburban_km={6.0 * k}"]


def scenario(subscribers: int, days: int, sets: list[str] | None = None) -> Scenario:
    """The default city grown to N subscribers (:func:`city_for`), D days, plus ``--set`` overrides."""
    return config.load(None, [f"population.subscribers={subscribers}", f"time.days={days}",
                              *city_for(subscribers), *(sets or [])])


def rows_of(result: engine.RunResult) -> dict[str, int]:
    return {"cdr": result.rows.get("cdr", 0), "locations": result.rows.get("locations", 0)}


def max_rss_bytes(who: int) -> int:
    """``ru_maxrss`` (kB on Linux) in bytes: the peak resident set of a whole process."""
    return resource.getrusage(who).ru_maxrss * 1024


# --- (a) end-to-end, in a child process ------------------------------------------------------

def end_to_end(subscribers: int, days: int, warmup_subscribers: int, out_dir: Path, sets: list[str]) -> dict:
    """Warm-up run, then the timed end-to-end run to Parquet (what the child process does)."""
    _steady_heap()  # the allocator setting 'telcosim run' uses
    t0 = time.perf_counter()
    run(scenario(warmup_subscribers, days, sets), out_dir / "warmup", overwrite=True)
    warmup_s = time.perf_counter() - t0
    run_dir = out_dir / "run"
    c0 = time.process_time()
    t0 = time.perf_counter()
    result = run(scenario(subscribers, days, sets), run_dir, overwrite=True)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "cpu_s": time.process_time() - c0, "run_s": result.wall_s, "setup_s": wall - result.wall_s,
            "warmup_s": warmup_s, "warmup_subscribers": warmup_subscribers, "rows": rows_of(result),
            "run_dir": str(run_dir), "max_rss_bytes": max_rss_bytes(resource.RUSAGE_SELF)}


def end_to_end_in_child(args: argparse.Namespace) -> dict:
    """Run (a) in a fresh process; its peak RSS is read back with RUSAGE_CHILDREN as well."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--end-to-end-only",
           "--subscribers", str(args.subscribers), "--days", str(args.days),
           "--warmup-subscribers", str(args.warmup_subscribers), "--out-dir", str(args.out_dir),
           *(x for kv in args.set for x in ("--set", kv))]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    line = next(x for x in proc.stdout.splitlines() if x.startswith(RESULT_TAG))
    out = json.loads(line[len(RESULT_TAG):])
    out["max_rss_children_bytes"] = max_rss_bytes(resource.RUSAGE_CHILDREN)
    return out


# --- (d) bare pyarrow write --------------------------------------------------------------------

def _codes(col: pa.ChunkedArray, vocabulary: tuple) -> np.ndarray:
    """A dictionary column back to the kernel's codes (index in ``vocabulary``; null = None's)."""
    parts = []
    for chunk in col.chunks:
        if not pa.types.is_dictionary(chunk.type):
            chunk = chunk.dictionary_encode()
        lut = [vocabulary.index(v) for v in chunk.dictionary.to_pylist()]
        lut.append(vocabulary.index(None) if None in vocabulary else 0)  # for nulls
        idx = chunk.indices.fill_null(len(lut) - 1).to_numpy()
        parts.append(np.asarray(lut, np.int8)[idx])
    return np.concatenate(parts) if parts else np.zeros(0, np.int8)


def _ints(col: pa.ChunkedArray, dtype, null: int | None = None) -> np.ndarray:
    if null is not None:
        col = col.fill_null(null)
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.int64())
    return col.to_numpy().astype(dtype, copy=False)


def load_columns(run_dir: Path) -> tuple[dict, dict]:
    """The CDR and location rows of a run as numpy arrays with the engine's dtypes."""
    t = pq.read_table(run_dir / "cdr")
    cdr = {
        "rec": _ints(t["record_id"], np.int64), "sess": _ints(t["session_id"], np.int64),
        "sub": _ints(t["subscriber_id"], np.int32), "cp": _ints(t["counterpart_id"], np.int32, null=-1),
        "svc": _codes(t["service"], schema.SERVICES), "dir": _codes(t["direction"], schema.DIRECTIONS),
        "t": _ints(t["start_time"], np.int64), "dur_s": t["duration_s"].to_numpy(),
        "up": _ints(t["bytes_up"], np.int64), "down": _ints(t["bytes_down"], np.int64),
        "cell": _ints(t["cell_id"], np.int32), "end": _ints(t["end_cell_id"], np.int32),
        "out": _codes(t["outcome"], schema.OUTCOMES), "cause": _codes(t["cause"], schema.CAUSES),
        "redial": _ints(t["redial"], np.int8),
    }
    del t
    t = pq.read_table(run_dir / "locations")
    loc = {"sub": _ints(t["subscriber_id"], np.int32), "t": _ints(t["time"], np.int64),
           "cell": _ints(t["cell_id"], np.int32), "reason": _codes(t["reason"], schema.REASONS)}
    return cdr, loc


def cdr_table(c: dict, sch: pa.Schema) -> pa.Table:
    ts = sch.field("start_time").type
    return pa.Table.from_arrays([
        pa.array(c["rec"]), pa.array(c["sess"]), pa.array(c["sub"]), pa.array(c["cp"], mask=c["cp"] < 0),
        schema.dictionary_array(c["svc"], schema.SERVICES), schema.dictionary_array(c["dir"], schema.DIRECTIONS),
        pa.array(c["t"], type=ts), pa.array(c["dur_s"]), pa.array(c["up"]), pa.array(c["down"]),
        pa.array(c["cell"]), pa.array(c["end"]),
        schema.dictionary_array(c["out"], schema.OUTCOMES), schema.dictionary_array(c["cause"], schema.CAUSES),
        pa.array(c["redial"]), pa.nulls(len(c["rec"]), pa.int32()),  # incident_id: null without incidents
    ], schema=sch)


def loc_table(c: dict, sch: pa.Schema) -> pa.Table:
    return pa.Table.from_arrays([
        pa.array(c["sub"]), pa.array(c["t"], type=sch.field("time").type), pa.array(c["cell"]),
        schema.dictionary_array(c["reason"], schema.REASONS), pa.nulls(len(c["sub"]), pa.int32()),
    ], schema=sch)


def bare_write(cdr: dict, loc: dict, sc: Scenario, out: Path) -> dict:
    """Write the columns as Parquet parts like the engine's (timed: table building + write)."""
    tz = sc.time.timezone
    compression = None if sc.output.compression == "none" else sc.output.compression
    n_parts = 24 * sc.time.days
    if out.exists():
        shutil.rmtree(out)
    jobs = (("cdr", cdr, cdr_table, schema.cdr_schema(tz)),
            ("locations", loc, loc_table, schema.locations_schema(tz)))
    for name, *_ in jobs:
        (out / name).mkdir(parents=True)
    c0 = time.process_time()
    t0 = time.perf_counter()
    for name, cols, build, sch in jobs:
        n = len(next(iter(cols.values())))
        bounds = np.linspace(0, n, n_parts + 1).astype(np.int64)
        for k in range(n_parts):
            part = {key: a[bounds[k]:bounds[k + 1]] for key, a in cols.items()}
            pq.write_table(build(part, sch), out / name / f"part-{k:05d}.parquet", compression=compression)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    size = sum(p.stat().st_size for p in out.rglob("*.parquet"))
    return {"wall_s": wall, "cpu_s": cpu, "rows": {"cdr": len(cdr["rec"]), "locations": len(loc["t"])},
            "parts": n_parts, "bytes": size}


# --- report ------------------------------------------------------------------------------------

def total(rows: dict[str, int]) -> int:
    return rows["cdr"] + rows["locations"]


def gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.2f} GB"


def met(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def report(f: dict) -> None:
    n, m, days = f["subscribers"], f["ref_subscribers"], f["days"]
    e2e, null, ref, bare, warm = f["end_to_end"], f["null_sink"], f["reference"], f["bare_write"], f["warmup_m"]
    rate = {k: total(f[k]["rows"]) / f[k]["wall_s"] for k in ("end_to_end", "null_sink", "reference", "bare_write")}
    print(f"telcosim core benchmark: {n:,} subscribers x {days} day(s), {f['cells']} cells, "
          f"compression {f['compression']}, {os.cpu_count()} CPUs; reference on {m:,} subscribers")
    if f["overrides"]:
        print(f"scenario overrides: {' '.join(f['overrides'])}")
    print()
    print(f"{'':34}{'wall s':>9}{'CDR rows':>14}{'loc rows':>14}{'rows/s':>14}")

    def line(label: str, d: dict, r: float) -> None:
        print(f"{label:34}{d['wall_s']:9.2f}{d['rows']['cdr']:14,}{d['rows']['locations']:14,}{r:14,.0f}")

    line("(a) end-to-end to Parquet", e2e, rate["end_to_end"])
    line("(b) simulation, null sink", null, rate["null_sink"])
    line("(c) simpy reference", ref, rate["reference"])
    line("(d) bare pyarrow write", bare, rate["bare_write"])
    print()
    print(f"(a) set-up {e2e['setup_s']:.2f} s + run {e2e['run_s']:.2f} s; warm-up before it "
          f"({e2e['warmup_subscribers']:,} subscribers, JIT/cache load, excluded): {e2e['warmup_s']:.2f} s")
    print(f"(b) set-up {null['setup_s']:.2f} s + run {null['run_s']:.2f} s; warm-up before it "
          f"({m:,} subscribers, null sink, excluded): {warm['wall_s']:.2f} s")
    print(f"(c) set-up {ref['setup_s']:.2f} s + simulation {ref['wall_s'] - ref['setup_s']:.2f} s")
    print(f"(d) {bare['parts']} parts per table, {gb(bare['bytes'])} written")
    # CPU time (user + system, all threads) is less disturbed than wall time by other work on the
    # machine; wall time is what the targets are about.
    print(f"CPU s (user + system, all threads): (a) {e2e['cpu_s']:.2f}, (b) {null['cpu_s']:.2f}, "
          f"(d) {bare['cpu_s']:.2f}")
    print()
    print(f"{'rows per subscriber-day':40}{'CDR':>8}{'locations':>11}")
    for label, d, subs in ((f"telcosim, {n:,} subscribers", null, n), (f"telcosim, {m:,} subscribers", warm, m),
                           (f"simpy reference, {m:,} subscribers", ref, m)):
        print(f"  {label:38}{d['rows']['cdr'] / (subs * days):8.2f}{d['rows']['locations'] / (subs * days):11.2f}")
    print()
    rss = e2e["max_rss_children_bytes"]
    print(f"peak RSS of the end-to-end process (a): {gb(rss)} (ru_maxrss of the child process, "
          f"whole-process peak, warm-up included; the child itself reported {gb(e2e['max_rss_bytes'])})")
    print(f"peak RSS of this process ((b)-(d), read-back columns): {gb(f['max_rss_self_bytes'])} (process peak)")
    print()
    r_bare = rate["end_to_end"] / rate["bare_write"]
    r_ref = rate["null_sink"] / rate["reference"]
    r_e2e_ref = rate["end_to_end"] / rate["reference"]
    print(f"end-to-end / bare write       {r_bare:8.2f}   (target >= {TARGET_E2E_OVER_BARE}: {met(r_bare >= TARGET_E2E_OVER_BARE)})")
    print(f"null-sink sim / simpy ref     {r_ref:8.1f}   (target >= {TARGET_SIM_OVER_REF:.0f}: {met(r_ref >= TARGET_SIM_OVER_REF)})")
    print(f"end-to-end / simpy ref        {r_e2e_ref:8.1f}")
    scope = "" if (n, days) == (1_000_000, 1) else " (the targets are for 1,000,000 x 1 day; this run is smaller)"
    print(f"end-to-end wall {e2e['wall_s']:.1f} s  (target < {TARGET_E2E_S:.0f} s: {met(e2e['wall_s'] < TARGET_E2E_S)}){scope}")
    print(f"peak RSS {gb(rss)}  (target < {TARGET_RSS_GB:.0f} GB: {met(rss < TARGET_RSS_GB * 1e9)}){scope}")
    f["ratios"] = {"end_to_end_over_bare_write": r_bare, "null_sink_over_reference": r_ref,
                   "end_to_end_over_reference": r_e2e_ref}
    f["rows_per_s"] = rate


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="telcosim core benchmark (see the module docstring)")
    ap.add_argument("--subscribers", type=int, default=1_000_000, help="N for (a), (b), (d)")
    ap.add_argument("--ref-subscribers", type=int, default=2_000, help="M for the simpy reference (c)")
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument("--warmup-subscribers", type=int, default=2_000, help="warm-up run of the end-to-end process")
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp/telcosim-bench"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="scenario override for every run, e.g. network.sites=400 (repeatable)")
    ap.add_argument("--json", type=Path, help="also save the figures here")
    ap.add_argument("--keep", action="store_true",
                    help="keep the written run and bare-write folders under --out-dir (several GB at 1M)")
    ap.add_argument("--end-to-end-only", action="store_true",
                    help="only (a), printing its figures as JSON (used for the child process)")
    args = ap.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)

    if args.end_to_end_only:
        out = end_to_end(args.subscribers, args.days, args.warmup_subscribers, args.out_dir, args.set)
        print(RESULT_TAG + json.dumps(out), flush=True)
        return

    sc = scenario(args.subscribers, args.days, args.set)
    ref_sc = scenario(args.ref_subscribers, args.days, args.set)
    figures: dict = {"subscribers": args.subscribers, "ref_subscribers": args.ref_subscribers,
                     "days": args.days, "overrides": args.set, "compression": sc.output.compression,
                     "cpus": os.cpu_count()}

    print("(a) end-to-end (child process) ...", file=sys.stderr, flush=True)
    figures["end_to_end"] = e2e = end_to_end_in_child(args)

    print("(b) null sink ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    warm = run(ref_sc, None)  # warm-up; also telcosim's rows at the reference's size
    figures["warmup_m"] = {"wall_s": time.perf_counter() - t0, "rows": rows_of(warm)}
    c0 = time.process_time()
    t0 = time.perf_counter()
    result = run(sc, None)
    wall = time.perf_counter() - t0
    figures["null_sink"] = {"wall_s": wall, "cpu_s": time.process_time() - c0, "run_s": result.wall_s,
                            "setup_s": wall - result.wall_s,
                            "rows": rows_of(result)}
    figures["cells"] = int(result.kpi.num_rows // (24 * args.days * 3600 // sc.output.kpi_interval_s))
    del result

    print("(c) simpy reference ...", file=sys.stderr, flush=True)
    ref = run_reference(ref_sc)
    figures["reference"] = {"wall_s": ref["wall_s"], "setup_s": ref["setup_s"],
                            "rows": {"cdr": ref["cdr_rows"], "locations": ref["location_rows"]}}

    print("(d) bare pyarrow write ...", file=sys.stderr, flush=True)
    cdr, loc = load_columns(Path(e2e["run_dir"]))
    figures["bare_write"] = bare_write(cdr, loc, sc, args.out_dir / "bare")
    del cdr, loc
    figures["max_rss_self_bytes"] = max_rss_bytes(resource.RUSAGE_SELF)

    print(file=sys.stderr, flush=True)
    report(figures)
    sys.stdout.flush()
    if not args.keep:  # the 1M day is ~2.6 GB of Parquet: leave no disk behind by default
        for sub in ("run", "warmup", "bare"):
            shutil.rmtree(args.out_dir / sub, ignore_errors=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
