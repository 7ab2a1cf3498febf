"""``telcosim hybrid``: a governed real subset filled with synthetic records (see :mod:`evaluation.hybrid`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from telcosim import scenarios
from telcosim.cli.args import number, positive_int, seed_value
from telcosim.evaluation.hybrid import FILL_MODES, evaluate_hybrid, hybrid, load_policy
from telcosim.sim.errors import ConfigError

# flag -> dotted policy key (the flags win over the policy file)
FLAGS = {"k": "k", "strata": "strata", "fill": "fill", "epsilon": "dp.epsilon", "delta": "dp.delta",
         "policy_seed": "seed"}
_int = number(integer=True, rule="an integer")
_num = number(rule="a number")


def _strata(text: str) -> list[str]:
    return [s.strip() for s in text.split(",")]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "hybrid", help="a governed subset of real CDRs filled with synthetic records",
        description="Keep the real CDRs that a declarative policy allows (strata with fewer than k distinct "
                    "subscribers suppressed, rare cells merged, times, durations and volumes coarsened, ids "
                    "re-keyed with a keyed hash, margin counts released under DP), fill the strata the real "
                    "part lacks (and the incidents) with synthetic records, and write one CDR set in telcosim's "
                    "schema with a provenance column and a manifest (docs/hybrid.md).")
    p.add_argument("--real", required=True, type=Path,
                   help="the real CDRs in telcosim's schema: a Parquet file or folder, or a run folder")
    p.add_argument("--out", required=True, type=Path, help="hybrid folder to create")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--synthetic", type=Path, metavar="RUN", help="the synthetic source: a telcosim run folder")
    src.add_argument("--scenario", help="the synthetic source: a scenario (file or built-in name) run on the real "
                                        "records' window")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="with --scenario: override a key of the scenario (repeatable)")
    p.add_argument("--policy", type=Path, metavar="TOML", help="policy file (default: the documented defaults)")
    p.add_argument("--k", type=_int, help="fewest distinct real subscribers a stratum needs (policy k; default 5)")
    p.add_argument("--strata", type=_strata, metavar="A,B,...",
                   help="stratum columns (policy strata; default service,hour,cell)")
    p.add_argument("--fill", choices=FILL_MODES, help="how the fill is sized (policy fill; default subset)")
    p.add_argument("--epsilon", type=_num, help="epsilon of the DP margin release (policy dp.epsilon; default 1)")
    p.add_argument("--delta", type=_num, help="delta of that release (policy dp.delta; default 0)")
    p.add_argument("--seed", dest="policy_seed", type=seed_value,
                   help="seed of the choice of synthetic records (policy seed; default 1)")
    p.add_argument("--no-incidents", action="store_true",
                   help="leave the synthetic source's incident-labelled records out (policy incidents = false)")
    p.add_argument("--key-file", type=Path, metavar="FILE",
                   help="secret of the keyed hash (>= 16 bytes); default: a fresh random key, never written")
    p.add_argument("--cells", type=Path, metavar="PARQUET",
                   help="cell layout (cell_id, site_id, lat, lon) when --real is not a run folder")
    p.add_argument("--report", type=Path, metavar="DIR",
                   help="also judge the hybrid and the synthetic run alone against the full real set "
                        "(fidelity and privacy attacks) into DIR; needs --synthetic")
    p.add_argument("--attacks", type=positive_int, default=2000, metavar="N",
                   help="with --report: singling-out attacks per mode (default 2000)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    return p


def run(args: argparse.Namespace) -> int:
    if args.overrides and args.scenario is None:
        raise ConfigError("--set: applies to the scenario of --scenario; with --synthetic the run is already made")
    if args.report is not None and args.synthetic is None:
        raise ConfigError("--report: needs --synthetic RUN (the synthetic run alone is judged beside the hybrid); "
                          "run the scenario first with 'telcosim run'")
    given = {key: getattr(args, flag) for flag, key in FLAGS.items() if getattr(args, flag) is not None}
    if args.no_incidents:
        given["incidents"] = False
    flags = {key: f"--{flag.replace('policy_seed', 'seed')}" for flag, key in FLAGS.items()}
    flags["incidents"] = "--no-incidents"
    policy = load_policy(args.policy, given, flags)
    scenario = scenarios.load(args.scenario, args.overrides) if args.scenario is not None else None
    built = hybrid(args.real, args.out, synthetic=args.synthetic, scenario=scenario, policy=policy,
                   key_file=args.key_file, cells=args.cells, overwrite=args.overwrite)
    m = built.manifest
    if not args.quiet:
        print(f"{args.out}: {m['rows']['real']:,} real records ({m['subscribers']['real']:,} subscribers) and "
              f"{m['rows']['synthetic']:,} synthetic ({m['rows']['synthetic_fill']:,} fill, "
              f"{m['rows']['synthetic_incidents']:,} incident-labelled); {m['strata']['suppressed']:,} strata "
              f"suppressed (k = {policy.k}; {built.private['suppressed_records']:,} real records), "
              f"{m['strata']['filled']:,} filled; DP epsilon {policy.epsilon:g}")
        short = m["strata"]["fill_records_short"]
        if short:
            print(f"  the fill is {short:,} records short of the {m['strata']['fill_records_wanted']:,} wanted: the "
                  "synthetic source has too few records in those strata (make it at least as large as the real set)")
    if args.report is not None:
        c = evaluate_hybrid(args.out, args.real, args.synthetic, args.report, key_file=args.key_file,
                            cells=args.cells, n_attacks=args.attacks)
        if not args.quiet:
            s = c["summary"]
            print(f"{args.report}: fidelity against the full real set: hybrid {s['hybrid']['passed']}/"
                  f"{s['hybrid']['evaluated']}, synthetic alone {s['synthetic']['passed']}/"
                  f"{s['synthetic']['evaluated']} metrics pass")
            for name, p in c["privacy"].items():
                if "mia_auc" in p:
                    print(f"  privacy, {name}: membership inference AUC {p['mia_auc']:.3f}; high risk: "
                          f"{', '.join(p['high_risk']) or 'none'}")
                else:
                    print(f"  privacy, {name}: {p['note']}")
    return 0
