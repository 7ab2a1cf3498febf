"""``telcosim calibrate``: merge targets files (federated) and fit simulator parameters to them.

    telcosim calibrate --targets north.json south.json --out calibrated.toml --trials 40

Writes ``calibrated.toml`` (a scenario with the fitted keys; the ledger summary as a comment
block), ``calibrated.privacy.json`` beside it (the merged privacy ledger and the targets'
provenance) and ``calibrated.report.json`` (every trial; per statistic, synthetic vs target before
and after). ``--merged-out`` also writes the merged targets document. Reads only targets files:
no raw data. Bad input is reported one problem per line on stderr with exit code 2, never a
traceback, and nothing is written. Wired into ``sim/cli.py`` by :func:`add_parser` and
:func:`run`; this module imports only the standard library at import time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

from telcosim.calibration import calibrate as C
from telcosim.calibration import federate, neural
from telcosim.calibration.calibrate import PARAMS
from telcosim.cli.args import positive_int, seed_value
from telcosim.cli.args import report as _report
from telcosim.cli.targets import _positive_float, output_file_problems
from telcosim.sim.errors import TelcosimError


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``calibrate`` subcommand to an ``argparse`` subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "calibrate", help="merge targets files and fit simulator parameters to them (optuna)",
        description="Merge calibration targets from one or more targets JSON files (several regions or "
                    "teams: only released aggregates), fit the simulator's knobs to them with small seeded "
                    "runs, and write a calibrated scenario TOML, its privacy ledger and a fit report. Reads "
                    "no raw data (see docs/calibration.md).")
    p.add_argument("--targets", nargs="+", type=Path, required=True, metavar="FILE",
                   help="targets JSON files written by 'telcosim targets' (or merged ones)")
    p.add_argument("--out", type=Path, required=True, help="calibrated scenario TOML to write")
    p.add_argument("--weights", nargs="+", type=_positive_float, metavar="W",
                   help="one weight per targets file (default: the files' own 'weight', else equal)")
    p.add_argument("--trials", type=positive_int, default=30, help="simulator runs of the search (default 30)")
    p.add_argument("--subscribers", type=positive_int, default=None,
                   help="subscribers of each fit run, one day (default 3000; --method neural: 1000)")
    # --method neural (calibration/neural.py): an amortised posterior network, trained once per setting
    p.add_argument("--method", choices=("search", "neural"), default="search",
                   help="search: optuna TPE over simulator runs (default); neural: a posterior network "
                        "trained on prior runs (cached), answers in seconds, with 90%% intervals")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="--method neural: folder of trained networks and their simulations "
                        "(default: $XDG_CACHE_HOME or ~/.cache, then telcosim/neural)")
    p.add_argument("--neural-runs", type=positive_int, default=120,
                   help="--method neural: prior simulator runs the network is trained on (default 120)")
    p.add_argument("--no-check", action="store_true",
                   help="--method neural: skip the two checking runs (start, estimate) of the report")
    p.add_argument("--seed", type=seed_value, default=1, help="scenario seed of every fit run (default 1)")
    p.add_argument("--sampler-seed", type=seed_value, default=0, help="seed of the TPE sampler (default 0)")
    p.add_argument("--params", default=None, metavar="NAME[,NAME...]",
                   help="knobs to fit (default: every knob the targets inform); see docs/calibration.md")
    p.add_argument("--scenario", default=None, metavar="REF",
                   help="base scenario (built-in name or TOML; default: the embedded default); the "
                        "calibrated TOML extends it")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="fix a scenario field during the fit (written into the calibrated TOML too)")
    p.add_argument("--report", type=Path, default=None,
                   help="fit report JSON (default: OUT with .report.json)")
    p.add_argument("--merged-out", type=Path, default=None, help="also write the merged targets document here")
    p.add_argument("--merge-only", action="store_true",
                   help="only merge (needs --merged-out); no fit, no TOML")
    p.add_argument("--allow-exact", action="store_true",
                   help="accept exact (noise-free, exact_no_privacy) targets files: tests only")
    p.add_argument("--quiet", action="store_true", help="no per-trial progress")
    p.set_defaults(command="calibrate")
    return p


def _sidecar_path(out: Path) -> Path:
    return out.with_name(out.stem + ".privacy.json")


def _report_path(args) -> Path:
    return args.report if args.report is not None else args.out.with_name(args.out.stem + ".report.json")


def _problems(args: argparse.Namespace) -> list[str]:
    out = []
    if args.merge_only and args.merged_out is None:
        out.append("--merge-only needs --merged-out FILE")
    if args.params is not None:
        for name in filter(None, (s.strip() for s in args.params.split(","))):
            if name not in PARAMS:
                out.append(f"--params: unknown knob {name!r}; choose from {', '.join(PARAMS)}")
    for opt, path in (("--out", args.out), ("--report", args.report), ("--merged-out", args.merged_out)):
        if path is None or (opt != "--merged-out" and args.merge_only):
            continue
        out += output_file_problems(opt, path)
    if not args.merge_only and args.out.suffix != ".toml":
        out.append(f"--out {args.out}: expected a .toml file name (a scenario)")
    if args.method != "neural":
        for opt, given in (("--cache-dir", args.cache_dir is not None), ("--no-check", args.no_check),
                           ("--neural-runs", args.neural_runs != 120)):
            if given:
                out.append(f"{opt}: only with --method neural")
    elif args.cache_dir is not None and args.cache_dir.exists() and not args.cache_dir.is_dir():
        out.append(f"--cache-dir {args.cache_dir}: is a file; expected a folder (created if missing)")
    return out


def run(args: argparse.Namespace) -> int:
    """Run ``telcosim calibrate``; returns the exit code (0, or 2 with one line per problem)."""
    problems = _problems(args)
    if problems:
        return _report(problems)

    try:
        merged = federate.load_and_merge(args.targets, args.weights, args.allow_exact)
    except federate.MergeError as exc:
        return _report(exc.problems)
    if merged["privacy"]["exact_no_privacy"]:
        print("telcosim: warning: exact (noise-free) targets: the outputs are not private; tests only",
              file=sys.stderr)
    writes: list[tuple[Path, str]] = []
    if args.merged_out is not None:
        writes.append((args.merged_out, json.dumps(merged, indent=2, allow_nan=False) + "\n"))
    if args.merge_only:
        return _write_all(writes, f"merged {len(args.targets)} file(s) into {args.merged_out}: "
                                  f"{len(merged['targets'])} targets")


    params = None if args.params is None else [s.strip() for s in args.params.split(",") if s.strip()]
    terms, _ = C.target_terms(merged)
    aside = C.set_aside(merged)
    if aside:
        print("telcosim: warning: noise-dominated targets set aside (noise sd above "
              f"{C.T.NOISE_DOMINATED_SD:g} on the objective's scale; a larger --epsilon, more people or fewer "
              "targets would make them usable): " + ", ".join(
                  f"{n} (sd {'inf' if not math.isfinite(sd) else f'{sd:.2g}'})" for n, sd in aside), file=sys.stderr)
    if not any(t.weight > 0 for t in terms):
        why = " (every comparable one is noise-dominated, see the warning)" if aside else ""
        return _report([f"--targets: none of the {len(merged['targets'])} targets can be compared with a run{why} "
                        "(need call_duration, sms_call_ratio, contact_concentration, mobility or handover "
                        "targets); nothing to fit"])
    try:
        base = C.base_scenario(args.scenario, args.overrides)
    except TelcosimError as exc:
        return _report(exc.problems)

    def progress(rec):
        if not args.quiet:
            vals = ", ".join(f"{k.split('.')[-1]}={v:.4g}" for k, v in rec["params"].items())
            print(f"trial {rec['number']:3d}  objective {rec['objective']:.4f}  {vals}", flush=True)

    try:
        if args.method == "neural":
            result = neural.run_cli(args, merged, params, progress)
        else:
            result = C.fit(merged, trials=args.trials, subscribers=args.subscribers or 3000, seed=args.seed,
                           sampler_seed=args.sampler_seed, params=params, scenario=args.scenario,
                           sets=args.overrides, progress=progress)
    except TelcosimError as exc:
        return _report(exc.problems)
    except ValueError as exc:
        return _report([str(exc)])
    before, after = result.before["objective"], result.after["objective"]
    if math.isfinite(before) and math.isfinite(after) and after > before:  # both evaluated: never hand back worse
        return _report([f"calibration ended worse than its start (objective {before:.4f} -> {after:.4f}); nothing "
                        "written"])
    if math.isfinite(after) and result.best == result.start:
        print(f"telcosim: warning: no evaluated point improved on the start (objective {before:.4f}); the start "
              "values are written", file=sys.stderr)
    elif not math.isfinite(after):
        print("telcosim: warning: --no-check: the estimate was not run, so it is not known to improve on the start",
              file=sys.stderr)
    side = _sidecar_path(args.out)
    side_text = json.dumps(_jsonable(C.sidecar(result, merged, args.out.name)), indent=2, allow_nan=False) + "\n"
    sha = hashlib.sha256(side_text.encode()).hexdigest()
    ref = None
    if args.scenario is not None:
        p = Path(args.scenario)
        ref = str(p.resolve()) if (p.suffix == ".toml" or "/" in args.scenario) else args.scenario
    toml = C.calibrated_toml(result, base, args.out.stem, merged, side.name, sha, ref)
    rep_doc = C.report(result, merged)
    rep_doc["set_aside"] = [{"figure": n, "noise_sd": sd if math.isfinite(sd) else None} for n, sd in aside]
    if args.method == "neural":  # the posterior's intervals, in the TOML's comments and the report
        toml = neural.with_intervals(toml, result)
        rep_doc["uncertainty"] = result.settings["uncertainty"]
    rep = json.dumps(_jsonable(rep_doc), indent=2, allow_nan=False) + "\n"
    writes += [(side, side_text), (_report_path(args), rep), (args.out, toml)]
    fitted = ", ".join(f"{k}={v:.4g}" for k, v in result.best.items())
    objective = (f"objective {result.before['objective']:.4f} -> {result.after['objective']:.4f}"
                 if math.isfinite(result.after["objective"]) else "objective not checked (--no-check)")
    return _write_all(writes, f"wrote {args.out} ({fitted}); {objective}; ledger {side.name}; "
                              f"report {_report_path(args).name}")


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if hasattr(x, "item"):
        return _jsonable(x.item())
    return x


def _write_all(writes: list[tuple[Path, str]], message: str) -> int:
    """Write every file via a hidden partial file, then rename them all; on failure none remain."""
    tmps = []
    try:
        for path, text in writes:
            tmp = path.with_name(f".{path.name}.partial")
            tmp.write_text(text, encoding="utf-8")
            tmps.append((tmp, path))
        for tmp, path in tmps:
            tmp.replace(path)
    except OSError as exc:
        for tmp, _ in tmps:
            tmp.unlink(missing_ok=True)
        return _report([f"cannot write: {exc.strerror or exc} ({getattr(exc, 'filename', '')})"])
    print(message)
    return 0
