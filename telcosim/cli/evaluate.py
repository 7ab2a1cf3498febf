"""``telcosim evaluate``: fidelity report of a run against real data, and a quality gate.

    telcosim evaluate --synthetic runs/city --real shares=../shared/data/nodobo \\
        --real drive=../shared/data/irish_5g --out reports/city [--gate] [--require NAME[,NAME]]

Writes ``REPORT_DIR/report.html`` (self-contained page) and ``REPORT_DIR/metrics.json``. Exit codes:
0 done (and, with ``--gate``, every required metric passes); 1 with ``--gate`` when a required
metric fails (each printed); 2 bad input, one line per problem on stderr, never a traceback, and
nothing written. Wired into ``sim/cli.py`` by :func:`add_parser` and :func:`run`, like
``calibration/cli.py``. Only the standard library is imported at import time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from telcosim.calibration.targets import _clean
from telcosim.cli.args import number, positive_int
from telcosim.cli.args import report as _report
from telcosim.cli.targets import KINDS, _data_spec, repeated_kind_problems, tz_and_holiday_problems
from telcosim.evaluation import attacks, fidelity
from telcosim.evaluation.coverage import coverage_metrics
from telcosim.evaluation.detection import detection_task
from telcosim.evaluation.fidelity import SPEC_BY_NAME, check_run_folder
from telcosim.evaluation.report import write_report
from telcosim.evaluation.utility import evaluate_outage_detector, evaluate_utility
from telcosim.realdata import readers
from telcosim.sim.errors import TelcosimError

EXIT_GATE = 1


_positive_float = number(lo=0, lo_open=True, rule="a positive number")
_non_negative_int = number(integer=True, lo=0, rule="a whole number >= 0")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand to an ``argparse`` subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "evaluate", help="fidelity report of a run against real data (HTML + JSON), with a quality gate",
        description="Compare a run folder with real data sets: telecom and mobility metrics, each with a "
                    "tolerance set from a real-vs-real split of the data; writes report.html and "
                    "metrics.json (see docs/evaluate.md).")
    p.add_argument("--synthetic", type=Path, required=True, metavar="RUN_DIR",
                   help="run folder written by 'telcosim run'")
    p.add_argument("--real", dest="real", action="append", type=_data_spec, required=True, metavar="KIND=PATH",
                   help=f"a real data set (repeatable); KIND one of {', '.join(KINDS)}, as for 'telcosim targets'")
    p.add_argument("--out", type=Path, required=True, metavar="REPORT_DIR",
                   help="folder for report.html and metrics.json (created)")
    p.add_argument("--gate", action="store_true",
                   help="exit 1 when a required metric fails (the failing ones are printed)")
    p.add_argument("--require", default=None, metavar="NAME[,NAME]",
                   help="metrics the gate requires, replacing the default list (docs/evaluate.md)")
    p.add_argument("--holidays", default="", metavar="DATE[,DATE...]",
                   help="dates (YYYY-MM-DD) left out of real activity and cell time series")
    p.add_argument("--tz", default=None, metavar="ZONE",
                   help="time zone for unix-second times of drive and location traces (default UTC)")
    p.add_argument("--part", choices=("check", "fit", "all"), default="check",
                   help="which part of each real set to judge on (docs/evaluate.md): check (default: the units "
                        "calibration does not fit on), fit, or all (use all for real data the project has never seen)")
    p.add_argument("--splits", type=positive_int, default=None, metavar="N",
                   help="seeded real-vs-real half splits per real set (default 5)")
    p.add_argument("--seed", type=int, default=None, help="seed of the half splits")
    u = p.add_argument_group("ML utility (train synthetic, test real; docs/evaluate.md)")
    u.add_argument("--utility", action="store_true",
                   help="also fit next-hour and next-day cell-load forecasters on the run and on real series "
                        "(--real cells= and/or activity=) and compare them on held-out real series")
    u.add_argument("--utility-model", choices=("ridge", "hgb"), default="ridge",
                   help="forecaster: ridge regression (default) or histogram gradient boosting")
    u.add_argument("--utility-augment", type=Path, default=None, metavar="AUGMENT_DIR",
                   help="with --utility-steps: train a step-change detector on the outage episodes of "
                        "'telcosim augment' (made with output.kpi_interval_s=900) and test it on real step changes")
    u.add_argument("--utility-steps", type=Path, default=None, metavar="PATH",
                   help="real step changes: a folder like ../shared/data/ran_updates (traffic_daily.parquet)")
    p.add_argument("--coverage", type=Path, default=None, metavar="COVERAGE_TOML",
                   help="also report the run's coverage of strata (density, hour, service, home density, "
                        "incident kind) against these targets (docs/rebalance.md); under-covered strata are flagged")
    q = p.add_argument_group("privacy attacks (docs/evaluate.md)")
    q.add_argument("--privacy-real", type=Path, default=None, metavar="PATH",
                   help="individual-level location traces (StudentLife-like, as --real locations=) split by person "
                        "into the half calibration saw and a held-out half; runs the privacy attacks (--tz applies)")
    q.add_argument("--privacy-split-seed", type=int, default=None, metavar="N",
                   help="seed of that person split (default 20240305)")
    q.add_argument("--privacy-epsilon", type=_positive_float, default=None, metavar="EPS",
                   help="total epsilon of the location targets audited with a canary (default: the run's ledger "
                        "budget, else 1)")
    q.add_argument("--privacy-canary-trials", type=_non_negative_int, default=None, metavar="N",
                   help="noisy releases with and as many without the canary (default 400; 0 skips the audit)")
    q.add_argument("--privacy-persons", type=positive_int, default=None, metavar="N",
                   help="subscribers of the run sampled for the attacks (default 2000)")
    p.set_defaults(command="evaluate")
    return p


def _problems(args: argparse.Namespace) -> list[str]:
    out = []
    kinds = [k for k, _ in args.real]
    out += repeated_kind_problems("--real", kinds)

    out.extend(check_run_folder(args.synthetic))
    if args.require is not None:
        names = [n.strip() for n in args.require.split(",") if n.strip()]
        if not names:
            out.append("--require: no metric names given")
        for n in names:
            if n not in SPEC_BY_NAME:
                out.append(f"--require: unknown metric {n!r} (see docs/evaluate.md for the names)")
    out += tz_and_holiday_problems(args)
    if args.utility and not {"cells", "activity"} & set(kinds):
        out.append("--utility: needs a real cell series to test on: give --real cells=PATH (hourly data volume "
                   "per cell) and/or --real activity=PATH (hourly load per area)")
    if (args.utility_augment is None) != (args.utility_steps is None):
        out.append("--utility-augment and --utility-steps: give both (augment episodes to train on, real step "
                   "changes to test on)")
    if args.utility_augment is not None and not (args.utility_augment / "episodes.parquet").is_file():
        out.append(f"--utility-augment: {args.utility_augment}: not a 'telcosim augment' folder (no episodes.parquet)")
    if args.utility_steps is not None and not (args.utility_steps / "traffic_daily.parquet").is_file():
        out.append(f"--utility-steps: {args.utility_steps}: no traffic_daily.parquet there (see docs/evaluate.md)")
    if args.privacy_real is None:
        for opt in ("split_seed", "epsilon", "canary_trials", "persons"):
            if getattr(args, f"privacy_{opt}") is not None:
                out.append(f"--privacy-{opt.replace('_', '-')}: only with --privacy-real PATH")
    if args.out.exists() and not args.out.is_dir():
        out.append(f"--out {args.out} is a file; expected a folder for the report")
    return out


def _clean_json(x):
    return _clean(x)


def _privacy(args: argparse.Namespace, real, attacks) -> dict:
    """The privacy section: the run's trajectories against ``real`` split by person."""
    manifest = json.loads((args.synthetic / "manifest.json").read_text(encoding="utf-8"))
    led = ((manifest.get("privacy_ledger") or {}).get("ledger") or {})
    budget = (led.get("budget") or {}).get("epsilon")
    eps = args.privacy_epsilon or (float(budget) if budget else 1.0)
    syn = attacks.from_run(args.synthetic, max_persons=args.privacy_persons or attacks.MAX_SYNTHETIC_PERSONS,
                           seed=args.privacy_split_seed if args.privacy_split_seed is not None else attacks.SPLIT_SEED)
    trials = attacks.CANARY_TRIALS if args.privacy_canary_trials is None else args.privacy_canary_trials
    return attacks.evaluate_privacy(real, syn, split_seed=args.privacy_split_seed if args.privacy_split_seed
                                    is not None else attacks.SPLIT_SEED, manifest=manifest, epsilon=eps,
                                    canary_trials=trials)


def run(args: argparse.Namespace) -> int:
    """Run ``telcosim evaluate``; returns the exit code (0, 1 for a failed gate, 2 for bad input)."""
    problems = _problems(args)

    datasets = []
    for kind, path in args.real:
        kw = {"tz": args.tz} if kind in ("drive", "locations") else {}
        try:
            datasets.append(readers.READERS[kind](path, **kw))
        except TelcosimError as exc:
            problems.extend(f"--real {kind}={path}: {p}" if str(path) not in p else p for p in exc.problems)
    private = None
    if args.privacy_real is not None:
        try:
            private = readers.read_location_traces(args.privacy_real, tz=args.tz)
        except TelcosimError as exc:
            problems.extend(f"--privacy-real {args.privacy_real}: {p}" if str(args.privacy_real) not in p else p
                            for p in exc.problems)
    if problems:
        return _report(problems)
    try:
        syn = fidelity.synthetic_features(args.synthetic)
    except fidelity.RunError as exc:
        problems.extend(exc.problems)
    except TelcosimError as exc:
        problems.extend(f"--synthetic {args.synthetic}: {p}" for p in exc.problems)
    except (OSError, ValueError, KeyError) as exc:
        problems.append(f"--synthetic {args.synthetic}: cannot read the run: {type(exc).__name__}: {exc}")
    if problems:
        return _report(problems)
    required = ([n.strip() for n in args.require.split(",") if n.strip()] if args.require is not None else None)
    holidays = [s.strip() for s in args.holidays.split(",") if s.strip()]
    kw = {k: v for k, v in (("splits", args.splits), ("seed", args.seed)) if v is not None}
    try:
        doc = fidelity.evaluate(args.synthetic, datasets, required=required, holidays=holidays,
                                synthetic=syn, part=args.part, **kw)
    except (TelcosimError, ValueError) as exc:
        return _report(getattr(exc, "problems", [str(exc)]))
    if args.utility:
        doc["utility"] = _clean_json(evaluate_utility(args.synthetic, datasets, holidays=holidays, model=args.utility_model))
    if args.coverage is not None:
        try:
            doc["coverage"] = coverage_metrics(args.synthetic, args.coverage)
        except TelcosimError as exc:
            return _report(exc.problems)
    if args.utility_augment is not None:
        doc.setdefault("utility", {"tasks": {}, "summary": {"tasks": 0, "evaluated": 0, "passed": 0, "failed": [],
                                                            "rule": "see the outage detector"}, "model": "-"})
        doc["utility"]["outage_detector"] = _clean_json(evaluate_outage_detector(
            detection_task(args.utility_augment, args.utility_steps), args.utility_augment, args.utility_steps))
    if private is not None:
        try:
            doc["privacy"] = _clean_json(_privacy(args, private, attacks))
        except attacks.AttackError as exc:
            return _report(f"--privacy-real {args.privacy_real}: {p}" for p in exc.problems)
    try:
        metrics_path, html_path = write_report(doc, args.out)
    except OSError as exc:
        return _report([f"--out {args.out}: cannot write: {exc.strerror or exc}"])
    s = doc["summary"]
    print(f"wrote {html_path} and {metrics_path}: {s['passed']} of {s['evaluated']} evaluated metrics pass, "
          f"{s['failed']} fail, {s['not_evaluated']} not evaluated (judged on the {s['part']} part of the real sets)")
    if s["failed_metrics"]:
        print(f"failing: {', '.join(s['failed_metrics'])}")
    if "coverage" in doc:
        flagged = doc["coverage"]["flagged"]
        print(f"coverage: {len(doc['coverage']['strata']) - len(flagged)} of {len(doc['coverage']['strata'])} "
              f"strata targets met" + (f"; under-covered: {', '.join(flagged)}" if flagged else ""))
    od = doc.get("utility", {}).get("outage_detector") or {}
    if od.get("status") in ("pass", "fail"):
        print(f"utility: outage detector {od['status']}: {od['note']}")
    if "utility" in doc and doc["utility"]["tasks"]:
        us = doc["utility"]["summary"]
        ratios = ", ".join(f"{n} {t['ratio_mae']:.3g}" for n, t in doc["utility"]["tasks"].items()
                           if t.get("ratio_mae") is not None)
        print(f"utility: {us['passed']} of {us['evaluated']} evaluated forecasting tasks within the MAE ratio limit "
              f"({len(doc['utility']['tasks']) - us['evaluated']} not evaluated)" + (f"; ratios {ratios}" if ratios else ""))
    high_risk = doc["privacy"]["summary"]["high_risk"] if "privacy" in doc else []
    if "privacy" in doc:
        ps = doc["privacy"]["summary"]
        print(f"privacy: {ps['passed']} of {ps['evaluated']} evaluated checks pass"
              + (f"; high risk: {', '.join(high_risk)}" if high_risk else ""))
    if args.gate:
        for n in high_risk:
            print(f"telcosim: gate: privacy check {n} flags high risk ({doc['privacy']['thresholds'][n]})",
                  file=sys.stderr)
        failing = s["required_failed"] + (s["required_not_evaluated"] if s["required_source"] == "--require" else [])
        if high_risk and not failing:
            print(f"telcosim: gate: FAIL ({len(high_risk)} privacy check(s) flag high risk)", file=sys.stderr)
            return EXIT_GATE
        if failing:
            for n in failing:
                m = doc["metrics"][n]
                why = (f"distance {m['distance']:.4g} > tolerance {m['tolerance']:.4g}" if m["status"] == "fail"
                       else f"not evaluated: {m['note']}")
                print(f"telcosim: gate: required metric {n} fails: {why}", file=sys.stderr)
            print(f"telcosim: gate: FAIL ({len(failing)} of {len(s['required'])} required metrics)", file=sys.stderr)
            return EXIT_GATE
        missing = s["required_not_evaluated"]
        checked = len(s["required"]) - len(missing)
        head = (f"{checked} of {len(s['required'])} required metrics evaluated, all pass" if checked
                else f"vacuously: none of the {len(s['required'])} required metrics could be evaluated")
        print(f"gate: pass ({head}"
              + (f"; not evaluated for want of real data: {', '.join(missing)})" if missing else ")"))
    return 0
