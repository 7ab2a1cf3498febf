"""Where the cost per record grows: CPU per record of resolution and of demand drawing (null sink,
``bench_scale.split_costs``) for N subscribers on the default city grown for G subscribers, so that
the subscribers and the cells can be grown apart. docs/performance.md, "Where the cost per record
grows".

Usage::

    .venv/bin/python benchmarks/cost_growth.py N G     # e.g. 1000000 1000000, then 1000000 10000000
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_core  # noqa: E402
import bench_scale  # noqa: E402


def main(n: int, grown_for: int) -> dict:
    grown = bench_core.city_for(grown_for)
    bench_scale.city_for = lambda _subscribers: grown
    c = bench_scale.split_costs(n)
    c["grown_for"] = grown_for
    c["resolve_ns_per_record"] = c["resolve_cpu_s"] / c["records"] * 1e9
    c["demand_ns_per_record"] = c["demand_cpu_s"] / c["records"] * 1e9
    return c


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]))))
