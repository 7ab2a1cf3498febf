"""Error of the differentially private calibration targets against epsilon, on real data.

    .venv/bin/python benchmarks/dp_error_vs_epsilon.py --data ../shared/data --repeats 20 \
        [--epsilons 0.1,0.5,1,2,5,10] [--json out.json]

Reads the individual-level shared sets (StudentLife GPS traces, Copenhagen call/SMS edge lists,
Irish 5G drive traces), computes every private target once exactly (no noise, the same per-person
caps: ``compute_targets(..., exact=True)``) and then ``--repeats`` times as a DP release for each
epsilon (``compute_targets(..., epsilon=E, disjoint_sources=True)``: each source gets the whole
epsilon, as in ``docs/calibration.md``'s example), and prints, per scalar statistic, the median over
the releases of the relative error |released - exact| / |exact|, and the share of releases in which
the statistic came out undefined (noise made a count non-positive). The error therefore measures
the noise only, not the caps' bias. OpenDP draws its noise from the system's secure generator, so
the figures vary a little from run to run (more with fewer repeats); the printed table is what
``docs/privacy.md`` records.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from telcosim.calibration import derive_defaults as dd  # noqa: E402
from telcosim.calibration.targets import compute_targets  # noqa: E402
from telcosim.realdata import readers as R  # noqa: E402

# scalar statistics reported: (target, key in its value or None for a scalar value)
STATS = [
    ("locations.radius_of_gyration_km", "median"), ("locations.radius_of_gyration_km", "p90"),
    ("locations.distinct_locations_per_day", "median"), ("locations.top_location_share", "median"),
    ("locations.hourly_move_probability", "mean"),
    ("edges.call_duration", "log_mu"), ("edges.call_duration", "log_sigma"),
    ("edges.call_duration", "median_s"), ("edges.call_duration", "p90_s"),
    ("edges.sms_call_ratio", None), ("edges.contact_concentration", "top10pct_pairs_call_share"),
    ("drive.handover_rate_per_min_moving", None), ("drive.dwell_time_s", "median"),
    ("drive.dwell_time_s", "p90"), ("drive.ping_pong_share", None),
]


def _get(doc: dict, target: str, key: str | None) -> float | None:
    v = doc["targets"].get(target, {}).get("value")
    v = v.get(key) if key is not None and isinstance(v, dict) else v
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else None


def read_sets(data: Path) -> list:
    return [R.read_location_traces(data / "studentlife_gps", tz=dd.STUDENTLIFE_TZ),
            R.read_edges(data / "copenhagen"), R.read_drive_traces(data / "irish_5g")]


def measure(datasets, epsilons: list[float], repeats: int) -> dict:
    exact = compute_targets(datasets, exact=True)
    truth = {f"{t}.{k}" if k else t: _get(exact, t, k) for t, k in STATS}
    out = {"exact": truth, "epsilons": epsilons, "repeats": repeats, "median_rel_error": {},
           "undefined_share": {}}
    for eps in epsilons:
        errs: dict[str, list[float]] = {name: [] for name in truth}
        undefined = dict.fromkeys(truth, 0)
        for _ in range(repeats):
            doc = compute_targets(datasets, epsilon=eps, disjoint_sources=True)
            for t, k in STATS:
                name = f"{t}.{k}" if k else t
                v = _get(doc, t, k)
                if v is None:
                    undefined[name] += 1
                elif truth[name]:
                    errs[name].append(abs(v - truth[name]) / abs(truth[name]))
        out["median_rel_error"][str(eps)] = {n: float(np.median(e)) if e else None for n, e in errs.items()}
        out["undefined_share"][str(eps)] = {n: undefined[n] / repeats for n in truth}
    return out


def table(res: dict) -> str:
    eps = [str(e) for e in res["epsilons"]]
    lines = ["| statistic | exact | " + " | ".join(f"ε={e}" for e in eps) + " |",
             "|---|---:|" + "---:|" * len(eps)]
    for name, ex in res["exact"].items():
        cells = []
        for e in eps:
            m = res["median_rel_error"][e][name]
            u = res["undefined_share"][e][name]
            cell = "–" if m is None else f"{m:.3g}"
            if u > 0:
                cell += f" ({u:.0%} undef.)"
            cells.append(cell)
        lines.append(f"| `{name}` | {ex:.4g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--epsilons", default="0.1,0.5,1,2,5,10")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if not (args.data / "studentlife_gps").is_dir():
        print(f"{args.data}: no studentlife_gps folder (the shared data is needed)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    res = measure(read_sets(args.data), [float(e) for e in args.epsilons.split(",")], args.repeats)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    print(table(res))
    print(f"\n{args.repeats} releases per epsilon, each source given the whole epsilon (--disjoint-sources); "
          f"wall {res['wall_s']} s")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
