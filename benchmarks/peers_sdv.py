"""Peer generators for ``telcosim benchmark``: SDV's GaussianCopula and CTGAN, run in their own venv.

SDV pins pandas < 3 and the main venv has pandas 3, so ``telcosim benchmark`` calls this script
with ``benchmarks/.venv-peers/bin/python`` (``make peers`` creates it) and exchanges tables as
Parquet. It imports nothing from telcosim.

    python benchmarks/peers_sdv.py --model gaussian_copula|ctgan --fit FIT.parquet --out OUT.parquet \
        --rows N --seed S [--epochs E] [--categorical COL[,COL]]

Every column of FIT is modelled; the ones named by --categorical as categories, the rest as
numbers. One CPU thread. SDV and CTGAN draw from numpy's and torch's global generators; fitting
runs inside ctgan's own ``set_random_states`` (global states set from generators seeded with
--seed, restored after) and sampling is seeded with the synthesizer's ``_set_random_state``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="peers_sdv")
    p.add_argument("--model", required=True, choices=("gaussian_copula", "ctgan"))
    p.add_argument("--fit", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--rows", required=True, type=int)
    p.add_argument("--seed", required=True, type=int)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--categorical", default="")
    a = p.parse_args(argv)

    import numpy as np
    import pandas as pd
    import torch
    from ctgan.synthesizers.base import set_random_states
    from sdv.metadata import Metadata
    from sdv.single_table import CTGANSynthesizer, GaussianCopulaSynthesizer

    torch.set_num_threads(1)
    fit = pd.read_parquet(a.fit)
    cats = [c for c in a.categorical.split(",") if c]
    for c in cats:
        fit[c] = fit[c].astype(str)
    md = Metadata.load_from_dict({"tables": {"t": {"columns": {
        c: {"sdtype": "categorical"} if c in cats else {"sdtype": "numerical"} for c in fit.columns}}}})
    t0 = time.perf_counter()
    if a.model == "ctgan":
        synth = CTGANSynthesizer(md, epochs=a.epochs, enable_gpu=False, verbose=False)
    else:
        synth = GaussianCopulaSynthesizer(md)
    states = (np.random.RandomState(a.seed % 2**32), torch.Generator().manual_seed(a.seed))
    with set_random_states(states, lambda _: None):
        synth.fit({"t": fit})
    fit_s = time.perf_counter() - t0
    synth._set_random_state(a.seed % 2**32)
    out = synth.sample(num_rows=a.rows)
    out = out["t"] if isinstance(out, dict) else out  # categorical columns come back as text
    out.to_parquet(a.out, index=False)
    import sdv

    print(json.dumps({"library": f"sdv {sdv.__version__}", "fit_s": round(fit_s, 2), "rows": len(out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
