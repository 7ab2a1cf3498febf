"""docs/querying.md: every Python example runs, in order, against the small test run (its own
asserts check that one hour's filter opens one file in DuckDB, polars and pyarrow)."""

from __future__ import annotations

import re
from pathlib import Path

import telcosim

DOC = Path(__file__).resolve().parents[1] / "docs" / "querying.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_querying_examples_run(small_run):
    _, out, _ = small_run
    blocks = _blocks()
    assert len(blocks) >= 6 and blocks[0].startswith("RUN = ")
    ns: dict = {}
    exec(compile(blocks[0], f"{DOC}:block0", "exec"), ns)  # noqa: S102 - the documentation's own code
    ns["RUN"] = str(out)
    for i, code in enumerate(blocks[1:], 1):
        exec(compile(code, f"{DOC}:block{i}", "exec"), ns)  # noqa: S102
    # What the examples computed is not empty.
    assert ns["by_service"] and len(ns["busiest"]) == 5 and ns["relations"] and len(ns["trail"]) > 0
    assert len(ns["voice"]) > 0 and ns["pairs"].height > 0


def test_the_api_reads_the_pm_tables(small_run):
    _, out, _ = small_run
    run = telcosim.open_run(out)
    assert {"pm_cells", "pm_relations", "voice_matrix"} <= set(run.tables)
    assert len(run.to_pandas("pm_cells")) == run.rows["pm_cells"]
    # the API's dataset of a partitioned table has no partition columns
    assert "hour" not in run.dataset("cdr").schema.names
