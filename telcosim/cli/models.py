"""``telcosim models``: train and diagnose the learned traffic-shape generators.

    telcosim models train shapes --kind vae|gan --data ../shared/data --out DIR [--seed N] [--param K=V]
    telcosim models train sequences --run RUN_DIR --out DIR [--seed N] [--param K=V] [--epsilon E]
    telcosim models sample sequences --model DIR [--condition day=weekend,density=rural] -n N --out FILE.parquet
    telcosim models diagnose DIR --data ../shared/data [--out FILE.json]

``train`` builds the weekly-shape data set (models/shapes.py), fits on the train split, writes
``DIR/state_dict.pt``, ``DIR/model.json`` and ``DIR/diagnostics.json`` (held-out diagnostics, also
printed); the folder is built under a temporary name and renamed into place. ``train sequences``
trains the subscriber-day transformer (models/sequences.py) on a run folder's CDRs, whole
subscribers held out for its diagnostics; ``sample sequences`` writes sampled days as CDR Parquet. ``diagnose`` prints
and saves the diagnostics of a trained model folder (default ``DIR/diagnostics.json``). Bad input:
one line per problem on stderr, exit code 2. Only the standard library is imported at import time.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from telcosim.cli.args import report, seed_value
from telcosim.models import behaviour, diagnostics, sequences, shapes
from telcosim.models.base import LearnedGenerator, ModelError, read_sidecar, set_torch_threads
from telcosim.sim.staging import staging_folder, swap_into_place

KINDS = ("vae", "gan")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``models`` subcommand (with ``train`` and ``diagnose``) to an argparse subparsers object."""
    p = subparsers.add_parser("models", help="train and diagnose learned generators (traffic shapes)",
                              description="Learned generators: train a weekly traffic-shape model on real "
                                          "data, or diagnose a trained one (docs/models.md).")
    sub = p.add_subparsers(dest="models_command", required=True, parser_class=type(p))
    t = sub.add_parser("train", help="train a model on the shared data and save it with its diagnostics",
                       description="Train a generator on the train split and write state_dict.pt, "
                                   "model.json and diagnostics.json to --out.")
    t.add_argument("what", choices=("shapes", "sequences"),
                   help="what to learn: 'shapes' (weekly per-area load shapes) or 'sequences' (subscriber-days "
                        "of events, docs/models-sequences.md)")
    t.add_argument("--kind", choices=KINDS, default=None,
                   help="shapes: vae (conditional VAE) or gan (conditional WGAN-GP)")
    t.add_argument("--data", type=Path, default=None, metavar="DIR",
                   help="shapes: shared data folder holding milan_hourly/ (e.g. ../shared/data)")
    t.add_argument("--run", type=Path, default=None, metavar="RUN_DIR",
                   help="sequences: run folder (cdr/, cells.parquet, subscribers.parquet) or CDRs in telcosim's "
                        "schema with their cells table")
    t.add_argument("--epsilon", type=float, default=None,
                   help="sequences: train with DP-SGD to this epsilon (one day per subscriber; default: no DP)")
    t.add_argument("--out", type=Path, required=True, metavar="DIR", help="model folder to write")
    t.add_argument("--seed", type=seed_value, default=0, help="training seed (default 0)")
    t.add_argument("--param", dest="params", action="append", default=[], metavar="KEY=VALUE",
                   help="override a hyperparameter, e.g. --param epochs=50 (repeatable; see docs/models.md)")
    t.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    s = sub.add_parser("sample", help="sample a trained sequence model into CDR Parquet",
                       description="Draw subscriber-days from a trained sequence model, conditioned on "
                                   "--condition, and write them as CDRs in telcosim's schema (synthetic ids).")
    s.add_argument("what", choices=("sequences",), help="what to sample: 'sequences'")
    s.add_argument("--model", type=Path, required=True, metavar="DIR",
                   help="model folder written by 'telcosim models train sequences'")
    s.add_argument("--condition", default="", metavar="K=V,...",
                   help="controls to fix: segment=low|medium|high|very_high, day=weekday|weekend, "
                        "density=urban|suburban|rural, incident=none|incident (others drawn as in training)")
    s.add_argument("-n", type=int, required=True, help="number of subscriber-days to draw")
    s.add_argument("--seed", type=seed_value, default=0, help="sampling seed (default 0)")
    s.add_argument("--out", type=Path, required=True, metavar="FILE.parquet", help="Parquet file to write")
    s.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    d = sub.add_parser("diagnose", help="held-out diagnostics of a trained shape model (printed and saved)",
                       description="Precision/recall/density/coverage, memorisation and telling features of "
                                   "a trained model's samples against the held-out real shapes.")
    d.add_argument("model_dir", type=Path, help="model folder written by 'telcosim models train'")
    d.add_argument("--data", type=Path, required=True, metavar="DIR", help="shared data folder (as for train)")
    d.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="JSON file for the diagnostics (default MODEL_DIR/diagnostics.json)")
    b = sub.add_parser("behaviour", help="train the DP-SGD subscriber-behaviour generator on a run folder's CDRs",
                       description="Derive per-subscriber features (activity per service, burstiness, radius of "
                                   "gyration, home-work distance, contacts) from a run folder in telcosim's schema "
                                   "(an operator's own CDRs converted to it, or a telcosim run) and train the "
                                   "behaviour generator with DP-SGD; a scenario draws its population from it with "
                                   "population.behaviour_model = DIR (docs/models-behaviour.md).")
    b.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run folder (cdr/, locations/, cells.parquet)")
    b.add_argument("--out", type=Path, required=True, metavar="DIR", help="model folder to write")
    b.add_argument("--epsilon", type=float, default=4.0, help="DP-SGD target epsilon (default 4)")
    b.add_argument("--seed", type=seed_value, default=0, help="training seed (default 0)")
    b.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(command="models")
    return p


def _behaviour(args) -> int:
    problems = []
    if not args.epsilon > 0:
        problems.append(f"--epsilon: {args.epsilon} is out of range (must be > 0)")
    if args.out.exists() and not args.overwrite:
        problems.append(f"--out {args.out}: exists; give --overwrite to replace it")
    if not (args.run_dir / "manifest.json").is_file():
        problems.append(f"{args.run_dir}: not a run folder (no manifest.json)")
    if problems:
        return report(problems)
    feats = behaviour.subscriber_features(args.run_dir)
    model = behaviour.BehaviourGenerator(seed=args.seed, target_epsilon=args.epsilon)
    model.fit(behaviour.training_arrays(feats))
    tmp = staging_folder(args.out, "model folder")
    try:
        swap_into_place(model.save(tmp / "model"), args.out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"behaviour generator trained on {len(feats)} subscribers (epsilon {model.epsilon:.3g}, "
          f"delta {model.delta:.3g}) -> {args.out}")
    return 0


def _parse_params(items: list[str], defaults: dict, problems: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(f"--param {item!r}: expected KEY=VALUE")
            continue
        if key == "seed":
            problems.append("--param seed: use --seed")
            continue
        if key not in defaults:
            problems.append(f"--param {key}: unknown hyperparameter; allowed: "
                            f"{', '.join(k for k in sorted(defaults) if k != 'seed')}")
            continue
        ref = defaults[key]
        text = text.strip()
        try:
            if isinstance(ref, bool):
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                value = text.lower() in ("true", "1")
            elif isinstance(ref, int):
                value = int(text)
                if value <= 0:
                    raise ValueError
            else:
                value = float(text)
                if not value >= 0:
                    raise ValueError
        except ValueError:
            kind = ("true or false" if isinstance(ref, bool) else
                    "a positive integer" if isinstance(ref, int) else "a number >= 0")
            problems.append(f"--param {key}: {text!r} is not {kind}")
            continue
        out[key] = value
    return out


def _load_data(data_dir: Path):
    ds = shapes.build_dataset(data_dir)
    return shapes.split(ds)


def _save_with_diagnostics(model: LearnedGenerator, doc: dict, out: Path) -> None:
    """The model folder with its held-out ``diagnostics.json``, staged and renamed into place."""
    tmp = staging_folder(out, "model folder")
    try:
        staged = model.save(tmp / "model")
        diagnostics.write(doc, staged / "diagnostics.json")
        swap_into_place(staged, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _train(args) -> int:
    if args.what == "sequences":
        return _train_sequences(args)
    problems: list[str] = []
    if args.kind is None:
        problems.append("--kind: required for 'train shapes' (vae or gan)")
    if args.data is None:
        problems.append("--data: required for 'train shapes' (the shared data folder, ../shared/data)")
    for opt, val in (("--run", args.run), ("--epsilon", args.epsilon)):
        if val is not None:
            problems.append(f"{opt}: has no effect with 'train shapes' (it is for 'train sequences')")
    if problems:
        return report(problems)
    cls = shapes.ShapeVAE if args.kind == "vae" else shapes.ShapeGAN
    problems: list[str] = []
    params = _parse_params(args.params, cls.defaults, problems)
    if args.out.exists() and not args.out.is_dir():
        problems.append(f"--out {args.out}: is a file; expected a folder for the model")
    elif args.out.exists() and not args.overwrite:
        problems.append(f"--out {args.out}: exists; give --overwrite to replace it")
    if not args.data.is_dir():
        problems.append(f"--data {args.data}: not a folder; expected the shared data folder (../shared/data)")
    if problems:
        return report(problems)
    train, held = _load_data(args.data)
    # the shape MLPs are small: one thread is as fast, and spare threads only spin on a shared machine
    set_torch_threads(int(os.environ.get("TELCOSIM_TORCH_THREADS", "1")))
    model = cls(seed=args.seed, **params)
    print(f"training {model.name} on {len(train)} weeks of {len(set(train.area))} areas ...", flush=True)
    model.fit(train.model_data())
    model.spec["data"] = {  # provenance of the training items, for the sidecar
        "items": ("one area-week of the fit part of the squares: 168 hourly loads / their mean (hour 0 = Monday "
                  "00:00 local) over the city's mean shape (reference_shape), renormalised to mean 1; log mean load"),
        "part": "fit",
        "reference_shape": [round(float(v), 5) for v in train.reference],
        "density_class": shapes.DENSITY_METHOD,
        "density_cuts_mean_load": [round(t, 4) for t in train.thresholds],
        "weeks_left_out": list(shapes.HOLIDAY_WEEKS) + ["any week with a missing hour"],
        "split": {"by": "area, stratified by density class", "held_out_fraction": shapes.HELD_OUT_FRACTION,
                  "seed": shapes.SPLIT_SEED, "train_weeks": len(train), "train_areas": len(set(train.area)),
                  "held_out_weeks": len(held), "held_out_areas": len(set(held.area))},
    }
    doc = diagnostics.diagnose(model, train, held)
    print(diagnostics.format_report(doc))
    _save_with_diagnostics(model, doc, args.out)
    print(f"wrote {args.out} ({model.training['seconds']} s of training on {model.training['device']})")
    return 0


def _diagnose(args) -> int:
    problems = []
    if not args.data.is_dir():
        problems.append(f"--data {args.data}: not a folder; expected the shared data folder (../shared/data)")
    if args.out is not None and args.out.is_dir():
        problems.append(f"--out {args.out}: is a folder; expected a JSON file path")
    if problems:
        return report(problems)
    side = read_sidecar(args.model_dir)
    if side["model"] not in shapes.MODEL_NAMES.values():
        return report([f"{args.model_dir}: model {side['model']!r} is not a shape model "
                       f"({', '.join(shapes.MODEL_NAMES.values())})"])
    model = LearnedGenerator.load(args.model_dir)
    train, held = _load_data(args.data)
    doc = diagnostics.diagnose(model, train, held)
    print(diagnostics.format_report(doc))
    out = args.out or args.model_dir / "diagnostics.json"
    try:
        diagnostics.write(doc, out)
    except OSError as exc:
        return report([f"--out {out}: cannot write: {exc.strerror or exc}"])
    print(f"wrote {out}")
    return 0


def _train_sequences(args) -> int:
    cls = sequences.SequenceTransformer
    problems: list[str] = []
    for opt, val in (("--kind", args.kind), ("--data", args.data)):
        if val is not None:
            problems.append(f"{opt}: has no effect with 'train sequences' (give the run folder with --run)")
    params = _parse_params(args.params, {k: v for k, v in cls.defaults.items() if k not in ("dp", "target_epsilon")},
                           problems)
    if args.run is None:
        problems.append("--run: required for 'train sequences' (a run folder, e.g. from 'telcosim run')")
    elif not (args.run / "cdr").exists() or not (args.run / "cells.parquet").is_file():
        problems.append(f"--run {args.run}: not a run folder (expected cdr/ and cells.parquet)")
    if args.epsilon is not None and not args.epsilon > 0:
        problems.append(f"--epsilon: {args.epsilon} is out of range (must be > 0)")
    for key in ("delta", "max_grad_norm"):
        if key in params and args.epsilon is None:
            problems.append(f"--param {key}: has no effect without DP-SGD; give --epsilon too")
    if args.out.exists() and not args.out.is_dir():
        problems.append(f"--out {args.out}: is a file; expected a folder for the model")
    elif args.out.exists() and not args.overwrite:
        problems.append(f"--out {args.out}: exists; give --overwrite to replace it")
    if problems:
        return report(problems)
    set_torch_threads(int(os.environ.get("TELCOSIM_TORCH_THREADS", "1")))
    arrays, ctx = sequences.sequence_arrays(args.run, max_len=int(params.get("max_len", cls.defaults["max_len"])))
    train, held, mask = sequences.split_by_subscriber(arrays, ctx["subscriber"], seed=args.seed)
    if args.epsilon is not None:
        params.update(dp=True, target_epsilon=float(args.epsilon))
        train = {**train, "subscriber": ctx["subscriber"][~mask]}
    model = cls(seed=args.seed, **params)
    print(f"training sequences on {len(train['length'])} subscriber-days ({len(held['length'])} held out, "
          "whole subscribers) ...", flush=True)
    model.fit(train)
    model.spec["cdr"] = sequences.write_context(ctx)
    model.spec["data"] = {"run": str(args.run), "subscribers": ctx["subscribers"], "days": ctx["days"],
                          "truncated_days": ctx["truncated_days"],
                          "split": {"by": "subscriber", "held_out_fraction": 0.2, "seed": args.seed,
                                    "train_days": len(train["length"]), "held_out_days": len(held["length"])}}
    doc = sequences.evaluate(model, {k: v for k, v in train.items() if k != "subscriber"}, held, seed=args.seed)
    p, f = doc["prdc"]["synthetic_vs_held_out"], doc["prdc"]["train_vs_held_out"]
    print("PRDC against held-out subscribers' days (synthetic | train as floor): "
          + ", ".join(f"{k} {p[k]:.3f} | {f[k]:.3f}" for k in p))
    mem = doc["memorisation"]
    print(f"closest-record distance, median: to train {mem['median_to_train']:.3f}, to held out "
          f"{mem['median_to_held_out']:.3f}")
    _save_with_diagnostics(model, doc, args.out)
    eps = f", epsilon {model.epsilon:.3g} at delta {model.delta:.3g}" if model.epsilon is not None else ""
    print(f"wrote {args.out} ({model.training['seconds']} s of training on {model.training['device']}{eps})")
    return 0


def _sample(args) -> int:
    problems: list[str] = []
    if args.n < 0:
        problems.append(f"-n: {args.n} is out of range (must be >= 0)")
    try:
        cond = sequences.parse_condition(args.condition)
    except ModelError as exc:
        problems.append(str(exc))
    if args.out.exists() and (args.out.is_dir() or not args.overwrite):
        problems.append(f"--out {args.out}: exists; give --overwrite to replace it" if not args.out.is_dir()
                        else f"--out {args.out}: is a folder; expected a Parquet file path")
    if problems:
        return report(problems)
    side = read_sidecar(args.model)
    if side["model"] != sequences.SequenceTransformer.name:
        return report([f"--model {args.model}: model {side['model']!r} is not a sequence model ('sequences')"])
    model = sequences.SequenceTransformer.load(args.model)
    if "cdr" not in model.spec:
        return report([f"--model {args.model}: the sidecar's spec has no 'cdr' (time zone, cells): train it with "
                       "'telcosim models train sequences'"])
    s = model.sample_condition(args.n, cond, seed=args.seed)
    table = sequences.to_cdr(s, model.spec["cdr"], seed=args.seed)
    sequences.write_cdr(table, args.out)
    print(f"wrote {table.num_rows} CDRs of {args.n} subscriber-days ({args.condition or 'no condition'}) -> {args.out}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``telcosim models ...``; returns the exit code (0 done, 2 bad input)."""
    if args.models_command == "train":
        return _train(args)
    if args.models_command == "behaviour":
        return _behaviour(args)
    if args.models_command == "sample":
        return _sample(args)
    return _diagnose(args)
