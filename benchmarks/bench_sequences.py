"""The sequence transformer (``models/sequences.py``) on a telcosim run: held-out PRDC against the
real-vs-real floor, memorisation, per-condition marginals, CPU training time; optionally a DP-SGD fit.

Usage::

    .venv/bin/python benchmarks/bench_sequences.py RUN_DIR [--epochs 12] [--lr 0.003] [--seed 0] [--rows 2000]
        [--dp-epsilon 8] [--dp-epochs 2] [--out-model DIR] [--json PATH]

RUN_DIR is a run folder (``telcosim run``); docs/models-sequences.md gives the run used for the
documented figures. Training is on the CPU with one torch thread (TELCOSIM_DEVICE=cpu).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TELCOSIM_DEVICE", "cpu")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--dp-epsilon", type=float, default=None)
    ap.add_argument("--dp-epochs", type=int, default=2)
    ap.add_argument("--out-model", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    from telcosim.models import base
    from telcosim.models import sequences as sq

    base.set_torch_threads(1)
    t0 = time.perf_counter()
    arrays, ctx = sq.sequence_arrays(args.run_dir)
    train, held, _ = sq.split_by_subscriber(arrays, ctx["subscriber"], seed=args.seed)
    prep_s = time.perf_counter() - t0
    print(f"{len(arrays['length'])} subscriber-days ({ctx['subscribers']} subscribers x {ctx['days']} days), "
          f"{len(train['length'])} train / {len(held['length'])} held out; prepared in {prep_s:.1f} s", flush=True)
    model = sq.SequenceTransformer(epochs=args.epochs, lr=args.lr, seed=args.seed).fit(train)
    model.spec["cdr"] = sq.write_context(ctx)
    print(f"trained: {model.training} loss {model.history['loss']}", flush=True)
    t1 = time.perf_counter()
    doc = {"run": str(args.run_dir), "days": len(arrays["length"]), "train_days": len(train["length"]),
           "held_out_days": len(held["length"]), "hyperparameters": model.params, "training": model.training,
           "loss": model.history["loss"], "truncated_days": ctx["truncated_days"]}
    doc["eval"] = sq.evaluate(model, train, held, seed=args.seed, rows=args.rows)
    doc["eval_seconds"] = round(time.perf_counter() - t1, 1)
    if args.out_model:
        model.save(args.out_model)
    if args.dp_epsilon:
        sub = ctx["subscriber"][~_held_mask(arrays, ctx, args.seed)]
        dp = sq.SequenceTransformer(epochs=args.dp_epochs, seed=args.seed, dp=True, target_epsilon=args.dp_epsilon,
                                    batch_size=256, lr=3e-3).fit({**train, "subscriber": sub})
        doc["dp"] = {"epsilon": dp.epsilon, "delta": dp.delta, "training": dp.training, "loss": dp.history["loss"],
                     "spec": {k: dp.spec[k] for k in ("noise_multiplier", "dp_rows", "steps", "epochs")},
                     "eval": sq.evaluate(dp, train, held, seed=args.seed, rows=args.rows)}
    print(json.dumps(doc, indent=1, default=str))
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return 0


def _held_mask(arrays, ctx, seed):
    from telcosim.models import sequences as sq

    return sq.split_by_subscriber(arrays, ctx["subscriber"], seed=seed)[2]


if __name__ == "__main__":
    raise SystemExit(main())
