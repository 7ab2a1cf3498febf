"""Fixtures of the evaluation tests: the real sets read once, and a deliberately wrong run (a copy
of the small run with CDR start times spread uniformly over the window and location cells drawn
uniformly at random), the control that no fidelity check passes by construction."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import SHARED_DATA

HAVE_DATA = (SHARED_DATA / "README.md").is_file()


def read_real_sets():
    from telcosim.calibration import derive_defaults as dd
    from telcosim.realdata import readers as R

    return [R.read_shares(SHARED_DATA / "nodobo"), R.read_cell_series(SHARED_DATA / "lte_cells"),
            R.read_activity(SHARED_DATA / "milan_hourly" / "square_hourly_load.csv"),
            R.read_drive_traces(SHARED_DATA / "irish_5g"),
            R.read_location_traces(SHARED_DATA / "studentlife_gps", tz=dd.STUDENTLIFE_TZ),
            R.read_edges(SHARED_DATA / "copenhagen")]


@pytest.fixture(scope="session")
def real_sets():
    if not HAVE_DATA:
        pytest.skip("shared data not present")
    return read_real_sets()


def make_wrong_run(src, dst, seed: int = 7):
    """Copy run ``src`` to ``dst`` and scramble it: every CDR start_time uniform over the window,
    every location row's cell uniform over the network's cells (schemas kept)."""
    shutil.copytree(src, dst)
    rng = np.random.default_rng(seed)
    m = json.loads((dst / "manifest.json").read_text())
    import pandas as pd

    start_ms = pd.Timestamp(m["window"]["start"]).value // 1_000_000
    span_ms = (pd.Timestamp(m["window"]["end"]).value // 1_000_000) - start_ms
    n_cells = m["network"]["cells"]
    for part in sorted((dst / "cdr").rglob("*.parquet")):
        t = pq.read_table(part)
        i = t.schema.get_field_index("start_time")
        new = start_ms + rng.integers(0, span_ms, len(t))
        t = t.set_column(i, t.schema.field(i), pa.array(new, pa.int64()).cast(t.schema.field(i).type))
        pq.write_table(t, part)
    for part in sorted((dst / "locations").rglob("*.parquet")):
        t = pq.read_table(part)
        i = t.schema.get_field_index("cell_id")
        t = t.set_column(i, t.schema.field(i), pa.array(rng.integers(0, n_cells, len(t)), pa.int32()))
        pq.write_table(t, part)
    return dst


@pytest.fixture(scope="session")
def wrong_run(small_run, tmp_path_factory):
    _, out, _ = small_run
    return make_wrong_run(out, tmp_path_factory.mktemp("wrong") / "run")


@pytest.fixture(scope="session")
def honest_doc(small_run, real_sets):
    from telcosim.evaluation.fidelity import evaluate

    _, out, _ = small_run
    return evaluate(out, real_sets)


@pytest.fixture(scope="session")
def wrong_doc(wrong_run, real_sets):
    from telcosim.evaluation.fidelity import evaluate

    return evaluate(wrong_run, real_sets)


@pytest.fixture(scope="session")
def small_run_b(tmp_path_factory):
    """The small scenario with another seed: the same model, other draws."""
    from telcosim.scenarios.runner import run
    from tests.conftest import small_scenario

    out = tmp_path_factory.mktemp("runs_b") / "small_b"
    run(small_scenario(seed=2), out)
    return out
