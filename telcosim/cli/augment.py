"""``telcosim augment``: labelled tail-event episodes (see :mod:`scenarios.augment`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from telcosim import scenarios
from telcosim.cli.args import number, positive_int, seed_value
from telcosim.scenarios.augment import AUGMENT_KINDS, augment
from telcosim.sim.summary import progress_bar

_hours = number(lo=0, hi=12, rule="0 to 12 hours")
_rate = number(lo=0, lo_open=True, rule="a rate per year > 0")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "augment", help="generate labelled incident episodes (with their baselines) for training detectors",
        description="Draw N incidents of one kind from documented distributions, run each on a copy of a "
                    "base scenario with its baseline, and write a window around each as one dataset in "
                    "telcosim's schema plus episode_id, variant and provenance columns.")
    p.add_argument("--kind", required=True, choices=AUGMENT_KINDS, help="incident kind")
    p.add_argument("--episodes", required=True, type=positive_int, metavar="N", help="number of episodes")
    p.add_argument("--out", required=True, type=Path, help="dataset folder to create")
    p.add_argument("--scenario", default="small_city",
                   help="base scenario without incidents: file or built-in name (default small_city)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the base scenario (repeatable)")
    p.add_argument("--seed", type=seed_value, default=1, help="seed of the episode draws (default 1)")
    p.add_argument("--natural-rate", type=_rate, metavar="PER_YEAR",
                   help="natural frequency of the kind per site, cell or network and year (see the manifest)")
    p.add_argument("--window-before", type=_hours, default=2.0, metavar="H", help="hours kept before (default 2)")
    p.add_argument("--window-after", type=_hours, default=2.0, metavar="H", help="hours kept after (default 2)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:

    base = scenarios.load(args.scenario, args.overrides)
    with progress_bar(args.episodes, disable=args.quiet) as advance:
        manifest = augment(base, args.kind, args.episodes, args.out, seed=args.seed,
                           natural_rate=args.natural_rate, window_before_h=args.window_before,
                           window_after_h=args.window_after, overwrite=args.overwrite, progress=advance)
    if not args.quiet:
        nat = manifest["natural_frequency"]
        print(f"{args.episodes} {args.kind} episodes (with baselines) in {args.out}; natural frequency "
              f"{nat['per_year']} per {nat['per']} and year; weight per episode "
              f"{manifest['episode_weights'][0]:.3g}")
    return 0
